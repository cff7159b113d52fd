"""``medseg demo``: the whole pipeline on built-in synthetic data, in one output folder.

Steps: generate a phantom dataset -> plan and preprocess -> train a small U-Net (3D for the
chest CT phantom, slice-wise 2D for the cardiac MRI phantom) -> predict the held-out
phantoms with sliding windows (restored to each scan's grid) -> evaluate per label and per
base/middle/apex region -> print the summary table. The folder then holds ``data/`` (the
phantoms), ``manifest.csv``, ``config.yaml``, ``cache/``, ``run/`` (checkpoints,
``training_log.csv``, TensorBoard events), ``predictions/``, ``evaluation/`` (metrics.csv,
summary.json, report.md with figures) and ``demo_summary.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medseg.errors import InvalidArgumentError, MedsegError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """What a demo run trains on and for how long."""

    kind: str
    n_train: int
    n_val: int
    n_test: int
    configuration: str
    epochs: int
    iterations_per_epoch: int
    patch_size: list[int]
    batch_size: int
    base_channels: int
    max_channels: int
    lr: float
    val_every: int


PRESETS: dict[tuple[str, str], DemoSettings] = {
    ("ct-thorax", "default"): DemoSettings("ct-thorax", 10, 2, 4, "3d", 50, 12, [64, 64, 32], 2, 8, 64, 0.01, 10),
    ("ct-thorax", "long"): DemoSettings("ct-thorax", 24, 4, 8, "3d", 100, 25, [96, 64, 40], 2, 16, 128, 0.01, 10),
    ("ct-thorax", "smoke"): DemoSettings("ct-thorax", 3, 1, 2, "3d", 2, 2, [32, 32, 16], 2, 4, 16, 0.01, 1),
    ("cardiac-mri", "default"): DemoSettings("cardiac-mri", 12, 2, 4, "2d", 30, 12, [128, 128], 8, 8, 64, 0.01, 10),
    ("cardiac-mri", "long"): DemoSettings("cardiac-mri", 24, 4, 8, "2d", 100, 25, [128, 128], 16, 16, 128, 0.01, 10),
    ("cardiac-mri", "smoke"): DemoSettings("cardiac-mri", 3, 1, 2, "2d", 2, 2, [64, 64], 4, 4, 16, 0.01, 1),
}


def demo_config(settings: DemoSettings) -> dict[str, Any]:
    """The training config the demo writes (a normal ``medseg train`` config)."""
    return {
        "data": {
            "manifest": "manifest.csv",
            "cache": "cache",
            "configuration": settings.configuration,
            "patch_size": settings.patch_size,
            "batch_size": settings.batch_size,
            "workers": 1,
            # the chest phantom's labels name sides: never mirror the left-right axis
            "augmentation": "augmentation.yaml" if settings.kind == "ct-thorax" else "default",
        },
        "model": {"base_channels": settings.base_channels, "max_channels": settings.max_channels},
        "optim": {"lr": settings.lr},
        "train": {
            "epochs": settings.epochs,
            "iterations_per_epoch": settings.iterations_per_epoch,
            "val_every": settings.val_every,
        },
        "postprocess": {"largest_component": [1, 2, 3]},
    }


def run_demo(
    out_dir: str | Path = "runs/demo",
    kind: str = "ct-thorax",
    preset: str = "default",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` (replaced if it holds an earlier demo); return its summary (with the
    Dice table as markdown under "table")."""
    from medseg.evaluation import evaluate_folder
    from medseg.inference.inputs import InputCase
    from medseg.inference.predict import Predictor, predict_cases
    from medseg.phantoms import case_ids, write_phantom_dataset
    from medseg.training.run import train

    if (kind, preset) not in PRESETS:
        raise InvalidArgumentError(f"no demo preset {preset!r} for {kind!r}; presets: default, long, smoke")
    settings = PRESETS[(kind, preset)]
    out = Path(out_dir).expanduser().resolve()
    if out.exists():  # replace an earlier (possibly interrupted) demo, never anything else
        if not (out / ".medseg-demo").exists() and any(out.iterdir()):
            raise MedsegError(f"{out}: exists and is not an earlier demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    marker = "written by medseg demo; the folder is replaced by the next demo run\n"
    (out / ".medseg-demo").write_text(marker, encoding="utf-8")
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def say(message: str) -> None:
        log.info("[%6.1f s] %s", time.perf_counter() - started, message)

    n_cases = settings.n_train + settings.n_val + settings.n_test
    say(f"1/4 generating {n_cases} {kind} phantoms (seed {seed})")
    write_phantom_dataset(kind, n_cases, seed, out / "data", progress=progress)
    ids = case_ids(kind, n_cases)
    splits = ["train"] * settings.n_train + ["val"] * settings.n_val + ["test"] * settings.n_test
    _write_manifest(out / "manifest.csv", kind, ids, splits)
    (out / "config.yaml").write_text(yaml.safe_dump(demo_config(settings), sort_keys=False), encoding="utf-8")
    (out / "augmentation.yaml").write_text(
        yaml.safe_dump({"spatial": {"flip": {"p": 0.5, "axes": [1, 2]}}}), encoding="utf-8"
    )
    timings["phantoms_s"] = time.perf_counter() - started

    say(
        f"2/4 planning, preprocessing and training a {settings.configuration.upper()} U-Net "
        f"({settings.epochs} epochs x {settings.iterations_per_epoch} steps, CPU/GPU as available)"
    )
    mark = time.perf_counter()
    run_dir = train(out / "config.yaml", out / "run", progress=progress)
    timings["train_s"] = time.perf_counter() - mark

    say("3/4 predicting the held-out phantoms (sliding windows, restored to each scan's grid)")
    mark = time.perf_counter()
    test_ids = [case for case, split in zip(ids, splits) if split == "test"]
    cases = [InputCase(case, out / "data" / "imagesTr" / f"{case}_0000.nii.gz") for case in test_ids]
    references = out / "references"
    references.mkdir()
    for case in test_ids:
        shutil.copy(out / "data" / "labelsTr" / f"{case}.nii.gz", references / f"{case}.nii.gz")
    predict_cases(Predictor(run_dir), cases, out / "predictions", progress=progress)
    timings["predict_s"] = time.perf_counter() - mark

    say("4/4 evaluating per label and per base/middle/apex region")
    mark = time.perf_counter()
    frame = evaluate_folder(
        out / "predictions",
        references,
        out / "evaluation",
        labels=str(out / "data" / "dataset.json"),
        regions=True,
        progress=False,
    )
    timings["evaluate_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    table, mean_dice = _summary_table(frame)
    summary = {
        "kind": kind,
        "preset": preset,
        "seed": seed,
        "settings": settings.__dict__,
        "held_out_cases": test_ids,
        "mean_dice_held_out": mean_dice,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "report": str(out / "evaluation" / "report.md"),
        "tensorboard": str(run_dir / "tensorboard"),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return {**summary, "table": table}


def _write_manifest(path: Path, kind: str, ids: list[str], splits: list[str]) -> None:
    from medseg.data.manifest import CaseEntry, write_csv_manifest
    from medseg.phantoms import labels_for

    data = path.parent / "data"
    cases = [
        CaseEntry(case, (data / "imagesTr" / f"{case}_0000.nii.gz",), data / "labelsTr" / f"{case}.nii.gz", split)
        for case, split in zip(ids, splits)
    ]
    write_csv_manifest(
        path, cases, labels_for(kind), name=f"demo_{kind}", modality="CT" if kind == "ct-thorax" else "MRI"
    )


def _summary_table(frame) -> tuple[str, float]:
    """Markdown table: mean Dice / HD95 / ASD per label and region over the held-out cases."""
    wanted = frame[frame["metric"].isin(["dice", "hd95", "asd"])]
    table = wanted.pivot_table(index=["label", "region"], columns="metric", values="value", aggfunc="mean")
    order = {"all": 0, "base": 1, "middle": 2, "apex": 3}
    rows = sorted(table.index, key=lambda key: (key[0], order.get(key[1], 9)))
    lines = ["| label | region | Dice | HD95 (mm) | ASD (mm) |", "|---|---|---|---|---|"]
    for label, region in rows:
        values = table.loc[(label, region)]
        lines.append(f"| {label} | {region} | {values['dice']:.3f} | {values['hd95']:.2f} | {values['asd']:.2f} |")
    overall = frame[(frame["metric"] == "dice") & (frame["region"] == "all")]["value"].mean()
    return "\n".join(lines), float(overall)
