"""The notebooks under ``notebooks/`` run from top to bottom, with small settings, so they cannot rot.

Each notebook reads three environment variables in its first code cell:

- ``MEDSEG_NOTEBOOK_QUICK=1``: small settings (fewer cases, a few training steps);
- ``MEDSEG_NOTEBOOK_OUT``: the folder it writes into (here a temporary folder);
- ``MEDSEG_SHARED_DATA``: the real scans (``../shared/data`` beside the project root); a notebook
  says so and falls back to the synthetic phantoms when they are absent.

The notebooks are stored with their outputs stripped; the first test checks that too.
"""

from __future__ import annotations

import pytest
from conftest import PROJECT_ROOT, SHARED_DATA

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat (pip install -e '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient (pip install -e '.[test]')")

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_evaluation.ipynb", "03_submission.ipynb"]


def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def test_every_notebook_is_listed():
    assert sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name):
    notebook = _read(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{name} has no code"
    with_outputs = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not with_outputs, f"{name}: code cells {with_outputs} keep outputs; strip them before committing"
    assert "widgets" not in notebook.metadata, f"{name}: widget state is stored; strip it"


@pytest.mark.slow
@pytest.mark.parametrize("real_data", [True, False], ids=["real-data", "phantoms-only"])
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, real_data, tmp_path, monkeypatch):
    """With the real scans (when ../shared/data is there) and without them (the phantom fallback)."""
    if real_data and not SHARED_DATA.is_dir():
        pytest.skip(f"real data not available: {SHARED_DATA} is absent (the phantoms-only run still covers {name})")
    monkeypatch.setenv("MEDSEG_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MEDSEG_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MEDSEG_SHARED_DATA", str(SHARED_DATA if real_data else tmp_path / "no_shared_data"))
    notebook = _read(name)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:  # the message holds the cell and its traceback
        pytest.fail(f"{name} failed:\n{error}")
    errors = [
        out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"
    ]
    assert not errors
    assert any(path.is_file() for path in (tmp_path / "out").rglob("*")), (
        f"{name} wrote nothing into MEDSEG_NOTEBOOK_OUT"
    )
    if not real_data:
        printed = "".join(
            out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
        )
        assert "absent" in printed, f"{name} does not say that the real data are absent"


def test_notebooks_name_only_readme_sections_that_exist():
    import re

    headings = {
        line.lstrip("#").strip()
        for line in (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for name in NOTEBOOKS:
        text = "\n".join(cell.source for cell in _read(name).cells)
        for section in re.findall(r'README "([^"]+)"', text):
            assert section in headings, f"{name} points to README section {section!r}, which does not exist"
