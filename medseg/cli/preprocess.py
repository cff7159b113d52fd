"""``medseg preprocess``: preprocess every case of a dataset into a memory-mappable cache."""

from __future__ import annotations

import argparse

from medseg.cli.options import add_manifest_option, add_workers_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest_option(parser, required=True)
    parser.add_argument("--plan", required=True, help="plan JSON written by `medseg plan`")
    parser.add_argument("--out", required=True, help="cache folder (created if needed)")
    add_workers_option(parser, "worker processes")
    parser.add_argument("--overwrite", action="store_true", help="redo cases that are already cached and unchanged")
    parser.add_argument("--case", action="append", metavar="ID", help="only this case (repeatable)")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from medseg.config.plan import load_plan
    from medseg.data.cache import preprocess_dataset
    from medseg.data.manifest import load_manifest
    from medseg.io import ensure_writable_folder

    manifest = load_manifest(args.manifest)
    plan = load_plan(args.plan)
    ensure_writable_folder(args.out)
    report = preprocess_dataset(
        manifest,
        plan,
        args.out,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=not args.quiet,
        case_ids=args.case,
    )
    out = Path(args.out)
    print(
        f"preprocessed {len(report.done)} case(s), skipped {len(report.skipped)} already cached, "
        f"{len(report.failed)} failed, in {report.seconds:.1f} s -> {out}"
    )
    if report.failed:
        for case_id, reason in report.failed.items():
            print(f"medseg preprocess: case {case_id} failed: {reason}", file=sys.stderr)
        print(
            f"medseg preprocess: failed cases are listed in {out / 'failed.json'}; rerun to retry them", file=sys.stderr
        )
        return 1
    return 0
