# Two entry points for a fresh machine with Python 3.11 and pip (see README):
#   make demo   set up .venv and run the end-to-end demo on built-in synthetic data
#   make test   set up .venv and run the test suite
# Set-up installs torch==2.13.0 first (the CPU wheel on our machines), then medseg with its
# dependencies; it reruns only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.medseg-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
PYTEST_ARGS ?= -n 2

.PHONY: setup demo test notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -c "from importlib.metadata import version; v = version('torch'); assert v.startswith('2.13.0'), v"
	$(PIP) install -e ".[test]" >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	$(BIN)/python -c "import medseg, monai, SimpleITK, nibabel, itk, medpy, surface_distance"
	test -x $(BIN)/ruff
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medseg demo

test: $(STAMP)
	$(BIN)/ruff check medseg tests benchmarks
	$(BIN)/ruff format --check medseg tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# executed copies of the notebooks, with their outputs, in runs/notebooks/executed/ (the originals stay stripped)
notebooks: $(STAMP)
	rm -rf runs/notebooks/executed && mkdir -p runs/notebooks/executed && cp notebooks/*.ipynb runs/notebooks/executed/
	MEDSEG_NOTEBOOK_OUT=$(CURDIR)/runs/notebooks MEDSEG_SHARED_DATA=$(CURDIR)/../shared/data \
		$(BIN)/jupyter-execute --inplace --timeout=1800 runs/notebooks/executed/*.ipynb

clean:
	rm -rf $(VENV)
