"""Grand Challenge ``metrics.json`` from an evaluation run's long-form ``metrics.csv``.

Input: a CSV with columns ``case,label,region,metric,value,flag`` (one row per case, label,
region and metric; ``value`` a number, ``nan``/``inf``/empty when undefined; ``flag`` empty or
a short reason such as ``empty_reference``), as the evaluation engine writes to
``OUT/metrics.csv``. It is read with the ``csv`` module, so this does not depend on the
evaluation code.

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

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import atomic_write_text
from medseg.submission.errors import SubmissionError

METRICS_CSV_COLUMNS = ("case", "label", "region", "metric", "value", "flag")


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a long-form ``metrics.csv``; ``value`` parsed to float (NaN when empty/undefined).

    Raises:
        SubmissionError: missing file, missing columns, unreadable values or a repeated
            ``(case, label, region, metric)``; each problem names the line.
    """
    path = Path(path).expanduser()
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read the metrics CSV ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in METRICS_CSV_COLUMNS if c not in columns and c != "flag"]
        if missing:
            raise SubmissionError(
                f"{path}: metrics CSV lacks columns {missing}; expected {','.join(METRICS_CSV_COLUMNS)}"
            )
        rows, problems, seen = [], [], set()
        for line_number, row in enumerate(reader, start=2):
            key = tuple((row.get(c) or "").strip() for c in ("case", "label", "region", "metric"))
            key = key[:2] + (key[2] or "all",) + key[3:]
            if not key[0] or not key[3]:
                problems.append(f"line {line_number}: empty case or metric")
                continue
            if key in seen:
                problems.append(f"line {line_number}: {'/'.join(key)} appears twice")
                continue
            seen.add(key)
            try:
                value = _parse_value(row.get("value"))
            except ValueError:
                problems.append(f"line {line_number}: value {row.get('value')!r} is not a number")
                continue
            rows.append(dict(zip(("case", "label", "region", "metric"), key), value=value, flag=(row.get("flag") or "").strip()))
    if problems:
        raise SubmissionError(f"{path}: {len(problems)} bad rows in the metrics CSV", problems[:20])
    return rows


def _parse_value(text: str | None) -> float:
    text = (text or "").strip()
    return float("nan") if text == "" else float(text)


def metrics_json_from_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the ``{"case", "aggregates", "flags"}`` dict (see the module docstring).

    Empty ``rows`` give empty ``case`` and ``aggregates``. Values that are not finite become
    ``None``. NumPy does the aggregation.
    """
    cases: dict[str, Any] = {}
    series: dict[tuple[str, str, str], list[float]] = {}
    flags = []
    for row in rows:
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


def write_metrics_json(metrics_csv: str | Path, out_path: str | Path) -> dict[str, Any]:
    """Read ``metrics_csv``, write the Grand Challenge ``metrics.json`` atomically (with the usual
    permissions, 0666 minus the umask, via :func:`medseg.io.atomic_write_text`); return the dict."""
    content = metrics_json_from_rows(read_metrics_csv(metrics_csv))
    atomic_write_text(out_path, json.dumps(content, indent=2, allow_nan=False) + "\n")
    return content


def metrics_json_problems(content: Any, expected_cases: list[str]) -> list[str]:
    """Problems with a ``metrics.json`` dict: layout, non-numeric values, case set vs ``expected_cases``.

    Returns one line per problem; ``[]`` when it is fine.
    """
    if not isinstance(content, dict) or not isinstance(content.get("case"), dict) or not isinstance(content.get("aggregates"), dict):
        return ["metrics.json: needs objects 'case' and 'aggregates' at the top level"]
    problems = []
    cases = set(content["case"])
    missing, extra = sorted(set(expected_cases) - cases), sorted(cases - set(expected_cases))
    if missing:
        problems.append(f"metrics.json: no metrics for {len(missing)} submitted case(s): {_listing(missing)}")
    if extra:
        problems.append(f"metrics.json: metrics for {len(extra)} case(s) not in the submission: {_listing(extra)}")
    bad = [path for path, value in _leaves(content["case"]) if value is not None and not isinstance(value, (int, float))]
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
