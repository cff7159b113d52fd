"""Grand Challenge ``metrics.json`` from an evaluation run's long-form ``metrics.csv``.

Input: an evaluation run's ``OUT/metrics.csv``, read and checked by
:func:`medseg.evaluation.metrics_table.read_metrics_csv` (the one owner of its schema:
``case,label,region,metric,value,flag``). Error rows of failed cases are left out, so a case
that failed in the evaluation has no metrics and the submission check names it.

Output layout (JSON; every undefined value is ``null``, since JSON has no NaN)::

    {
      "case": {"<case>": {"<label>": {"<region>": {"<metric>": value, ...}}}},
      "aggregates": {"<label>": {"<region>": {"<metric>": {
          "mean": m, "std": s, "median": q50, "min": lo, "max": hi,
          "count": n_finite, "n_undefined": n_not_finite}}}},
      "flags": [{"case": ..., "label": ..., "region": ..., "metric": ..., "flag": ...}, ...]
    }

Aggregates are over the cases' finite values only (``std`` is the sample standard deviation,
``ddof = 1``, ``null`` with fewer than 2 values); ``n_undefined`` says how many cases were left
out, and ``flags`` lists why. An empty ``region`` is written as ``"all"``. A Grand Challenge
leaderboard column then reads e.g. ``aggregates.1.all.dice.mean``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation.metrics_table import read_metrics_csv, scored_rows
from medseg.io import atomic_write_text


def metrics_json_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the ``{"case", "aggregates", "flags"}`` dict (see the module docstring).

    Empty ``rows`` give empty ``case`` and ``aggregates``. Error rows (metric ``error``) are left
    out. Values that are not finite become ``None``. NumPy does the aggregation.
    """
    cases: dict[str, Any] = {}
    series: dict[tuple[str, str, str], list[float]] = {}
    flags = []
    for row in scored_rows(rows):
        label, region, metric, value = row["label"], row["region"], row["metric"], float(row["value"])
        cases.setdefault(row["case"], {}).setdefault(label, {}).setdefault(region, {})[metric] = _json_number(value)
        series.setdefault((label, region, metric), []).append(value)
        if row.get("flag"):
            flags.append({k: row[k] for k in ("case", "label", "region", "metric", "flag")})
    aggregates: dict[str, Any] = {}
    for (label, region, metric), values in series.items():
        aggregates.setdefault(label, {}).setdefault(region, {})[metric] = _summary(np.asarray(values, float))
    return {"case": cases, "aggregates": aggregates, "flags": flags}


def _summary(values: np.ndarray) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    stats: dict[str, Any] = {"mean": None, "std": None, "median": None, "min": None, "max": None}
    if n:
        stats.update(
            mean=float(finite.mean()), median=float(np.median(finite)), min=float(finite.min()), max=float(finite.max())
        )
        stats["std"] = float(finite.std(ddof=1)) if n > 1 else None
    stats.update(count=n, n_undefined=int(values.size - n))
    return stats


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_metrics_json(metrics: str | Path | list[dict[str, Any]], out_path: str | Path) -> dict[str, Any]:
    """Write the Grand Challenge ``metrics.json`` of ``metrics`` (a ``metrics.csv`` path, or its rows from
    :func:`~medseg.evaluation.metrics_table.read_metrics_csv`) atomically (with the usual permissions, 0666
    minus the umask, via :func:`medseg.io.atomic_write_text`); return the dict."""
    rows = read_metrics_csv(metrics) if isinstance(metrics, (str, Path)) else metrics
    content = metrics_json_from_rows(rows)
    atomic_write_text(out_path, json.dumps(content, indent=2, allow_nan=False) + "\n")
    return content


def metrics_json_problems(content: Any, expected_cases: list[str]) -> list[str]:
    """Problems with a ``metrics.json`` dict: layout, non-numeric values, case set vs ``expected_cases``.

    Returns one line per problem; ``[]`` when it is fine.
    """
    if (
        not isinstance(content, dict)
        or not isinstance(content.get("case"), dict)
        or not isinstance(content.get("aggregates"), dict)
    ):
        return ["metrics.json: needs objects 'case' and 'aggregates' at the top level"]
    problems = []
    cases = set(content["case"])
    missing, extra = sorted(set(expected_cases) - cases), sorted(cases - set(expected_cases))
    if missing:
        problems.append(f"metrics.json: no metrics for {len(missing)} submitted case(s): {_listing(missing)}")
    if extra:
        problems.append(f"metrics.json: metrics for {len(extra)} case(s) not in the submission: {_listing(extra)}")
    bad = [
        path for path, value in _leaves(content["case"]) if value is not None and not isinstance(value, (int, float))
    ]
    if bad:
        problems.append(f"metrics.json: non-numeric values at {_listing(bad)}")
    if not content["aggregates"] and content["case"]:
        problems.append("metrics.json: 'aggregates' is empty")
    return problems


def _leaves(tree: Any, prefix: str = ""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, tree


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")
