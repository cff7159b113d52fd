"""``medseg predict``: apply a trained run to scans; outputs on each scan's exact grid."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        nargs="+",
        metavar="RUN",
        help="run folder (uses checkpoint_best.pt, else checkpoint_latest.pt) or checkpoint file; several: an ensemble "
        "(e.g. the cross-validation folds) averaging their softmax probabilities (same plan and labels; --tta "
        "applies to each)",
    )
    parser.add_argument(
        "--input", required=True, help="a scan (file or DICOM folder), a folder of scans, or a manifest"
    )
    parser.add_argument("--out", required=True, help="output folder: <case_id>.nii.gz (uint8) per case")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="mirroring test-time augmentation along the axes the training flipped (2^axes passes; says which)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.add_argument("--overlap", type=float, help="sliding-window overlap in [0, 1) (default: the run's)")
    parser.add_argument("--batch-size", type=int, help="windows per forward pass")
    parser.add_argument(
        "--num-shards", type=int, default=1, help="split the cohort into N shards (no coordination needed)"
    )
    parser.add_argument("--shard-id", type=int, default=0, help="which shard this process predicts (0-based)")
    parser.add_argument(
        "--save-probabilities", action="store_true", help="also write <case>_probabilities.npz (float16)"
    )
    parser.add_argument("--overwrite", action="store_true", help="predict cases whose output already exists")


def run(args: argparse.Namespace) -> int:
    from medseg.inference.inputs import discover_inputs, shard
    from medseg.inference.predict import Predictor, predict_cases
    from medseg.io import ensure_writable_folder

    cases = shard(discover_inputs(args.input), args.num_shards, args.shard_id)
    predictor = Predictor(
        args.model, device=args.device, overlap=args.overlap, tta=args.tta, batch_size=args.batch_size
    )
    ensure_writable_folder(args.out)  # after the model loads: a bad --model leaves no empty output folder behind
    note = predictor.mirroring_note()
    if note:
        print(note, flush=True)
    report = predict_cases(
        predictor,
        cases,
        args.out,
        overwrite=args.overwrite,
        save_probabilities=args.save_probabilities,
        progress=not args.quiet,
    )
    print(
        f"{len(report['done'])} predicted, {len(report['skipped'])} skipped (already there), "
        f"{len(report['failed'])} failed -> {args.out}"
    )
    for case_id, reason in report["failed"].items():
        print(f"  FAILED {case_id}: {reason}")
    if not args.quiet and report["seconds"]:
        print(json.dumps({"seconds_per_case": report["seconds"]}))
    return 1 if report["failed"] else 0
