"""``medseg evaluate``: score a folder of predictions; ``medseg evaluate compare``: compare two runs.

Examples::

    medseg evaluate --pred preds/ --ref labelsTr/ --out eval/ --labels dataset.json --workers 2
    medseg evaluate --pred preds/ --manifest dataset.json --out eval/ --regions --region-mode slicewise
    medseg evaluate compare evalA/metrics.csv evalB/metrics.csv --out a_vs_b/

Only the standard library is imported here; the evaluation code is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import sys

from medseg.cli.options import (
    add_geometry_tolerance_option,
    add_labels_option,
    add_manifest_option,
    add_pred_options,
    add_workers_option,
)

EPILOG = """\
cases are matched by the naming rule every command shares: file name without the volume suffix,
one role suffix (_gt, _seg, _segmentation, _label, _labels, _mask, _pred, _prediction) and a
trailing _0000; folders are searched recursively. Outputs: OUT/metrics.csv
(case,label,region,metric,value,flag, written as cases finish), OUT/summary.json, OUT/regions.csv
(with --regions), OUT/report.md and OUT/figures/. The exit status is 1 when any case failed (all
others are still evaluated).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    source = parser.add_argument_group("inputs")
    add_pred_options(source, "folder of predicted label maps")
    refs = source.add_mutually_exclusive_group()
    refs.add_argument("--ref", metavar="DIR", help="folder of reference label maps (searched recursively)")
    add_manifest_option(refs, purpose="giving the references")
    source.add_argument(
        "--ref-pattern",
        metavar="GLOB",
        help="only reference files whose name matches this shell pattern, e.g. '*_gt.nii.gz' (default: all)",
    )
    source.add_argument("--out", metavar="DIR", help="output folder (metrics.csv, summary.json, report.md)")
    what = parser.add_argument_group("what to score")
    add_labels_option(
        what,
        "labels to score (default: the dataset.json beside the references or the manifest's labels, else every "
        "label found)",
    )
    what.add_argument("--metrics", metavar="LIST", help="comma list of metrics (default all: "
                                                        "dice,jaccard,voe,rvd,sensitivity,"
                      "specificity,precision,volume_ref_ml,volume_pred_ml,hd,hd95,asd,nsd)")  # fmt: skip
    what.add_argument(
        "--nsd-tolerance",
        type=float,
        default=1.0,
        metavar="MM",
        help="normalised surface Dice tolerance in mm (default 1)",
    )
    what.add_argument(
        "--empty-policy",
        choices=("worst", "nan"),
        default="worst",
        help="distances when one mask is empty: worst-case value (default) or NaN; flagged either way",
    )
    what.add_argument(
        "--worst-distance", type=float, metavar="MM", help="worst-case distance (default: the volume's diagonal)"
    )
    from medseg.cli.quantify import add_index_options

    add_index_options(parser.add_argument_group("clinical indices (OUT/indices.csv, OUT/indices_agreement.csv)"),
                      required=False)  # fmt: skip
    regions = parser.add_argument_group("base / middle / apex regions")
    regions.add_argument(
        "--regions", action="store_true", help="also score base, middle and apex (region 'all' is always scored)"
    )
    regions.add_argument(
        "--region-axis",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help="axis split into regions (auto: largest spacing, else the superior-inferior axis)",
    )
    regions.add_argument(
        "--base-at",
        default="auto",
        choices=("auto", "first", "last"),
        help="which end is the base (auto: the end with the larger reference cross-section)",
    )
    regions.add_argument("--region-mode", default="volumetric", choices=("volumetric", "slicewise"),
                         help="3D metrics per region (default) or 2D metrics averaged over slices")  # fmt: skip
    regions.add_argument("--region-anchor", default="label", metavar="ANCHOR",
                         help="whose reference extent defines the regions: label (each its own, default), "
                              "foreground, or a label value/name")  # fmt: skip
    run = parser.add_argument_group("running")
    add_workers_option(run, "worker processes")
    add_geometry_tolerance_option(run)
    run.add_argument(
        "--resample-pred-to-ref", action="store_true", help="resample predictions on another grid (nearest neighbour)"
    )
    run.add_argument("--no-report", action="store_true", help="skip report.md and its figures")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier evaluation in --out (its metrics.csv, summary.json, regions.csv, report.md, "
        "figures/); without it such a folder is refused",
    )

    actions = parser.add_subparsers(dest="evaluate_action", metavar="{compare}", required=False)
    compare = actions.add_parser(
        "compare",
        help="compare two runs: paired differences, Wilcoxon and t-test, Bland-Altman plot",
        description="Compare two metrics.csv files case by case (differences are B - A).",
    )
    compare.add_argument("metrics_a", metavar="A_METRICS_CSV")
    compare.add_argument("metrics_b", metavar="B_METRICS_CSV")
    compare.add_argument("--out", dest="compare_out", required=True, metavar="DIR", help="output folder")


def run(args: argparse.Namespace) -> int:
    from medseg.errors import InvalidArgumentError

    if getattr(args, "evaluate_action", None) == "compare":
        from medseg.evaluation.comparison import write_comparison

        written = write_comparison(args.metrics_a, args.metrics_b, args.compare_out)
        print(f"wrote {', '.join(str(p) for p in written.values())}")
        return 0
    if not args.pred or not (args.ref or args.manifest) or not args.out:
        raise InvalidArgumentError(
            "need --pred DIR, --ref DIR (or --manifest FILE) and --out DIR (or: medseg evaluate compare A B --out DIR)"
        )
    from medseg.cli.quantify import index_spec
    from medseg.evaluation.batch import run_folder

    indices = index_spec(args)
    manifest_inputs = {}
    if args.manifest:  # the data layer reads manifests; evaluation gets plain paths and names
        from medseg.data.manifest import load_manifest

        manifest = load_manifest(args.manifest)
        with_labels = [e for e in manifest.cases if e.label is not None]
        manifest_inputs = {
            "references": {e.case_id: e.label for e in with_labels},
            "images": {e.case_id: e.image for e in with_labels},
            "known_labels": manifest.label_names,
            "source": str(args.manifest),
            "unannotated": manifest.unannotated,
        }
    if args.images:
        from medseg.evaluation.matching import find_images

        manifest_inputs["images"] = {**manifest_inputs.get("images", {}), **find_images(args.images)}
    run_result = run_folder(
        args.pred,
        args.ref,
        args.out,
        **manifest_inputs,
        labels=args.labels,
        workers=args.workers,
        progress=not args.quiet,
        ref_pattern=args.ref_pattern,
        pred_pattern=args.pred_pattern,
        atol_mm=args.geometry_tolerance_mm,
        resample_pred_to_ref=args.resample_pred_to_ref,
        report=not args.no_report,
        overwrite=args.overwrite,
        indices=indices,
        metrics=args.metrics,
        regions=args.regions,
        region_axis=args.region_axis,
        base_at=args.base_at,
        region_mode=args.region_mode,
        region_anchor=args.region_anchor,
        nsd_tolerance_mm=args.nsd_tolerance,
        empty_policy=args.empty_policy,
        worst_distance_mm=args.worst_distance,
    )
    n_cases, failures = len(run_result.outcomes), run_result.failures
    _print_means(run_result.rows)
    if run_result.indices is not None:
        _print_agreement(run_result.indices.agreement)
    print(f"evaluated {n_cases - len(failures)} of {n_cases} cases; results in {args.out} (metrics.csv, summary.json"
          f"{', report.md' if not args.no_report else ''})")  # fmt: skip
    if failures:  # each failure was logged as it happened
        print(
            f"medseg evaluate: {len(failures)} case(s) failed (listed in {args.out}/summary.json and report.md)",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_means(rows) -> None:
    """Mean Dice and HD95 per label (region all) over the cases, as in summary.json, with how many
    values are flagged (empty masks scored by convention: see the README's empty-mask table); with
    regions, the mean Dice of base, middle and apex too."""
    from medseg.evaluation.summary import summary_records

    table: dict[str, dict[tuple[str, str], dict]] = {}
    for record in summary_records(rows)[0]:
        if record["metric"] in ("dice", "hd95"):
            table.setdefault(record["label"], {})[(record["region"], record["metric"])] = record
    if not table:
        return
    regions = [r for r in ("base", "middle", "apex") if any((r, "dice") in t for t in table.values())]
    nan = {"mean": float("nan")}
    print(
        f"{'label':<24} {'mean Dice':>9} {'mean HD95 mm':>12}"
        + "".join(f" {r + ' Dice':>11}" for r in regions)
        + "  cases (flagged)"
    )
    for label, records in table.items():
        dice, hd95 = records.get(("all", "dice"), nan), records.get(("all", "hd95"), nan)
        print(
            f"{label:<24} {dice['mean']:>9.3f} {hd95['mean']:>12.2f}"
            + "".join(f" {records.get((r, 'dice'), nan)['mean']:>11.3f}" for r in regions)
            + f"  {dice.get('n', 0)} ({dice.get('n_flagged', 0)})"
        )


def _print_agreement(table) -> None:
    """Per clinical index: n, bias and 95 % limits of agreement (prediction - reference) and Pearson r."""
    print(f"{'index':<24} {'unit':<4} {'n':>3} {'bias':>9} {'95% limits of agreement':>25} {'r':>6}")
    for row in table:
        limits = f"{row['loa_lower']:.3g} .. {row['loa_upper']:.3g}"
        print(
            f"{row['index']:<24} {row['unit']:<4} {row['n']:>3} {row['bias']:>9.3g} {limits:>25} "
            f"{row['pearson_r']:>6.3f}"
        )
