"""``medseg phantom``: write a synthetic phantom dataset (MSD / nnU-Net v2 layout).

Example::

    medseg phantom --kind ct-thorax --n 20 --seed 0 --out data/phantom_thorax

Only the standard library is imported at module level; the generator is imported in :func:`run`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

#: Must equal ``medseg.phantoms.PHANTOM_KINDS`` (kept here so ``medseg --help`` stays fast; a test checks).
KINDS = ("ct-thorax", "cardiac-mri")


def _whole_number(minimum: int, expected: str) -> Callable[[str], int]:
    """An argparse ``type``: ``int(text)`` when it is at least ``minimum``, else the error
    "expected <expected>, got '<text>'"."""

    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_case_count = _whole_number(1, "a whole number of cases, at least 1")
_seed = _whole_number(0, "a non-negative integer seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, choices=KINDS, help="which phantom: %(choices)s")
    parser.add_argument("--n", type=_case_count, default=8, metavar="N", help="number of cases (default %(default)s)")
    parser.add_argument(
        "--seed", type=_seed, default=0, metavar="S", help="random seed; same seed, same bytes (default %(default)s)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder (imagesTr/, labelsTr/, dataset.json)"
    )


def run(args: argparse.Namespace) -> int:
    from medseg.io import ensure_writable_folder
    from medseg.phantoms import labels_for, write_phantom_dataset

    ensure_writable_folder(args.out)
    dataset_json = write_phantom_dataset(args.kind, args.n, args.seed, args.out, progress=not args.quiet)
    labels = ", ".join(f"{value} {name}" for name, value in labels_for(args.kind).items() if value)
    print(f"wrote {args.n} {args.kind} case(s) (seed {args.seed}; labels {labels}) -> {dataset_json}")
    return 0
