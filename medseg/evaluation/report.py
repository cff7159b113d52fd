"""``report.md`` and its figures (matplotlib, Agg backend, PNG in ``figures/``).

Figures: box plots of dice, hd95, asd and nsd per label and region; Bland-Altman and
correlation plots of reference vs predicted volumes per label; the worst cases (lowest mean
foreground dice) as overlays of the reference (solid) and prediction (dashed) contours on the
slice where they disagree most, over the image when one is known. With clinical indices: their
agreement table and a Bland-Altman and correlation plot per index (``figures/indices.png``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation.summary import REGION_ORDER

TABLE_METRICS = ("dice", "jaccard", "rvd", "hd", "hd95", "asd", "nsd", "volume_ref_ml", "volume_pred_ml")
BOX_METRICS = ("dice", "hd95", "asd", "nsd")
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def write_report(out: Path, run, summary: dict[str, Any], worst: list[tuple[float, Any]]) -> Path:
    """Write ``out/report.md`` (and ``out/figures/*.png``); returns the report's path."""
    figures = _figures(out, run, worst)
    lines = ["# Evaluation report", ""]
    lines += _run_section(run, summary)
    lines += _summary_tables(summary)
    lines += _regions_section(summary)
    lines += _failures_section(run)
    if getattr(run, "indices", None) is not None:
        lines += indices_section(out, run.indices)
    if figures:
        lines += ["## Figures", ""]
        for title, path in figures:
            lines += [f"### {title}", "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
    lines += _definitions_section()
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run_section(run, summary) -> list[str]:
    options = summary["options"]
    lines = [
        (
            f"- cases: {summary['n_matched']} matched, {summary['n_cases']} done ({summary['n_evaluated']} evaluated, "
            f"{summary['n_failed']} failed) -- **interrupted: partial results, "
            f"{summary['n_matched'] - summary['n_cases']} "
            "case(s) not evaluated**"
            if summary["interrupted"]
            else f"- cases: {summary['n_cases']} ({summary['n_evaluated']} evaluated, {summary['n_failed']} failed)"
        ),
        f"- references: `{options['manifest'] or options['ref']}`; predictions: `{options['pred']}`",
        f"- labels: {', '.join(f'{v} = {n}' for v, n in summary['labels'].items()) or 'none'}",
        f"- regions: {_regions_line(options) if options['regions'] else 'all only'}"
        + (
            f" (mode {options['region_mode']})"
            if not options["regions"] and options["region_mode"] != "volumetric"
            else ""
        ),
        f"- nsd tolerance: {options['nsd_tolerance_mm']} mm; empty-mask policy: {options['empty_policy']} "
        f"(worst-case distance: {options['worst_distance_mm']})",
        f"- grid tolerance: {options['geometry_tolerance_mm']} mm; resample prediction to reference: "
        f"{options['resample_pred_to_ref']}",
    ]
    lines += [f"- **warning**: {warning}" for warning in summary["label_warnings"]]
    if summary["resampled_cases"]:
        lines.append(
            f"- resampled (nearest neighbour) onto the reference grid: {', '.join(summary['resampled_cases'])}"
        )
    if summary["unmatched_predictions"]:
        lines.append(f"- predictions without a reference (ignored): {len(summary['unmatched_predictions'])}")
    return lines + [""]


def _summary_tables(summary) -> list[str]:
    lines = ["## Summary", "", "Mean ± std over cases (n values; flagged values counted in brackets).", ""]
    for label, regions in summary["metrics"].items():
        region_names = [r for r in REGION_ORDER if r in regions] + [r for r in regions if r not in REGION_ORDER]
        lines += [
            f"### Label {label}",
            "",
            "| metric | " + " | ".join(region_names) + " |",
            "|---" * (len(region_names) + 1) + "|",
        ]
        metrics = [m for m in TABLE_METRICS if any(m in regions[r] for r in region_names)]
        metrics += [m for m in regions[region_names[0]] if m not in metrics]
        for metric in metrics:
            cells = []
            for region in region_names:
                s = regions[region].get(metric)
                if s is None:
                    cells.append("")
                    continue
                cell = f"{_fmt(s['mean'])} ± {_fmt(s['std'], 3)} (n={s['n']})"
                if s["n_flagged"]:
                    cell += f" [{s['n_flagged']} flagged]"
                cells.append(cell)
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    if summary["foreground_mean"]:
        regions = list(summary["foreground_mean"])
        lines += [
            "### Foreground mean (mean over labels of the per-label means)",
            "",
            "| metric | " + " | ".join(regions) + " |",
            "|---" * (len(regions) + 1) + "|",
        ]
        metrics = [m for m in TABLE_METRICS if any(m in summary["foreground_mean"][r] for r in regions)]
        for metric in metrics:
            cells = [_fmt(summary["foreground_mean"][r].get(metric, {}).get("mean")) for r in regions]
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _regions_section(summary) -> list[str]:
    if not summary["base_end_chosen"]:
        return []
    lines = ["## Regions", "", "Which end of the region axis was taken as base (per label, number of cases); "
             "the split of every case is in `regions.csv`, where `reference_first` and `reference_last` are slice "
             "indices (from 0, both included) and each region's range `start-stop` is half-open: slices start to "
             "stop - 1 (`0-4` is slices 0, 1, 2 and 3; `4-4` is empty). The end regions reach the array's edge, so "
             "prediction slices beyond the reference count in base or apex.", ""]  # fmt: skip
    for label, counts in summary["base_end_chosen"].items():
        lines.append(f"- label {label}: " + ", ".join(f"{end}: {n}" for end, n in counts.items()))
    return lines + [""]


def _failures_section(run) -> list[str]:
    if not run.failures and not run.matching.unmatched_predictions:
        return []
    lines = ["## Problems", ""]
    if run.failures:
        lines += ["| case | error |", "|---|---|"]
        lines += [f"| {o.case_id} | {str(o.error).replace('|', '/')} |" for o in run.failures]
        lines.append("")
    if run.matching.unmatched_predictions:
        lines.append("Predictions with no matching reference (not evaluated):")
        lines += [f"- `{p}`" for p in run.matching.unmatched_predictions]
        lines.append("")
    return lines


def _definitions_section() -> list[str]:
    return [
        "## Definitions",
        "",
        "Surfaces are mask voxels with a face-neighbour outside the mask (outside the array counts as background); "
        "distances are exact Euclidean distances in mm between voxel centres. hd = max of both directed maxima; "
        "hd95 = max of the two directed 95th percentiles; asd = mean over both surfaces pooled; nsd = share of both "
        "surfaces within the tolerance of the other; rvd = (pred - ref) / ref. Flags: `both_empty`, `ref_empty`, "
        "`pred_empty` mark conventions for empty masks (distances with one empty mask are the worst-case value or "
        "NaN); `no_region` / `empty_region` mark regions that do not exist; `*_empty_slices=k` marks slice-wise "
        "averages that include k slices where one mask is empty.",
        "",
    ]


# -- figures ------------------------------------------------------------------------------------


class _Figures:
    """Minimal stand-in for ``pyplot`` (``subplots``/``close``) on the Agg canvas: importing
    pyplot and its backend machinery costs more than drawing these small figures."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, figsize=(4, 3), squeeze: bool = False):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=squeeze)
        return fig, axes

    @staticmethod
    def close(fig) -> None:
        del fig  # nothing to release: the figure is not registered anywhere


def _pyplot() -> _Figures:
    return _Figures()


def _save(fig, path: Path, dpi: int = 80) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def _figures(out: Path, run, worst) -> list[tuple[str, Path]]:
    rows = [r for r in run.rows if r["metric"] != "error"]
    if not rows:
        return []
    plt = _pyplot()
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for title, maker in (
        ("Metrics per label and region", _box_plots),
        ("Volumes: Bland-Altman (top) and correlation (bottom), region all", _volume_plots),
    ):
        path = maker(plt, rows, folder)
        if path is not None:
            made.append((title, path))
    if worst:
        path = _worst_cases(plt, worst, folder, run.label_names)
        if path is not None:
            made.append(
                (
                    "Worst cases (lowest mean dice): reference solid, prediction light dashed, same colour per label",
                    path,
                )
            )
    return made


def _values(rows, metric, region="all") -> dict[str, dict[str, float]]:
    """label -> case -> value (non-NaN)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["metric"] == metric and r["region"] == region and not math.isnan(r["value"]):
            out.setdefault(str(r["label"]), {})[r["case"]] = r["value"]
    return out


def _box_plots(plt, rows, folder: Path) -> Path | None:
    metrics = [m for m in BOX_METRICS if any(r["metric"] == m for r in rows)]
    if not metrics:
        return None
    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    regions = [g for g in REGION_ORDER if any(r["region"] == g for r in rows)]
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        if not math.isnan(r["value"]):
            groups.setdefault((r["metric"], str(r["label"]), r["region"]), []).append(r["value"])
    n_boxes = len(labels) * len(regions)
    rows_of_plots = 2 if n_boxes > 6 and len(metrics) > 2 else 1
    per_row = math.ceil(len(metrics) / rows_of_plots)
    width = max(3.0, 0.45 * (n_boxes + len(labels)) + 1.0)
    fig, axes = plt.subplots(
        rows_of_plots, per_row, figsize=(width * per_row, 3.4 * rows_of_plots + 0.4), squeeze=False
    )
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_axis_off()
    for ax, metric in zip(axes.ravel(), metrics):
        data, names, colours, positions = [], [], [], []
        for li, label in enumerate(labels):
            for ri, region in enumerate(regions):
                data.append(groups.get((metric, label, region)) or [math.nan])
                names.append(region if len(regions) > 1 else label)
                colours.append(_COLOURS[li % len(_COLOURS)])
                positions.append(li * (len(regions) + 1) + ri)
        boxes = ax.boxplot(data, positions=positions, patch_artist=True, widths=0.7)
        for patch, colour in zip(boxes["boxes"], colours):
            patch.set_facecolor(colour)
            patch.set_alpha(0.45)
        ax.set_xticks(positions, names, fontsize=7, rotation=90 if len(regions) > 1 else 0)
        ax.set_title(metric + (" (mm)" if metric in ("hd95", "asd") else ""), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    if len(regions) > 1:
        from matplotlib.patches import Patch

        handles = [
            Patch(facecolor=_COLOURS[i % len(_COLOURS)], alpha=0.45, label=f"label {label}")
            for i, label in enumerate(labels)
        ]
        fig.legend(handles=handles, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.subplots_adjust(
        left=0.06, right=0.99, top=0.93, bottom=0.16 if len(regions) > 1 else 0.1, wspace=0.2, hspace=0.45
    )
    path = _save(fig, folder / "boxplots.png")
    plt.close(fig)
    return path


def _paired_volumes(rows):
    ref, pred = _values(rows, "volume_ref_ml"), _values(rows, "volume_pred_ml")
    pairs = {}
    for label in ref:
        cases = sorted(set(ref[label]) & set(pred.get(label, {})))
        if cases:
            pairs[label] = (np.array([ref[label][c] for c in cases]), np.array([pred[label][c] for c in cases]))
    return pairs


def _volume_plots(plt, rows, folder: Path) -> Path | None:
    pairs = _paired_volumes(rows)
    if not pairs:
        return None
    fig, axes = plt.subplots(2, len(pairs), figsize=(3.4 * len(pairs), 6.2), squeeze=False)
    for column, (label, (ref, pred)) in enumerate(pairs.items()):
        bland_altman_axes(axes[0][column], ref, pred, f"label {label}", "volume (ml)", "prediction - reference")
        _correlation_axes(axes[1][column], ref, pred, f"label {label}")
    fig.subplots_adjust(
        left=0.12 if len(pairs) == 1 else 0.08, right=0.97, top=0.94, bottom=0.08, hspace=0.35, wspace=0.35
    )
    path = _save(fig, folder / "volumes.png")
    plt.close(fig)
    return path


def bland_altman_axes(ax, a: np.ndarray, b: np.ndarray, title: str, unit: str, difference: str = "B - A") -> None:
    """Draw a Bland-Altman plot of paired values ``a`` (the reference, e.g. reference volumes in ml)
    and ``b`` on ``ax``: the mean of each pair (x) against the difference ``b - a`` (y), with a
    line at zero, the bias (mean difference) and the 95 % limits of agreement (bias +- 1.96 sd of
    the differences), each named in the legend. ``unit`` is printed on both axes, ``difference``
    names the difference on the y-axis (e.g. ``"prediction - reference"``). Empty inputs draw
    empty axes; one pair has limits equal to the bias."""
    from medseg.evaluation.statistics import paired_statistics

    mean, diff = (a + b) / 2.0, b - a
    ax.axhline(0.0, color="lightgrey", lw=0.8)
    ax.scatter(mean, diff, s=12, alpha=0.7)
    statistics = paired_statistics(a, b, wilcoxon=False)
    if statistics["n"]:
        bias = statistics["mean_diff"]
        sd = statistics["std_diff"] if statistics["n"] > 1 else 0.0
        ax.axhline(bias, color="k", lw=1, label=f"bias {bias:.3g}")
        for sign in (-1, 1):
            ax.axhline(
                bias + sign * 1.96 * sd,
                color="grey",
                lw=0.8,
                ls="--",
                label=f"95 % limits {bias - 1.96 * sd:.3g} .. {bias + 1.96 * sd:.3g}" if sign < 0 else None,
            )
        ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"mean {unit}", fontsize=8)
    ax.set_ylabel(f"difference ({difference}) {unit}", fontsize=8)
    ax.tick_params(labelsize=7)


def _correlation_axes(ax, ref: np.ndarray, pred: np.ndarray, label: str, quantity: str = "volume (ml)") -> None:
    """Prediction against reference with the identity line; the title gives Pearson's r."""
    from medseg.evaluation.statistics import paired_statistics

    ax.scatter(ref, pred, s=12, alpha=0.7)
    if ref.size:
        low, high = float(min(ref.min(), pred.min(), 0.0)), float(max(ref.max(), pred.max(), 1e-9)) * 1.05
        ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
    ax.set_title(f"{label}: r = {_fmt(paired_statistics(ref, pred, wilcoxon=False)['pearson_r'], 3)}", fontsize=9)
    ax.set_xlabel(f"reference {quantity}", fontsize=8)
    ax.set_ylabel(f"predicted {quantity}", fontsize=8)
    ax.tick_params(labelsize=7)


def indices_section(out: Path, indices) -> list[str]:
    """Report lines for clinical indices (an ``IndicesResult``): the agreement table and ``figures/indices.png``,
    a Bland-Altman (left) and correlation (right) plot per index, three indices per row."""
    lines = [f"## Clinical indices ({indices.spec.kind})", "",
             f"Roles: {', '.join(f'{r} = {v}' for r, v in indices.spec.roles.items())}. Per subject in `indices.csv`; "
             "differences are prediction - reference; limits of agreement are bias -+ 1.96 SD; p-values two-sided.",
             "", "| index | unit | n | mean ref | mean pred | bias | SD | 95 % limits | r | t-test p | flagged |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for a in indices.agreement:
        lines.append(f"| {a['index']} | {a['unit']} | {a['n']} | {_fmt(a['mean_reference'])} | "
                     f"{_fmt(a['mean_prediction'])} "
                     f"| {_fmt(a['bias'], 3)} | {_fmt(a['sd_difference'], 3)} | {_fmt(a['loa_lower'], 3)} .. "
                     f"{_fmt(a['loa_upper'], 3)} | {_fmt(a['pearson_r'], 3)} | {_fmt(a['ttest_p'], 2)} | "
                     f"{a['n_flagged']} |")  # fmt: skip
    path = _indices_plots(out / "figures", indices)
    if path is not None:
        title = "Clinical indices: Bland-Altman (left) and correlation (right)"
        lines += ["", f"![{title}]({path.relative_to(out).as_posix()})"]
    return lines + [""]


def _indices_plots(folder: Path, indices, per_row: int = 3) -> Path | None:
    names = [a["index"] for a in indices.agreement if a["n"]]
    if not names:
        return None
    rows = math.ceil(len(names) / per_row)
    columns = 2 * min(per_row, len(names))
    plt = _pyplot()
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for n, name in enumerate(names):
        pairs = [(r["reference"], r["prediction"]) for r in indices.paired if r["index"] == name]
        ref, pred = (np.array(v, dtype=float) for v in zip(*pairs))
        keep = ~(np.isnan(ref) | np.isnan(pred))
        unit = next(a["unit"] for a in indices.agreement if a["index"] == name)
        unit_text = "" if unit == "1" else f"({unit})"
        ba, corr = axes[n // per_row][2 * (n % per_row)], axes[n // per_row][2 * (n % per_row) + 1]
        ba.set_axis_on()
        corr.set_axis_on()
        bland_altman_axes(ba, ref[keep], pred[keep], name, unit_text, "prediction - reference")
        _correlation_axes(corr, ref[keep], pred[keep], name, unit_text)
        for ax in (ba, corr):
            ax.locator_params(nbins=4)  # fewer tick labels: text is most of the drawing time
    fig.subplots_adjust(left=0.05, right=0.99, top=0.95, bottom=0.07, hspace=0.5, wspace=0.45)
    folder.mkdir(parents=True, exist_ok=True)
    path = _save(fig, folder / "indices.png", dpi=72)
    plt.close(fig)
    return path


def _image_slice(outcome, snapshot) -> np.ndarray | None:
    """The image under the overlay, read only for the few worst cases (None if unknown)."""
    if not outcome.image:
        return None
    try:
        from medseg.io import load_volume

        image = load_volume(outcome.image, ct=None)
        cut = tuple(slice(*c) if isinstance(c, list) else c for c in snapshot["cut"])
        if image.shape[snapshot["axis"]] <= snapshot["slice"]:
            return None
        part = np.asarray(image.array[cut], dtype=np.float32)
        return part if part.shape == snapshot["reference"].shape else None
    except Exception:  # an overlay without its image is still useful
        return None


def _lighter(colour: str, amount: float = 0.6) -> tuple[float, float, float]:
    """``colour`` (hex) mixed with white."""
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return tuple(c + (1 - c) * amount for c in rgb)  # type: ignore[return-value]


def _label_colours(values, label_names) -> dict[int, str]:
    """One colour per label value, fixed by the value's rank among the scored labels (the box
    plots' order), so a label has the same colour in every panel whichever labels a slice shows;
    values that are not scored follow them."""
    order = sorted(label_names or {}) + sorted(set(values) - set(label_names or {}))
    return {value: _COLOURS[i % len(_COLOURS)] for i, value in enumerate(order)}


def _worst_cases(plt, worst, folder: Path, label_names) -> Path | None:
    fig, axes = plt.subplots(1, len(worst), figsize=(4.0 * len(worst), 4.4), squeeze=False)
    drawn = {
        int(v)
        for _, outcome in worst
        for part in ("reference", "prediction")
        for v in np.unique(outcome.snapshot[part]).tolist()
        if v != 0
    }
    colours = _label_colours(drawn, label_names)
    for ax, (score, outcome) in zip(axes[0], worst):
        snap = outcome.snapshot
        ref, pred = snap["reference"], snap["prediction"]
        image = _image_slice(outcome, snap)
        aspect = snap["pixel_mm"][0] / snap["pixel_mm"][1]
        # rows of the picture = second in-plane axis, so transpose [a, b] -> [b, a]
        background = image.T if image is not None else np.zeros(ref.T.shape)
        low, high = np.percentile(background, [1, 99]) if image is not None else (0, 1)
        ax.imshow(
            background,
            cmap="gray",
            vmin=low,
            vmax=high if high > low else low + 1,
            origin="lower",
            aspect=aspect,
            interpolation="nearest",
        )
        values = sorted((set(np.unique(ref).tolist()) | set(np.unique(pred).tolist())) - {0})
        for value in values:
            colour = colours[int(value)]
            light = _lighter(colour)  # prediction: a light dashed line, visible on top of the reference's
            for mask, style, width, tone in (
                (ref == value, "solid", 2.0, colour),
                (pred == value, "dashed", 1.2, light),
            ):
                if mask.any() and min(mask.shape) > 1:
                    ax.contour(
                        mask.T.astype(float),
                        levels=[0.5],
                        colors=[tone],
                        linestyles=style,
                        linewidths=width,
                        origin="lower",
                    )
        ax.set_title(
            f"{outcome.case_id}: mean dice {score:.3f}\naxis {snap['axis']}, slice {snap['slice']}", fontsize=8
        )
        ax.set_xticks([])
        ax.set_yticks([])
    from matplotlib.lines import Line2D

    names = label_names or {}
    handles = [Line2D([], [], color=colours[v], lw=2, label=names.get(v, str(v))) for v in sorted(drawn)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.88, bottom=0.08 if handles else 0.02, wspace=0.08)
    path = _save(fig, folder / "worst_cases.png", dpi=100)
    plt.close(fig)
    return path


def _regions_line(options: dict[str, Any]) -> str:
    """How the regions were made, for the report's header (``options`` as in ``summary.json``)."""
    return (
        f"base/middle/apex, {options['region_mode']}, axis {options['region_axis']}, base {options['base_at']}, "
        f"anchor {options['region_anchor']}"
    )
