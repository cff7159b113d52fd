"""Comparing two evaluation runs case by case (method A vs method B on the same references).

For every label, region and metric, the values of the cases present in both runs (and not
NaN in either) are paired; the table gives ``n`` pairs, the means of A and B, the mean,
median and standard deviation of the differences ``B - A``, and two-sided p-values of the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``; NaN when every difference is zero or
fewer than two pairs) and the paired t-test (``scipy.stats.ttest_rel``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from medseg.errors import InvalidArgumentError
from medseg.evaluation.metrics_table import ERROR_METRIC, read_metrics_frame
from medseg.evaluation.statistics import paired_statistics

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
    written["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
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
            bland_altman_axes(
                ax, part["value_a"].to_numpy(float), part["value_b"].to_numpy(float), f"label {label}: {metric}", unit
            )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
