"""Summaries of many cases: per label, region and metric statistics, and the foreground mean.

Statistics are over the cases' values that are not NaN: ``mean``, ``std`` (sample standard
deviation, ddof=1; NaN for fewer than two values), ``median``, ``min``, ``max``, ``n``. ``n_nan``
counts NaN values (undefined ones such as rvd with an empty reference, or distances under
``empty_policy="nan"``) and ``n_flagged`` counts values that carry any flag (a convention for
an empty mask, a missing region, slices with an empty mask), so empty masks never drop out of a
summary unnoticed. The **foreground mean** of a region and metric is the mean over labels of
the per-label means (each label weighs the same).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from medseg.evaluation.metrics import ALL_METRICS

REGION_ORDER = ("all", "base", "middle", "apex")
STAT_COLUMNS = ("mean", "std", "median", "min", "max", "n", "n_flagged", "n_nan")


def _rows_of(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    if hasattr(data, "to_dict"):  # a DataFrame
        frame = data.copy()
        frame["flag"] = frame["flag"].fillna("")
        return frame.to_dict("records")
    return list(data)


def _stats(values: list[float], flags: list[str]) -> dict[str, float | int]:
    array = np.asarray(values, dtype=np.float64)
    finite = array[~np.isnan(array)]
    n = int(finite.size)
    return {
        "mean": float(finite.mean()) if n else math.nan,
        "std": float(finite.std(ddof=1)) if n > 1 else math.nan,
        "median": float(np.median(finite)) if n else math.nan,
        "min": float(finite.min()) if n else math.nan,
        "max": float(finite.max()) if n else math.nan,
        "n": n,
        "n_flagged": int(sum(1 for f in flags if f)),
        "n_nan": int(array.size - n),
    }


def summary_records(data: Iterable[dict[str, Any]] | Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-(label, region, metric) statistics and foreground means as lists of plain dicts.

    ``data`` is a list of rows (``label, region, metric, value, flag``) or a DataFrame with
    those columns; rows with metric ``error`` are ignored. Returns ``(per_label,
    foreground)``: the first has keys ``label, region, metric`` plus :data:`STAT_COLUMNS`; the
    second ``region, metric, mean, n_labels``.
    """
    groups: dict[tuple[str, str, str], tuple[list[float], list[str]]] = {}
    label_order: list[str] = []
    for row in _rows_of(data):
        if row["metric"] == "error":
            continue
        label = str(row["label"])
        if label not in label_order:
            label_order.append(label)
        values, flags = groups.setdefault((label, str(row["region"]), str(row["metric"])), ([], []))
        value = row["value"]
        values.append(math.nan if value is None or value == "" else float(value))
        flag = row.get("flag", "")
        flags.append("" if flag is None or (isinstance(flag, float) and math.isnan(flag)) else str(flag))
    region_rank = {r: i for i, r in enumerate(REGION_ORDER)}
    metric_rank = {m: i for i, m in enumerate(ALL_METRICS)}
    keys = sorted(
        groups,
        key=lambda k: (label_order.index(k[0]), region_rank.get(k[1], 99), k[1], metric_rank.get(k[2], 99), k[2]),
    )
    per_label = [{"label": k[0], "region": k[1], "metric": k[2], **_stats(*groups[k])} for k in keys]
    means: dict[tuple[str, str], list[float]] = {}
    for record in per_label:
        if not math.isnan(record["mean"]):
            means.setdefault((record["region"], record["metric"]), []).append(record["mean"])
    foreground = [
        {"region": region, "metric": metric, "mean": float(np.mean(values)), "n_labels": len(values)}
        for (region, metric), values in sorted(
            means.items(), key=lambda kv: (region_rank.get(kv[0][0], 99), metric_rank.get(kv[0][1], 99))
        )
    ]
    return per_label, foreground


def summarise(data: Any):
    """Summary table of evaluation rows (a DataFrame or a list of row dicts).

    Returns a ``pandas.DataFrame`` with columns ``label, region, metric`` and
    :data:`STAT_COLUMNS`, one row per label, region and metric, followed by rows with label
    ``"foreground"`` holding the foreground mean over labels (``n`` = number of labels; the
    other statistics NaN). Empty input gives an empty table.
    """
    import pandas as pd

    per_label, foreground = summary_records(data)
    extra = [
        {"label": "foreground", "region": f["region"], "metric": f["metric"], "mean": f["mean"], "std": math.nan,
         "median": math.nan, "min": math.nan, "max": math.nan, "n": f["n_labels"], "n_flagged": 0, "n_nan": 0}
        for f in foreground
    ]  # fmt: skip
    return pd.DataFrame(per_label + extra, columns=["label", "region", "metric", *STAT_COLUMNS])


def summary_document(run) -> dict[str, Any]:
    """The ``summary.json`` content for a :class:`medseg.evaluation.batch.FolderRun`."""
    per_label, foreground = summary_records(run.rows)
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for record in per_label:
        stats = {k: record[k] for k in STAT_COLUMNS}
        metrics.setdefault(record["label"], {}).setdefault(record["region"], {})[record["metric"]] = stats
    fg: dict[str, dict[str, Any]] = {}
    for record in foreground:
        fg.setdefault(record["region"], {})[record["metric"]] = {"mean": record["mean"], "n_labels": record["n_labels"]}
    base_ends: dict[str, dict[str, int]] = {}
    for outcome in run.outcomes:
        for info in outcome.regions:
            end = info.get("base_end") or "none (empty reference)"
            counts = base_ends.setdefault(str(info["label"]), {})
            counts[end] = counts.get(end, 0) + 1
    return {
        "n_matched": len(run.matching.pairs),
        "n_cases": len(run.outcomes),
        "n_evaluated": sum(1 for o in run.outcomes if not o.error),
        "n_failed": len(run.failures),
        "interrupted": run.interrupted,
        "label_warnings": run.label_warnings(),
        "failures": [{"case": o.case_id, "error": o.error} for o in run.failures],
        "unmatched_predictions": [str(p) for p in run.matching.unmatched_predictions],
        "resampled_cases": [o.case_id for o in run.outcomes if o.resampled],
        "labels": {str(v): n for v, n in run.label_names.items()},
        "options": run.options,
        "base_end_chosen": base_ends,
        "metrics": metrics,
        "foreground_mean": fg,
    }
