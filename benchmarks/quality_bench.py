"""Model quality on real data, cross-validated, side by side with nnU-Net v2 (and the training-free lung mask).

Every patient of a dataset is held out once: the folds are medseg's (``medseg.data.splits.kfold_splits`` with
the training config's ``data.folds`` and ``data.split_seed``, patients kept together) and nnU-Net is given the
very same folds (its ``splits_final.json``). Each *arm* (a tool with its settings) trains one model per fold on
the other folds' patients, predicts the held-out patients on their original grids, and all arms are scored the
same way: ``medseg evaluate --regions`` (Dice and HD95 per label and per base / middle / apex region) against
the dataset's own label maps.

Arms:

* ``medseg``: ``medseg train --config CONFIG --fold K`` then ``medseg predict`` on the fold's held-out
  cases with the *last* checkpoint (``checkpoint_latest.pt``: no checkpoint chosen on the held-out cases, as
  nnU-Net's ``checkpoint_final``). ``--epochs``/``--iterations-per-epoch`` set the budget (a copy of the
  config with only ``train`` changed is written into the arm's folder); ``--reuse DIR`` takes finished run
  folders ``DIR/fold_K`` instead of training (e.g. a cross-validation run earlier).
* ``nnunet``: nnU-Net v2 as it plans itself (``nnUNetv2_plan_and_preprocess``), trained on CPU by a small
  ``nnUNetTrainer`` subclass that only sets the number of epochs and iterations (everything else is nnU-Net's:
  augmentation, deep supervision, poly SGD, oversampling), then ``perform_actual_validation`` (sliding window
  exported on the original grid).

Test-time mirroring is off for every arm unless ``--tta`` (medseg ``--tta``; nnU-Net's own mirroring): it
multiplies the prediction time by 4 (2D) or 4-8 (3D), which the CPU budget does not allow for every arm.
* ``nnunet_matched``: the same, with nnU-Net's plan edited to medseg's network (stages, strides, kernels,
  feature maps), patch size and batch size from the medseg config: equal compute per iteration, so equal
  iterations is an equal budget and the difference is the recipe.
* ``lung_ct`` (chest CT only): ``medseg segment --method lung-ct`` on every scan (no training), its labels
  mapped to the dataset's numbering (lung-ct writes 1 left, 2 right).

nnU-Net's raw dataset (``nnUNet_raw/DatasetNNN_Name``: ``imagesTr/<case>_0000.nii.gz``, ``labelsTr``,
``dataset.json``) is made here from medseg's manifest, with links to the shared files (nothing is copied).
Work folders live under ``--work`` (default ``runs/quality_bench``); finished steps are skipped when the
script runs again, so a long run can be continued and folds added. The figures go to
``benchmarks/results/quality.json`` (one entry per dataset and arm, merged with earlier runs) and a table into
``benchmarks/README.md``. Wall and CPU seconds of every step are recorded with the machine's load average,
because the 2-core machines are shared.

Run (see benchmarks/README.md for the budgets used):
  .venv/bin/python benchmarks/quality_bench.py --dataset acdc --arm medseg --folds 0 1 2 3 4 \
      --epochs 15 --iterations-per-epoch 20
  .venv/bin/python benchmarks/quality_bench.py --dataset acdc --arm nnunet_matched --folds 0 1 2 3 4 \
      --epochs 15 --iterations-per-epoch 20
  .venv/bin/python benchmarks/quality_bench.py --report        # tables from the results only
Needs the bench extra for the nnU-Net arms: pip install -e ".[bench]" "torch==2.13.0" "torchvision==0.28.0".
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCH_DIR, SHARED_DATA, write_results  # noqa: E402

log = logging.getLogger("quality_bench")
ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
RESULTS = BENCH_DIR / "results" / "quality.json"

DATASETS: dict[str, dict[str, Any]] = {
    "acdc": {
        "manifest": ROOT / "data_manifests" / "acdc_subset.csv",
        "config": ROOT / "configs" / "acdc_2d_cpu.yaml",
        "nnunet_id": 913,
        "nnunet_name": "ACDCsubset",
        "nnunet_configuration": "2d",
        "lateral_axis": None,  # nnU-Net may mirror every axis
        "arms": ("medseg", "nnunet", "nnunet_matched"),
    },
    "nsclc": {
        "manifest": ROOT / "data_manifests" / "nsclc_lung_ct.csv",
        "config": ROOT / "configs" / "nsclc_lung_3d_cpu.yaml",
        "nnunet_id": 914,
        "nnunet_name": "NSCLClung",
        "nnunet_configuration": "3d_fullres",
        "lateral_axis": 2,  # nnU-Net's array axes are (z, y, x): x is left-right, never mirrored
        "arms": ("medseg", "nnunet", "nnunet_matched", "lung_ct"),
    },
}
REGIONS = ("all", "base", "middle", "apex")


# -- running and timing steps -------------------------------------------------------------------------------
def run_step(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` (output appended to ``log_path``); its wall and CPU seconds and the load average."""
    log.info("$ %s", " ".join(map(str, command)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_path, "a") as stream:
        stream.write(f"\n$ {' '.join(map(str, command))}\n")
        stream.flush()
        result = subprocess.run(
            [str(c) for c in command],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{log_path}: step failed (exit {result.returncode}): {' '.join(map(str, command))}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "command": " ".join(map(str, command)),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def record_timing(arm_dir: Path, key: str, timing: dict[str, Any]) -> None:
    path = arm_dir / "timing.json"
    timings = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    timings[key] = timing
    path.write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")


def link(target: Path, link_path: Path) -> None:
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    link_path.symlink_to(Path(target).resolve())


# -- dataset, folds, references -----------------------------------------------------------------------------
def dataset_facts(name: str, config_path: Path) -> dict[str, Any]:
    """Cases, labels and folds of a dataset under the training config's split settings."""
    from medseg.data.manifest import load_manifest
    from medseg.data.splits import kfold_splits
    from medseg.training.run import load_training_config

    spec = DATASETS[name]
    config = load_training_config(config_path).spec
    manifest = load_manifest(spec["manifest"])
    splits = kfold_splits(manifest, config.data.folds, config.data.split_seed, config.data.group_pattern)
    fold_of_case = {case: k for k, split in enumerate(splits) for case in split["val"]}
    return {
        "manifest": manifest,
        "config": config,
        "splits": splits,
        "fold_of_case": fold_of_case,
        "labels": {label: int(value) for label, value in manifest.labels.items() if int(value) != 0},
    }


def write_references(work: Path, facts: dict[str, Any]) -> Path:
    """``work/refs/<case>.nii.gz``: links to every case's label map."""
    refs = work / "refs"
    for case in facts["manifest"].cases:
        link(case.label, refs / f"{case.case_id}.nii.gz")
    return refs


# -- medseg arm ---------------------------------------------------------------------------------------------
def budget_config(
    config_path: Path, arm_dir: Path, epochs: int | None, iterations: int | None, changes: list[str]
) -> Path:
    """The training config as given, or a copy with ``train.epochs`` / ``train.iterations_per_epoch`` and the
    ``section.key=value`` ``changes`` (YAML values) applied (paths made absolute, validation only after the last
    epoch: the held-out cases choose nothing)."""
    if epochs is None and iterations is None and not changes:
        return config_path
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data = raw["data"]
    for key in ("manifest", "cache", "plan", "preprocessing", "augmentation"):
        if key in data and data[key] not in (None, "default", "none"):
            data[key] = str((config_path.parent / data[key]).resolve())
    train = raw.setdefault("train", {})
    if epochs is not None:
        train["epochs"] = epochs
    if iterations is not None:
        train["iterations_per_epoch"] = iterations
    train["val_every"] = train["epochs"]
    for change in changes:
        key, _, value = change.partition("=")
        section, _, name = key.partition(".")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    path = arm_dir / f"{config_path.stem}_budget.yaml"
    arm_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# {config_path} with the budget (and {changes or 'nothing else'}) changed by quality_bench.py\n"
        + yaml.safe_dump(raw, sort_keys=False),
        encoding="utf-8",
    )
    return path


def finished(run_dir: Path) -> bool:
    """A medseg run folder whose training reached its last epoch."""
    log_csv = run_dir / "training_log.csv"
    if not (run_dir / "checkpoint_latest.pt").exists() or not log_csv.exists():
        return False
    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    with log_csv.open() as stream:
        rows = list(csv.DictReader(stream))
    return bool(rows) and int(rows[-1]["epoch"]) >= int(config["train"]["epochs"])


def check_trained_with(run_dir: Path, expected: dict[str, Any]) -> None:
    """Refuse a finished run folder whose resolved run spec (its ``config.yaml``) is not ``expected``: an arm's
    folder name says its config and budget, so a run trained with another one (an older version of the config)
    must not be scored under that name."""
    saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    changed = [
        f"{section}.{key}: {saved.get(section, {}).get(key)!r} -> {value!r}"
        for section, settings in expected.items()
        for key, value in settings.items()
        if saved.get(section, {}).get(key) != value
    ]
    if changed:
        raise SystemExit(
            f"{run_dir}: trained with another config than this arm's ({'; '.join(changed)}); "
            "delete the folder or give the arm another --name"
        )


def run_medseg(
    arm_dir: Path, facts: dict[str, Any], folds: list[int], config: Path, reuse: Path | None, tta: bool
) -> None:
    from medseg.config import to_dict
    from medseg.training.run import load_training_config

    medseg = BIN / "medseg"
    pred = arm_dir / "pred"
    expected = to_dict(load_training_config(config).spec)
    for fold in folds:
        run_dir = (
            reuse / f"fold_{fold}"
            if reuse is not None and finished(reuse / f"fold_{fold}")
            else arm_dir / f"fold_{fold}"
        )
        if finished(run_dir):
            check_trained_with(run_dir, expected)
        else:
            timing = run_step(
                [medseg, "train", "--config", config, "--fold", str(fold), "--out", run_dir, "--quiet"],
                arm_dir / "log.txt",
            )
            record_timing(arm_dir, f"train_fold_{fold}", timing)
        held_out = facts["splits"][fold]["val"]
        if all((pred / f"{case}.nii.gz").exists() for case in held_out):
            continue
        inputs = arm_dir / f"held_out_fold_{fold}.csv"
        write_held_out(facts, held_out, inputs)
        command = [
            medseg,
            "predict",
            "--model",
            run_dir / "checkpoint_latest.pt",
            "--input",
            inputs,
            "--out",
            pred,
            "--quiet",
        ] + (["--tta"] if tta else [])
        record_timing(arm_dir, f"predict_fold_{fold}", run_step(command, arm_dir / "log.txt"))


def write_held_out(facts: dict[str, Any], case_ids: list[str], path: Path) -> None:
    from medseg.data.manifest import write_csv_manifest

    manifest = facts["manifest"]
    write_csv_manifest(
        path, [manifest.case(case) for case in case_ids], manifest.labels, name=f"{manifest.name} held out"
    )


def medseg_network(facts: dict[str, Any], config: Path) -> dict[str, Any]:
    """The network medseg trains with this config (patch, batch, strides, kernels, feature maps)."""
    from medseg.config import to_dict
    from medseg.models import stage_channels
    from medseg.training.run import load_training_config, network_configuration, prepare_cache

    inputs = load_training_config(config)
    network = network_configuration(inputs.spec, prepare_cache(inputs, progress=False))
    settings = to_dict(network)
    settings["features"] = stage_channels(len(network.strides), network.base_channels, network.max_channels)
    return settings


# -- nnU-Net arms -------------------------------------------------------------------------------------------
def nnunet_env(work: Path) -> dict[str, str]:
    return {
        "nnUNet_raw": str(work / "nnunet" / "raw"),
        "nnUNet_preprocessed": str(work / "nnunet" / "preprocessed"),
        "nnUNet_results": str(work / "nnunet" / "results"),
        "nnUNet_n_proc_DA": "1",
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "false",
    }


def nnunet_dataset_name(name: str) -> str:
    spec = DATASETS[name]
    return f"Dataset{spec['nnunet_id']:03d}_{spec['nnunet_name']}"


def convert_to_nnunet(name: str, work: Path, facts: dict[str, Any]) -> Path:
    """nnU-Net v2's raw layout for the dataset: links to the shared images and labels, and dataset.json."""
    manifest = facts["manifest"]
    raw = work / "nnunet" / "raw" / nnunet_dataset_name(name)
    for case in manifest.cases:
        for channel, image in enumerate(case.images):
            link(image, raw / "imagesTr" / f"{case.case_id}_{channel:04d}.nii.gz")
        link(case.label, raw / "labelsTr" / f"{case.case_id}.nii.gz")
    dataset = {
        "channel_names": {str(k): v or "image" for k, v in manifest.channel_names.items()},
        "labels": {label: int(value) for label, value in manifest.labels.items()},
        "numTraining": len(manifest.cases),
        "file_ending": ".nii.gz",
        "name": manifest.name,
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n", encoding="utf-8")
    return raw


def prepare_nnunet(name: str, work: Path, facts: dict[str, Any], arm_dir: Path) -> Path:
    """Plan and preprocess with nnU-Net (once) and give it medseg's folds; returns the preprocessed folder."""
    spec = DATASETS[name]
    env = nnunet_env(work)
    preprocessed = Path(env["nnUNet_preprocessed"]) / nnunet_dataset_name(name)
    convert_to_nnunet(name, work, facts)
    configuration = spec["nnunet_configuration"]
    if not (preprocessed / "nnUNetPlans.json").exists() or not (preprocessed / f"nnUNetPlans_{configuration}").is_dir():
        command = [
            BIN / "nnUNetv2_plan_and_preprocess",
            "-d",
            str(spec["nnunet_id"]),
            "-c",
            configuration,
            "-np",
            "1",
            "--verify_dataset_integrity",
        ]
        record_timing(work / "nnunet", "plan_and_preprocess", run_step(command, work / "nnunet" / "log.txt", env))
    splits = [{"train": split["train"], "val": split["val"]} for split in facts["splits"]]
    (preprocessed / "splits_final.json").write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    return preprocessed


def matched_plans(preprocessed: Path, configuration: str, network: dict[str, Any]) -> str:
    """``nnUNetPlans_medseg.json``: nnU-Net's plan with medseg's network, patch and batch for ``configuration``
    (axes reversed: nnU-Net's arrays are (z, y, x), medseg's (x, y, z)); returns the plans name."""
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text(encoding="utf-8"))
    plans["plans_name"] = "nnUNetPlans_medseg"
    entry = plans["configurations"][configuration]
    entry["patch_size"] = [int(p) for p in reversed(network["patch_size"])]
    entry["batch_size"] = int(network["batch_size"])
    kwargs = entry["architecture"]["arch_kwargs"]
    stages = len(network["strides"])
    kwargs.update(
        {
            "n_stages": stages,
            "features_per_stage": [int(f) for f in network["features"]],
            "kernel_sizes": [[int(k) for k in reversed(kernel)] for kernel in network["kernel_sizes"]],
            "strides": [[int(s) for s in reversed(stride)] for stride in network["strides"]],
            "n_conv_per_stage": [2] * stages,
            "n_conv_per_stage_decoder": [2] * (stages - 1),
        }
    )
    (preprocessed / "nnUNetPlans_medseg.json").write_text(json.dumps(plans, indent=1) + "\n", encoding="utf-8")
    return "nnUNetPlans_medseg"


def run_nnunet(
    name: str,
    arm: str,
    arm_dir: Path,
    work: Path,
    facts: dict[str, Any],
    folds: list[int],
    epochs: int,
    iterations: int,
    config: Path,
    tta: bool,
) -> None:
    spec = DATASETS[name]
    preprocessed = prepare_nnunet(name, work, facts, arm_dir)
    configuration = spec["nnunet_configuration"]
    plans = "nnUNetPlans"
    if arm == "nnunet_matched":
        plans = matched_plans(preprocessed, configuration, medseg_network(facts, config))
    pred = arm_dir / "pred"
    for fold in folds:
        held_out = facts["splits"][fold]["val"]
        if all((pred / f"{case}.nii.gz").exists() for case in held_out):
            continue
        command = [
            sys.executable,
            Path(__file__).resolve(),
            "--nnunet-train",
            name,
            "--plans",
            plans,
            "--fold",
            str(fold),
            "--epochs",
            str(epochs),
            "--iterations-per-epoch",
            str(iterations),
        ] + (["--tta"] if tta else [])
        record_timing(
            arm_dir, f"train_and_predict_fold_{fold}", run_step(command, arm_dir / "log.txt", nnunet_env(work))
        )
        folder = nnunet_output_folder(work, name, plans, fold, epochs, iterations) / "validation"
        for case in held_out:
            pred.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / f"{case}.nii.gz", pred / f"{case}.nii.gz")


def nnunet_trainer_name(epochs: int, iterations: int) -> str:
    """The budget trainer's class name, which nnU-Net puts in its output folder: one folder per budget."""
    return f"nnUNetTrainerBudget_e{epochs}x{iterations}"


def nnunet_output_folder(work: Path, name: str, plans: str, fold: int, epochs: int, iterations: int) -> Path:
    configuration = DATASETS[name]["nnunet_configuration"]
    return (
        work
        / "nnunet"
        / "results"
        / nnunet_dataset_name(name)
        / f"{nnunet_trainer_name(epochs, iterations)}__{plans}__{configuration}"
        / f"fold_{fold}"
    )


def nnunet_train(name: str, plans_name: str, fold: int, epochs: int, iterations: int, tta: bool) -> None:
    """Train one fold with nnU-Net on CPU and predict its held-out cases, with nnU-Net's mirroring at test time
    if ``tta`` (runs in its own process, with the nnUNet_* environment set by :func:`nnunet_env`)."""
    import torch
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from medseg.common.processes import usable_cpus

    spec = DATASETS[name]
    lateral_axis = spec["lateral_axis"]

    class nnUNetTrainerBudget(nnUNetTrainer):  # noqa: N801 (nnU-Net's naming)
        """nnU-Net's trainer with a fixed budget: only the epoch and iteration counts differ (and, for data
        whose labels name sides, no left-right mirroring, in training and at test time)."""

        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cpu"))
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = 2  # its per-epoch pseudo Dice only; chooses nothing here
            self.save_every = epochs

        def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 (nnU-Net's name)
            rotation, dummy_2d, patch, mirror_axes = (
                super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            )
            if lateral_axis is not None and mirror_axes is not None:
                offset = 3 - len(self.configuration_manager.patch_size)
                mirror_axes = tuple(a for a in mirror_axes if a + offset != lateral_axis)
                self.inference_allowed_mirroring_axes = mirror_axes
            return rotation, dummy_2d, patch, mirror_axes

    nnUNetTrainerBudget.__name__ = nnUNetTrainerBudget.__qualname__ = nnunet_trainer_name(epochs, iterations)
    torch.set_num_threads(max(1, usable_cpus() - int(os.environ.get("nnUNet_n_proc_DA", "1"))))
    folder = Path(nnUNet_preprocessed) / nnunet_dataset_name(name)
    plans = json.loads((folder / f"{plans_name}.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False  # nnU-Net's run_training puts this flag into the plans
    dataset_json = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    trainer = nnUNetTrainerBudget(plans, spec["nnunet_configuration"], fold, dataset_json, torch.device("cpu"))
    trainer.run_training()
    if not tta:
        trainer.inference_allowed_mirroring_axes = None  # nnUNetPredictor then predicts without mirroring
    trainer.perform_actual_validation(False)


# -- the training-free lung mask ----------------------------------------------------------------------------
def run_lung_ct(arm_dir: Path, facts: dict[str, Any]) -> None:
    from medseg.io import Volume, load_volume, save_volume

    pred = arm_dir / "pred"
    for case in facts["manifest"].cases:
        target = pred / f"{case.case_id}.nii.gz"
        if target.exists():
            continue
        raw = arm_dir / "raw" / f"{case.case_id}.nii.gz"
        command = [BIN / "medseg", "segment", "--method", "lung-ct", case.images[0], raw, "--quiet"]
        record_timing(arm_dir, f"segment_{case.case_id}", run_step(command, arm_dir / "log.txt"))
        lungs = load_volume(raw, label=True)
        mapped = np.zeros_like(lungs.array)  # lung-ct: 1 patient-left, 2 patient-right; the dataset: 1 right, 2 left
        mapped[lungs.array == 1] = facts["labels"]["left_lung"]
        mapped[lungs.array == 2] = facts["labels"]["right_lung"]
        save_volume(Volume(mapped, lungs.affine, None, {"kind": "label"}), target, label=True)


# -- scoring ------------------------------------------------------------------------------------------------
def evaluate(arm_dir: Path, facts: dict[str, Any], refs: Path, labels: dict[str, int]) -> Path:
    """``medseg evaluate --regions`` of the arm's predictions against the references of the same cases, for
    ``labels`` (name -> value)."""
    pred = arm_dir / "pred"
    cases = sorted(p.name.removesuffix(".nii.gz") for p in pred.glob("*.nii.gz"))
    subset = arm_dir / "refs"
    shutil.rmtree(subset, ignore_errors=True)
    for case in cases:
        link(refs / f"{case}.nii.gz", subset / f"{case}.nii.gz")
    spec = ",".join(f"{label}={value}" for label, value in labels.items())
    command = [
        BIN / "medseg",
        "evaluate",
        "--pred",
        pred,
        "--ref",
        subset,
        "--out",
        arm_dir / "eval",
        "--regions",
        "--metrics",
        "dice,hd95",
        "--labels",
        spec,
        "--no-report",
        "--overwrite",
        "--quiet",
    ]
    record_timing(arm_dir, "evaluate", run_step(command, arm_dir / "log.txt"))
    return arm_dir / "eval" / "metrics.csv"


def summarise(metrics_csv: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Mean Dice / HD95 per label and region over all held-out cases, and each fold's mean (spread).

    A label whose reference is empty in a case (not contoured there, e.g. the heart of LUNG1-001) is not scored
    in that case; a structure the model missed (prediction empty) counts as Dice 0.
    """
    values: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    skipped = set()
    with metrics_csv.open() as stream:
        for row in csv.DictReader(stream):
            if row["metric"] not in ("dice", "hd95") or row["value"] in ("", "nan"):
                continue
            if row["flag"] in ("ref_empty", "both_empty"):
                skipped.add((row["case"], row["label"]))
                continue
            fold = facts["fold_of_case"][row["case"]]
            values[(row["label"], row["region"], row["metric"])][fold].append(float(row["value"]))
    table: dict[str, Any] = {}
    for (label, region, metric), per_fold in sorted(values.items()):
        pooled = [v for fold_values in per_fold.values() for v in fold_values]
        fold_means = {str(fold): float(np.mean(v)) for fold, v in sorted(per_fold.items())}
        table.setdefault(label, {}).setdefault(region, {})[metric] = {
            "mean": float(np.mean(pooled)),
            "n_cases": len(pooled),
            "fold_means": fold_means,
            "fold_std": float(np.std(list(fold_means.values()))),
            "fold_min": float(min(fold_means.values())),
            "fold_max": float(max(fold_means.values())),
            "case_min": float(min(pooled)),
        }
    dice_all = [table[label]["all"]["dice"]["mean"] for label in table if "dice" in table[label].get("all", {})]
    return {
        "labels": table,
        "mean_dice": float(np.mean(dice_all)) if dice_all else None,
        "not_scored_reference_empty": sorted(f"{case}:{label}" for case, label in skipped),
    }


# -- budget facts of an arm ---------------------------------------------------------------------------------
def medseg_budget(arm_dir: Path, folds: list[int], reuse: Path | None) -> dict[str, Any]:
    runs = {}
    for fold in folds:
        run_dir = (
            reuse / f"fold_{fold}"
            if reuse is not None and finished(reuse / f"fold_{fold}")
            else arm_dir / f"fold_{fold}"
        )
        if not (run_dir / "training_log.csv").exists():
            continue
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        network = json.loads((run_dir / "network.json").read_text(encoding="utf-8"))
        with (run_dir / "training_log.csv").open() as stream:
            rows = list(csv.DictReader(stream))
        runs[str(fold)] = {
            "run_dir": str(run_dir),
            "epochs": int(config["train"]["epochs"]),
            "iterations_per_epoch": int(config["train"]["iterations_per_epoch"]),
            "batch_size": network["batch_size"],
            "patch_size": network["patch_size"],
            "train_seconds_logged": round(sum(float(r["seconds"]) for r in rows), 1),
        }
    return runs


def nnunet_budget(work: Path, name: str, plans: str, folds: list[int], epochs: int, iterations: int) -> dict[str, Any]:
    runs = {}
    for fold in folds:
        folder = nnunet_output_folder(work, name, plans, fold, epochs, iterations)
        debug = folder / "debug.json"
        if not debug.exists():
            continue
        facts = json.loads(debug.read_text(encoding="utf-8"))
        plan = json.loads(
            (work / "nnunet" / "preprocessed" / nnunet_dataset_name(name) / f"{plans}.json").read_text(encoding="utf-8")
        )
        entry = plan["configurations"][DATASETS[name]["nnunet_configuration"]]
        runs[str(fold)] = {
            "output_folder": str(folder),
            "epochs": int(facts["num_epochs"]),
            "iterations_per_epoch": int(facts["num_iterations_per_epoch"]),
            "batch_size": entry["batch_size"],
            "patch_size": entry["patch_size"],
            "features_per_stage": entry["architecture"]["arch_kwargs"]["features_per_stage"],
        }
    return runs


# -- report -------------------------------------------------------------------------------------------------
def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        return json.loads(RESULTS.read_text(encoding="utf-8"))
    return {"arms": {}}


def report(results: dict[str, Any]) -> None:
    """Write ``results/quality.json`` and the README table from every arm measured so far."""
    lines = ["## Model quality, cross-validated, side by side with nnU-Net v2 (`quality_bench.py`)", ""]
    lines += [
        "Dice on held-out patients (every patient held out once), scored by `medseg evaluate --regions`; "
        "mean over held-out cases, and in brackets the lowest and highest fold mean. Budget: epochs x "
        "iterations x batch per fold; time = training wall-clock per fold (median), with the 1-minute load "
        "average of the shared 2-core machine during the runs.",
        "",
    ]
    for dataset in DATASETS:
        arms = {key: arm for key, arm in results["arms"].items() if arm["dataset"] == dataset}
        if not arms:
            continue
        labels = next(iter(arms.values()))["summary"]["label_order"]
        lines += [f"### {dataset}", ""]
        header = (
            "| arm | folds | budget per fold | train time per fold | load | mean Dice | " + " | ".join(labels) + " |"
        )
        lines += [header, "|" + "---|" * (6 + len(labels))]
        for arm in arms.values():
            summary = arm["summary"]
            cells = []
            for label in labels:
                entry = summary["labels"].get(label, {}).get("all", {}).get("dice")
                cells.append(
                    "-" if entry is None else f"{entry['mean']:.3f} ({entry['fold_min']:.2f}-{entry['fold_max']:.2f})"
                )
            lines.append(
                f"| {arm['name']} | {arm['folds_run']} | {arm['budget_text']} | {arm['time_text']} | "
                f"{arm['load_text']} | "
                f"{summary['mean_dice']:.3f} | " + " | ".join(cells) + " |"
            )
        lines += ["", "Per region (Dice, mean over held-out cases; base / middle / apex):", ""]
        lines += ["| arm | " + " | ".join(labels) + " |", "|" + "---|" * (1 + len(labels))]
        for arm in arms.values():
            cells = []
            for label in labels:
                regions = arm["summary"]["labels"].get(label, {})
                parts = [
                    f"{regions[r]['dice']['mean']:.2f}" if "dice" in regions.get(r, {}) else "-" for r in REGIONS[1:]
                ]
                cells.append(" / ".join(parts))
            lines.append(f"| {arm['name']} | " + " | ".join(cells) + " |")
        lines.append("")
    write_results("quality", results, "\n".join(lines))


def describe_arm(arm: dict[str, Any]) -> None:
    runs = arm["runs"]
    if runs:
        first = next(iter(runs.values()))
        arm["budget_text"] = (
            f"{first['epochs']} x {first['iterations_per_epoch']} x {first['batch_size']}, "
            f"patch {'x'.join(map(str, first['patch_size']))}"
        )
    else:
        arm["budget_text"] = "no training"
    trains = [t for k, t in arm["timing"].items() if k.startswith("train")]
    if trains:
        arm["time_text"] = (
            f"{np.median([t['wall_s'] for t in trains]) / 60:.1f} min (CPU "
            f"{np.median([t['cpu_s'] for t in trains]) / 60:.1f} min)"
        )
    elif arm["runs"]:
        logged = [r.get("train_seconds_logged") for r in runs.values() if r.get("train_seconds_logged")]
        arm["time_text"] = f"{np.median(logged) / 60:.1f} min (logged by training)" if logged else "-"
    else:
        steps = list(arm["timing"].values())
        arm["time_text"] = f"{np.median([t['wall_s'] for t in steps]):.1f} s per scan" if steps else "-"
    loads = [value for t in arm["timing"].values() for value in t["load_avg_1min"]]
    arm["load_text"] = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS))
    parser.add_argument("--arm", choices=("medseg", "nnunet", "nnunet_matched", "lung_ct"))
    parser.add_argument("--name", help="name of the arm in the results (default: arm, config and budget)")
    parser.add_argument("--folds", type=int, nargs="+", help="folds to run (default: every fold)")
    parser.add_argument("--config", type=Path, help="medseg training config (default: the dataset's)")
    parser.add_argument("--epochs", type=int, help="epochs per fold (default: the config's)")
    parser.add_argument("--iterations-per-epoch", type=int, help="iterations per epoch (default: the config's)")
    parser.add_argument(
        "--tta",
        action="store_true",
        help="predict with test-time mirroring (medseg --tta; nnU-Net's "
        "default mirroring); off by default to fit the CPU budget",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="medseg: change one config value (a recipe lever), e.g. model.deep_supervision=true",
    )
    parser.add_argument("--reuse", type=Path, help="medseg: finished run folders DIR/fold_K to predict with")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "quality_bench")
    parser.add_argument("--report", action="store_true", help="only write the tables from the results")
    parser.add_argument("--nnunet-train", help=argparse.SUPPRESS)
    parser.add_argument("--plans", help=argparse.SUPPRESS)
    parser.add_argument("--fold", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    if args.nnunet_train:
        nnunet_train(args.nnunet_train, args.plans, args.fold, args.epochs, args.iterations_per_epoch, args.tta)
        return 0
    if args.report:
        report(load_results())
        return 0
    if not args.dataset or not args.arm:
        parser.error("--dataset and --arm are needed (or --report)")
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"{SHARED_DATA}: the shared real data are not there; this benchmark needs them")
    spec = DATASETS[args.dataset]
    if args.arm not in spec["arms"]:
        parser.error(f"arm {args.arm} is not run on {args.dataset}")
    config = (args.config or spec["config"]).resolve()
    work = args.work.resolve() / args.dataset
    budget = f"e{args.epochs}x{args.iterations_per_epoch}" if args.epochs or args.iterations_per_epoch else "config"
    budget += " tta" if args.tta else ""
    budget += "".join(f" {change}" for change in args.set)
    name = args.name or (
        f"medseg {config.stem} {budget}"
        if args.arm == "medseg"
        else f"{args.arm} {budget}"
        if args.arm.startswith("nnunet")
        else args.arm
    )
    arm_dir = work / name.replace(" ", "_")
    arm_dir.mkdir(parents=True, exist_ok=True)
    facts = dataset_facts(args.dataset, config)
    folds = args.folds if args.folds is not None else list(range(len(facts["splits"])))
    refs = write_references(work, facts)

    if args.arm == "medseg":
        run_config = budget_config(config, arm_dir, args.epochs, args.iterations_per_epoch, args.set)
        run_medseg(arm_dir, facts, folds, run_config, args.reuse, args.tta)
    elif args.arm == "lung_ct":
        run_lung_ct(arm_dir, facts)
    else:
        if args.epochs is None or args.iterations_per_epoch is None:
            parser.error("the nnU-Net arms need --epochs and --iterations-per-epoch (the budget)")
        run_nnunet(
            args.dataset,
            args.arm,
            arm_dir,
            work,
            facts,
            folds,
            args.epochs,
            args.iterations_per_epoch,
            config,
            args.tta,
        )

    # the lung mask segments the lungs only: its other labels are not scored
    labels = {k: v for k, v in facts["labels"].items() if args.arm != "lung_ct" or k.endswith("_lung")}
    summary = summarise(evaluate(arm_dir, facts, refs, labels), facts)
    summary["label_order"] = list(facts["labels"])
    timing = (
        json.loads((arm_dir / "timing.json").read_text(encoding="utf-8")) if (arm_dir / "timing.json").exists() else {}
    )
    runs = (
        medseg_budget(arm_dir, folds, args.reuse)
        if args.arm == "medseg"
        else nnunet_budget(
            work,
            args.dataset,
            "nnUNetPlans_medseg" if args.arm == "nnunet_matched" else "nnUNetPlans",
            folds,
            args.epochs,
            args.iterations_per_epoch,
        )
        if args.arm.startswith("nnunet")
        else {}
    )
    scored_folds = sorted(
        {facts["fold_of_case"][p.name.removesuffix(".nii.gz")] for p in (arm_dir / "pred").glob("*.nii.gz")}
    )
    arm = {
        "name": name,
        "dataset": args.dataset,
        "arm": args.arm,
        "tta": args.tta,
        "config": str(config.relative_to(ROOT)) if args.arm == "medseg" else None,
        "folds_run": f"{len(scored_folds)}/{len(facts['splits'])}",
        "folds": scored_folds,
        "command": " ".join([".venv/bin/python benchmarks/quality_bench.py", *sys.argv[1:]]),
        "runs": runs,
        "timing": timing,
        "summary": summary,
    }
    describe_arm(arm)
    results = load_results()  # again: another arm may have finished meanwhile
    results["arms"][f"{args.dataset}: {name}"] = arm
    report(results)
    log.info("%s: mean Dice %.3f over %s folds", name, summary["mean_dice"] or float("nan"), arm["folds_run"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
