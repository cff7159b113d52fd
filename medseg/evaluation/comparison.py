"""Comparing two evaluation runs case by case (method A vs method B on the same references).

For every label, region and metric, the values of the cases present in both runs (and not
NaN in either) are paired; the table gives ``n`` pairs, the means of A and B, the mean,
median and standard deviation of the differences ``B - A``, and two-sided p-values of the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; NaN when every difference is zero or
fewer than two pairs) and the paired t-test (``scipy.stats.ttest_rel``).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import InvalidArgumentError
from medseg.evaluation.metrics_table import ERROR_METRIC, read_metrics_frame

COMPARE_COLUMNS = (
    "label", "region", "metric", "n", "mean_a", "mean_b", "mean_diff", "median_diff", "std_diff",
    "wilcoxon_p", "ttest_p",
)  # fmt: skip
PLOT_METRICS = ("dice", "hd95", "asd", "nsd")


def paired_values(a, b):
    """Inner join of two metrics tables on ``case, label, region, metric`` (columns value_a, value_b)."""
    keys = ["case", "label", "region", "metric"]
    left = a[keys + ["value"]].rename(columns={"value": "value_a"})
    right = b[keys + ["value"]].rename(columns={"value": "value_b"})
    return left.merge(right, on=keys, how="inner")


def compare(a: Any, b: Any):
    """Paired comparison of two runs (DataFrames from :func:`evaluate_folder` or paths to
    ``metrics.csv``, read by :func:`medseg.evaluation.metrics_table.read_metrics_frame`). Returns a
    DataFrame with :data:`COMPARE_COLUMNS`, one row per label,
    region and metric that has at least one pair. Differences are ``B - A``."""
    import pandas as pd

    a = read_metrics_frame(a) if isinstance(a, (str, Path)) else a[a["metric"] != ERROR_METRIC]
    b = read_metrics_frame(b) if isinstance(b, (str, Path)) else b[b["metric"] != ERROR_METRIC]
    joined = paired_values(a, b).dropna(subset=["value_a", "value_b"])
    records = []
    for (label, region, metric), group in joined.groupby(["label", "region", "metric"], sort=False):
        statistics = paired_statistics(group["value_a"].to_numpy(float), group["value_b"].to_numpy(float))
        records.append({"label": label, "region": region, "metric": metric, **statistics})
    return pd.DataFrame(records, columns=list(COMPARE_COLUMNS))


def paired_statistics(a: np.ndarray, b: np.ndarray, wilcoxon: bool = True) -> dict[str, float | int]:
    """Agreement of paired values ``a`` (e.g. the reference, or method A) and ``b``; differences are ``b - a``.

    Pairs where either value is NaN are dropped first. Returns ``n`` (pairs), ``mean_a``, ``mean_b``,
    ``mean_diff`` (the Bland-Altman bias), ``median_diff``, ``std_diff`` (sample SD, ddof=1), ``loa_lower`` and
    ``loa_upper`` (95 % limits of agreement, bias -+ 1.96 SD), ``pearson_r``, and two-sided p-values of the paired
    t-test (``ttest_p``: t = bias / (SD / sqrt(n)) on n - 1 degrees of freedom, as ``scipy.stats.ttest_rel``) and,
    with ``wilcoxon``, the Wilcoxon signed-rank test (``wilcoxon_p``, ``scipy.stats.wilcoxon``; importing
    scipy.stats takes a second or more, so callers that need no Wilcoxon test pass ``wilcoxon=False`` and get NaN).
    Undefined values are NaN: everything for no pair; SD, limits, r and tests for one pair; r when either side
    is constant; Wilcoxon when every difference is zero; the t-test when all differences are equal.
    """
    from scipy.special import stdtr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = b - a
    n = int(diff.size)
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    bias = float(diff.mean()) if n else math.nan
    ttest = wilcoxon_p = pearson = math.nan
    if n >= 2 and np.std(diff) > 0:
        ttest = float(2.0 * stdtr(n - 1, -abs(bias / (sd / math.sqrt(n)))))
    if n >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
        pearson = float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))
    if wilcoxon and n >= 2 and np.any(diff != 0):
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wilcoxon_p = float(stats.wilcoxon(a, b).pvalue)
    return {
        "n": n, "mean_a": float(a.mean()) if n else math.nan, "mean_b": float(b.mean()) if n else math.nan,
        "mean_diff": bias, "median_diff": float(np.median(diff)) if n else math.nan, "std_diff": sd,
        "loa_lower": bias - 1.96 * sd, "loa_upper": bias + 1.96 * sd, "pearson_r": pearson,
        "wilcoxon_p": wilcoxon_p, "ttest_p": ttest,
    }  # fmt: skip


def write_comparison(path_a: str | Path, path_b: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """``compare`` two metrics.csv files and write ``comparison.csv``, ``comparison.md`` and
    ``bland_altman.png`` (dice, hd95, asd, nsd of region ``all`` per label) into ``out_dir``; without
    any of those metrics there is no figure, and the figure of an earlier comparison there is removed."""
    a, b = read_metrics_frame(path_a), read_metrics_frame(path_b)
    table = compare(a, b)
    if table.empty:
        raise InvalidArgumentError(
            f"{path_a} and {path_b} share no (case, label, region, metric) with values on both sides"
        )
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / "comparison.csv", "markdown": out / "comparison.md"}
    table.to_csv(written["csv"], index=False)
    plot = _bland_altman(a, b, out / "bland_altman.png")
    lines = [
        "# Comparison of two evaluation runs",
        "",
        f"- A: `{path_a}`",
        f"- B: `{path_b}`",
        f"- cases in both: {len(set(a['case']) & set(b['case']))} (A only: {len(set(a['case']) - set(b['case']))}, "
        f"B only: {len(set(b['case']) - set(a['case']))})",
        "- differences are B - A; p-values: Wilcoxon signed-rank and paired t-test (two-sided)",
        "",
        "| label | region | metric | n | mean A | mean B | mean diff | median diff | Wilcoxon p | t-test p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.label} | {r.region} | {r.metric} | {r.n} | {_g(r.mean_a)} | {_g(r.mean_b)} | {_g(r.mean_diff)} | "
            f"{_g(r.median_diff)} | {_g(r.wilcoxon_p, 3)} | {_g(r.ttest_p, 3)} |"
        )
    if plot is not None:
        written["figure"] = plot
        lines += ["", "![Bland-Altman](bland_altman.png)"]
    else:  # never an earlier comparison's figure beside this one
        (out / "bland_altman.png").unlink(missing_ok=True)
    written["markdown"].write_text("\n".join(lines) + "\n")
    return written


def _g(value: float, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _bland_altman(a, b, path: Path) -> Path | None:
    from medseg.evaluation.report import _pyplot, bland_altman_axes

    joined = paired_values(a, b).dropna(subset=["value_a", "value_b"])
    joined = joined[(joined["region"] == "all") & joined["metric"].isin(PLOT_METRICS)]
    if joined.empty:
        return None
    labels = list(dict.fromkeys(joined["label"]))
    metrics = [m for m in PLOT_METRICS if m in set(joined["metric"])]
    plt = _pyplot()
    fig, axes = plt.subplots(len(labels), len(metrics), figsize=(3.2 * len(metrics), 2.9 * len(labels)), squeeze=False)
    for i, label in enumerate(labels):
        for j, metric in enumerate(metrics):
            part = joined[(joined["label"] == label) & (joined["metric"] == metric)]
            ax = axes[i][j]
            if part.empty:
                ax.set_axis_off()
                continue
            unit = "(mm)" if metric in ("hd95", "asd") else ""
            bland_altman_axes(ax, part["value_a"].to_numpy(float), part["value_b"].to_numpy(float), f"label {label}: {metric}", unit)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
