"""The layers of medseg, checked from the source: imports run one way, and never in a circle.

Layers, lowest first (README, "Design"): errors < common < io < config < classical | phantoms
< data < models < training | inference < evaluation < submission < demo < cli. A module may
import from its own layer package and from lower layers only (imports inside functions
included); layers of equal rank (training and inference, classical and phantoms) do not import
each other. medseg.common imports nothing of medseg but medseg.errors; classical and phantoms
only io, common and errors. No medseg modules import one another in a circle, neither at module
level (what runs on ``import``) nor through imports inside functions (which only hide a circle
until the function runs).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(os.environ.get("MEDSEG_ARCHITECTURE_ROOT", Path(__file__).resolve().parents[1])) / "medseg"

RANK = {
    "medseg": 0,  # the root package (__version__)
    "errors": 0,
    "common": 1,
    "io": 2,
    "config": 3,
    "classical": 4,
    "phantoms": 4,
    "data": 5,
    "models": 6,
    "training": 7,
    "inference": 7,
    "evaluation": 8,
    "submission": 9,
    "demo": 10,
    "cli": 11,
    "__main__": 12,
}
ONLY = {  # layers with a stricter rule than their rank
    "common": {"errors"},
    "classical": {"errors", "common", "io", "medseg"},
    "phantoms": {"errors", "common", "io", "medseg"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "medseg"


def _target(name: str) -> str | None:
    """The medseg module an import names (``from medseg.io import atomic_path`` -> ``medseg.io``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> list[tuple[str, bool]]:
    """``(imported medseg module, at module level)`` for every import statement in ``module``."""
    path = MODULES[module]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, False)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".rstrip(".")
                names = [f"{base}.{alias.name}" for alias in child.names]
            for name in names:
                if name.split(".")[0] == "medseg" and (target := _target(name)) and target != module:
                    found.append((target, top))
            visit(child, top)

    visit(ast.parse(path.read_text(encoding="utf-8")), True)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_layer_has_a_rank():
    assert {_layer(m) for m in MODULES} <= set(RANK), "a new top-level package needs a place in RANK (and the README)"


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for module, imports in GRAPH.items():
        layer = _layer(module)
        for target, _ in imports:
            other = _layer(target)
            if other == layer:
                continue
            if layer in ONLY and other not in ONLY[layer]:
                wrong.append(f"{module} -> {target} ({layer} may only import {sorted(ONLY[layer])})")
            elif RANK[other] >= RANK[layer] and other != "medseg":
                wrong.append(f"{module} -> {target} ({layer} is not above {other})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(set(wrong)))


def _circles(module_level_only: bool) -> list[list[str]]:
    edges = {
        module: sorted({t for t, top in imports if top or not module_level_only}) for module, imports in GRAPH.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def strongly_connected(module: str) -> None:  # Tarjan
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                strongly_connected(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for module in edges:
        if module not in index:
            strongly_connected(module)
    return circles


def test_no_import_circles():
    assert not _circles(module_level_only=True), "modules importing one another at module level"
    assert not _circles(module_level_only=False), "modules importing one another (imports inside functions included)"


def test_the_checker_sees_lazy_and_relative_imports():
    """The graph is not empty by mistake: known edges are found, lazy ones marked as such."""
    assert ("medseg.common.progress", True) in GRAPH["medseg.data.cache"]
    assert ("medseg.data.transforms", False) in GRAPH["medseg.data.cache"]  # imported inside a function
    assert any(target.startswith("medseg.training") for target, _ in GRAPH["medseg.cli.train"])


def test_postprocessing_loads_neither_torch_nor_training():
    code = (
        "import sys, medseg.inference.postprocess; "
        "assert 'torch' not in sys.modules, 'torch'; "
        "assert not [m for m in sys.modules if m.startswith('medseg.training')], 'training'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_schemas_load_without_torch():
    code = "import sys, medseg.config.plan, medseg.config.run_spec; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
