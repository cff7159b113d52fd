"""``medseg submit``: prepare a challenge submission, or check one (``medseg submit check``).

Only the standard library is imported at module level (the submission code is imported in
:func:`run`), so ``medseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from medseg.cli.options import (
    DEFAULT_GEOMETRY_TOLERANCE_MM,
    add_geometry_tolerance_option,
    add_labels_option,
    add_pred_options,
)

FORMAT_HELP = "msd (alias nnunet), acdc, rle-csv, grand-challenge (alias gc)"

DESCRIPTION = """\
Prepare a challenge submission from predicted label maps, check it and optionally zip it:

  medseg submit --format FORMAT --pred DIR --images DIR --out OUT [--label-map MAP] [--zip]

or check an existing submission folder or zip (a pass/fail line per case, one line per
problem, exit status 1 when anything fails):

  medseg submit check --format FORMAT OUT_OR_ZIP --images DIR

Formats:
  msd              <case>.nii.gz per case (image case id without the _0000 channel suffix), uint8
  acdc             patientNNN_ED.nii.gz / patientNNN_ES.nii.gz, labels 1 RV, 2 MYO, 3 LV
  rle-csv          submission.csv: ImageId,EncodedPixels (or ImageId,ClassId,EncodedPixels with
                   --rle-per-class); ImageId = <case>_slice_<k:03d>, slices along array axis k,
                   runs "start length" 1-based in column-major order (axis i varies fastest)
  grand-challenge  predictions/<case>.mha plus metrics.json (case/aggregates) built from an
                   evaluation run's metrics.csv (--metrics)

Every output has the voxel grid of its image: shape equal and affine within --geometry-tolerance
(default 0.001 mm on the origin and on each axis vector times the extent). A prediction saved in another
axis order or orientation is permuted/flipped exactly onto the image grid; any other difference
is an error. Nothing is written unless every case can be written; the zip (with manifest.json:
SHA-256 per file, medseg version, command) is written only when the check passes."""

EPILOG = """\
examples:
  medseg submit --format msd --pred preds/ --images imagesTs/ --out sub/ --zip
  medseg submit --format acdc --pred preds/ --images testing/ --out acdc_sub/ --label-map 1:3,3:1
  medseg submit --format rle-csv --rle-per-class --labels 0-3 --pred preds/ --images imgs/ --out kaggle/
  medseg submit --format gc --pred preds/ --images imgs/ --metrics eval_out/metrics.csv --out gc/
  medseg submit check --format acdc acdc_sub.zip --images testing/"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``medseg submit`` and its ``check`` action."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.usage = (
        "%(prog)s --format FORMAT --pred DIR --images DIR --out OUT [--label-map MAP] [--zip [ZIP]] [options]\n"
        "       %(prog)s check --format FORMAT OUT_OR_ZIP --images DIR [--labels SPEC] [--geometry-tolerance MM]"
    )
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("--format", metavar="FORMAT", help=f"submission format: {FORMAT_HELP}")
    add_pred_options(parser, "folder of predicted label maps named by case id")
    parser.add_argument(
        "--images", metavar="DIR", help="the images the predictions answer: expected cases and voxel grids"
    )
    parser.add_argument("--out", metavar="OUT", help="submission folder to write (missing or empty unless --overwrite)")
    parser.add_argument(
        "--label-map",
        metavar="MAP",
        help="training label -> challenge label: '1:2,2:1' or a YAML/JSON file; unlisted labels stay",
    )
    add_labels_option(parser, "allowed challenge labels after --label-map (default: any uint8 value; acdc: 0-3)")
    parser.add_argument(
        "--rle-per-class",
        action="store_true",
        help="rle-csv: one row per slice and class (ImageId,ClassId,EncodedPixels)",
    )
    parser.add_argument(
        "--metrics", metavar="CSV", help="grand-challenge: metrics.csv of an evaluation run (default PRED/metrics.csv)"
    )
    add_geometry_tolerance_option(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument(
        "--zip",
        nargs="?",
        const=True,
        default=None,
        metavar="ZIP",
        help="also write a zip with manifest.json (default OUT.zip)",
    )
    actions = parser.add_subparsers(dest="submit_action", metavar="ACTION", title="actions")
    check = actions.add_parser(
        "check",
        help="check a submission folder or zip: FORMAT OUT_OR_ZIP --images DIR",
        description="Check a submission folder or zip against its images: every case present, no extra "
        "files, names, uint8 storage, shape and affine equal to the image's (within --geometry-tolerance), "
        "label values "
        "allowed, not all empty, manifest hashes. Prints PASS/FAIL per case and one line per problem; "
        "exits 1 when anything fails.",
    )
    check.add_argument("target", metavar="OUT_OR_ZIP", help="submission folder or .zip")
    check.add_argument("--format", dest="check_format", metavar="FORMAT", required=True, help=FORMAT_HELP)
    check.add_argument(
        "--images", dest="check_images", metavar="DIR", required=True, help="the images the submission answers"
    )
    add_labels_option(check, "allowed labels (default: any uint8 value; acdc: 0-3)", nested=True)
    add_geometry_tolerance_option(check, nested=True)
    parser.set_defaults(_submit_parser=parser)
    check.add_argument("--json", dest="check_json", action="store_true", help="print the report as JSON")
    check.set_defaults(_submit_parser=check)


def run(args: argparse.Namespace) -> int:
    """Prepare (default) or check (``submit check``) a submission; 0 when it passes, 1 otherwise."""
    from medseg.submission import SubmissionError

    try:
        if getattr(args, "submit_action", None) == "check":
            return _run_check(args)
        return _run_prepare(args)
    except SubmissionError as exc:
        print(f"medseg submit: error: {exc.summary}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1


def _run_check(args: argparse.Namespace) -> int:
    from medseg.submission import check_submission

    report = check_submission(
        args.check_format,
        args.target,
        args.check_images,
        allowed_labels=args.labels,
        atol_mm=args.geometry_tolerance_mm,
        progress=not args.quiet and not args.check_json,
    )
    if args.check_json:
        import json

        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(report.lines()))
    return 0 if report.ok else 1


def _run_prepare(args: argparse.Namespace) -> int:
    required = {"--format": args.format, "--pred": args.pred, "--images": args.images, "--out": args.out}
    missing = [flag for flag, value in required.items() if not value]
    if missing:
        args._submit_parser.error(
            f"the following arguments are required: {', '.join(missing)} (to check a submission: medseg submit "
            "check ...)"
        )
    from pathlib import Path

    from medseg.io import ensure_writable_file, ensure_writable_folder
    from medseg.submission import prepare_submission

    out = Path(args.out).expanduser()
    ensure_writable_folder(out.parent)  # the submission is built beside it, then moved in
    zip_path, default_zip = None, out.with_name(out.name + ".zip")
    if args.zip is not None:
        zip_path = default_zip if args.zip is True else Path(args.zip).expanduser()
        ensure_writable_file(zip_path)  # before writing and checking every case, not after
    result = prepare_submission(
        args.format,
        args.pred,
        args.images,
        out,
        label_map=args.label_map,
        allowed_labels=args.labels,
        rle_per_class=args.rle_per_class,
        metrics_csv=args.metrics,
        pred_pattern=args.pred_pattern,
        atol_mm=args.geometry_tolerance_mm,
        overwrite=args.overwrite,
        zip_path=zip_path,
        command=command_line(args),
        progress=not args.quiet,
    )
    for case in result.cases if not args.quiet else ():  # --quiet: the summary and the check only
        notes = f"; {'; '.join(case.notes)}" if case.notes else ""
        print(f"wrote {case.case_id}: {case.prediction.name} -> {case.output} (labels {case.labels}){notes}")
    print(f"wrote {result.format} submission {result.out_dir} ({len(result.cases)} cases); checking it:")
    print("\n".join(result.check.lines()))
    if zip_path is not None:
        print(f"wrote {result.zip_path}" if result.zip_path else "zip not written: the submission failed its check")
    elif default_zip.exists():  # e.g. from an earlier --zip run: it does not hold this folder
        import logging

        logging.getLogger(__name__).warning(
            "%s is not from this run (no --zip): it does not hold the submission just written to %s; "
            "pass --zip --overwrite to rewrite it, or remove it",
            default_zip,
            out,
        )
    return 0 if result.ok else 1


def command_line(args: argparse.Namespace) -> str:
    """The ``medseg submit`` command line equivalent to ``args`` (recorded in the zip's manifest)."""
    parts = ["medseg", "submit"]
    for flag, value in (
        ("--format", args.format),
        ("--pred", args.pred),
        ("--images", args.images),
        ("--out", args.out),
        ("--label-map", args.label_map),
        ("--labels", args.labels),
        ("--metrics", args.metrics),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if args.pred_pattern is not None:
        parts += ["--pred-pattern", args.pred_pattern]
    if args.geometry_tolerance_mm != DEFAULT_GEOMETRY_TOLERANCE_MM:
        parts += ["--geometry-tolerance", repr(args.geometry_tolerance_mm)]
    for flag, value in (("--rle-per-class", args.rle_per_class), ("--overwrite", args.overwrite)):
        if value:
            parts.append(flag)
    if args.zip is True:
        parts.append("--zip")
    elif args.zip is not None:
        parts += ["--zip", str(args.zip)]
    return shlex.join(parts)
