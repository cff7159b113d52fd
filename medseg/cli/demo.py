"""``medseg demo``: the end-to-end pipeline on built-in synthetic data."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="runs/demo", help="output folder (default runs/demo; an earlier demo there is replaced)"
    )
    parser.add_argument(
        "--kind",
        choices=("ct-thorax", "cardiac-mri"),
        default="ct-thorax",
        help="ct-thorax: 3D U-Net on chest CT phantoms (default); cardiac-mri: slice-wise 2D U-Net",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--long", action="store_true", help="more data and epochs (better Dice, several times longer)")
    length.add_argument("--smoke", action="store_true", help="seconds-long run that only checks the pipeline works")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from medseg.demo import run_demo

    preset = "long" if args.long else "smoke" if args.smoke else "default"
    summary = run_demo(args.out, kind=args.kind, preset=preset, seed=args.seed, progress=not args.quiet)
    print(f"\n{summary['table']}\n")
    print(
        f"held-out mean Dice {summary['mean_dice_held_out']:.3f} over {len(summary['held_out_cases'])} cases; "
        f"total {summary['timings_s']['total_s']:.0f} s"
    )
    print(f"report: {summary['report']}")
    print(f"TensorBoard: tensorboard --logdir {summary['tensorboard']}")
    return 0
