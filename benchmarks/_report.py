"""Helpers for benchmark scripts: timing with medians and writing results.

Each benchmark writes its figures to ``benchmarks/results/<name>.json`` and replaces its own
section of ``benchmarks/README.md`` (between ``<!-- bench:<name> -->`` markers), so scripts
can be re-run independently without clobbering each other.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"


def time_call(function: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Median wall time in seconds over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()],  # other jobs on a shared machine
    }  # fmt: skip


def write_results(name: str, figures: dict[str, Any], table_markdown: str) -> None:
    """Write ``results/<name>.json`` and replace the ``<name>`` section of ``benchmarks/README.md``."""
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **figures}
    (results / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    readme = BENCH_DIR / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{table_markdown.strip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")
