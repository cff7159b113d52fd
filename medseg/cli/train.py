"""``medseg train``: train a U-Net from a YAML config (also under ``torchrun -m medseg train``)."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config YAML (see configs/)")
    parser.add_argument("--out", help="run folder (default: runs/<config name>/fold_<K> or fold_all)")
    parser.add_argument(
        "--fold",
        default="0",
        help="cross-validation fold to train (default 0), or 'all': every case, no validation (the model to ship)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint_latest.pt")
    parser.add_argument("--epochs", type=int, help="override train.epochs (with --resume: extend a finished run)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    parser.epilog = (
        "Multi-GPU: torchrun --nproc_per_node N -m medseg train --config C.yaml --out RUN "
        "(each process gets its own batches; rank 0 writes the run folder)."
    )


def run(args: argparse.Namespace) -> int:
    from medseg.training.run import train

    run_dir = train(
        args.config,
        args.out,
        fold=args.fold,
        resume=args.resume,
        epochs=args.epochs,
        device=args.device,
        progress=not args.quiet,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        print(f"run folder: {run_dir}")
    return 0
