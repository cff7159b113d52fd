"""``medseg train``: from a YAML config to a run folder with checkpoints, logs and TensorBoard.

A training config (see ``configs/*.yaml``) has the sections ``data``, ``model``, ``loss``,
``optim``, ``train``, ``validation`` and ``postprocess`` (used at prediction time). Paths in
it are relative to the config file. The run:

1. plans the dataset (or reads ``data.plan``) and preprocesses it into ``data.cache``
   (cases already cached are skipped), on rank 0 only;
2. splits the manifest into folds (patients kept together; ``splits.json``);
3. builds the U-Net from the plan's configuration (``data.configuration``: ``3d`` or the
   slice-wise ``2d``) and trains it with :class:`~medseg.training.engine.Trainer`;
4. validates every ``train.val_every`` epochs with sliding-window prediction on whole
   validation cases (Dice per label on the preprocessed grid).

The run folder holds ``config.yaml`` (as used, overrides applied), ``plan.json``,
``splits.json``, ``checkpoint_latest.pt`` / ``checkpoint_best.pt`` (each carrying the config
and plan, so a checkpoint alone is enough to predict), ``training_log.csv`` and
``tensorboard/``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from medseg.config import from_dict, load_yaml, to_dict
from medseg.errors import ConfigError
from medseg.models import UNetConfig, build_unet, stage_channels
from medseg.training.engine import LoopConfig, OptimConfig, Trainer, init_distributed
from medseg.training.losses import DeepSupervisionLoss, LossConfig, build_loss

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The ``data`` section. Paths are relative to the config file.

    Attributes:
        manifest: dataset manifest (``dataset.json``, CSV or phantom YAML).
        cache: preprocessing cache folder (created and filled if needed).
        plan: an existing plan JSON (``medseg plan``); default: plan from the manifest.
        preprocessing: preprocessing settings YAML for planning (``configs/preprocessing_*.yaml``).
        configuration: ``3d`` (volumetric U-Net) or ``2d`` (slice-wise U-Net, same cache).
        augmentation: augmentation YAML; ``default`` (built-in defaults) or ``none``.
        patch_size, batch_size: override the plan's (voxels; per rank).
        foreground_ratio: share of patches forced to contain a label (nnU-Net: 1/3).
        class_balanced: forced patches draw their class uniformly over the dataset's classes.
        workers: data-loading worker processes.
        preprocess_workers: processes for preprocessing.
        folds: number of cross-validation folds (ignored when the manifest sets folds/splits).
        split_seed: seed of the fold assignment.
        group_pattern: regular expression naming each case's patient from its id (first capture
            group, else the whole match), so one patient's cases stay in one fold, for manifests
            without a ``group`` column (e.g. a ``dataset.json``): ``"^(patient\\d+)"``.
    """

    manifest: str
    cache: str
    plan: str | None = None
    preprocessing: str | None = None
    configuration: Literal["3d", "2d"] = "3d"
    augmentation: str = "default"
    patch_size: list[int] | None = None
    batch_size: int | None = None
    foreground_ratio: float = 1.0 / 3.0
    class_balanced: bool = False
    workers: int = 2
    preprocess_workers: int = 1
    folds: int = 5
    split_seed: int = 0
    group_pattern: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.foreground_ratio <= 1.0:
            raise ValueError(f"data.foreground_ratio must be in [0, 1], got {self.foreground_ratio}")
        if self.workers < 0 or self.preprocess_workers < 1:
            raise ValueError("data.workers must be >= 0 and data.preprocess_workers >= 1")
        if self.group_pattern is not None:
            try:
                re.compile(self.group_pattern)
            except re.error as error:
                raise ValueError(f"data.group_pattern {self.group_pattern!r} is not a valid regular expression: {error}") from None


@dataclass
class ValidationConfig:
    """The ``validation`` section: sliding-window settings for validation during training."""

    overlap: float = 0.5
    max_cases: int = 0  # 0 = every validation case
    mirror_axes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"validation.overlap must be in [0, 1), got {self.overlap}")


@dataclass
class PostprocessConfig:
    """The ``postprocess`` section, applied by ``medseg predict`` (:mod:`medseg.inference.postprocess`)
    in this order: small-component removal, largest component, hole filling.

    Attributes:
        largest_component: labels (values) for which only the largest connected component is kept.
        fill_holes: labels whose enclosed background cavities are filled (3D, face connectivity).
        min_component_ml: remove components smaller than this many millilitres (0 = off), all labels.
    """

    largest_component: list[int] = field(default_factory=list)
    fill_holes: list[int] = field(default_factory=list)
    min_component_ml: float = 0.0

    def __post_init__(self) -> None:
        if self.min_component_ml < 0:
            raise ValueError(f"postprocess.min_component_ml must be >= 0, got {self.min_component_ml}")
        for name in ("largest_component", "fill_holes"):
            if any(v <= 0 for v in getattr(self, name)):
                raise ValueError(f"postprocess.{name} lists label values > 0, got {getattr(self, name)}")


@dataclass
class TrainingConfig:
    """A whole training config (one dataclass per section)."""

    data: DataConfig
    model: UNetConfig = field(default_factory=UNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


def load_training_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> tuple[TrainingConfig, Path]:
    """Read and validate a training config; returns it with data paths made absolute, and its folder.

    ``overrides`` (section -> key -> value, e.g. from CLI flags) are applied before validation.
    Errors (unknown keys, wrong types, missing files) raise :class:`ConfigError` naming the
    file and the key.
    """
    path = Path(path).expanduser().resolve()
    raw = load_yaml(path)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    if "data" not in raw:
        raise ConfigError(f"{path}: missing required section 'data' (manifest, cache)")
    config = from_dict(TrainingConfig, raw, source=str(path))
    base = path.parent
    data = config.data
    data.manifest = str((base / data.manifest).resolve())
    data.cache = str((base / data.cache).resolve())
    for key in ("plan", "preprocessing"):
        value = getattr(data, key)
        if value is not None:
            setattr(data, key, str((base / value).resolve()))
    if data.augmentation not in ("default", "none"):
        data.augmentation = str((base / data.augmentation).resolve())
    for key in ("manifest", "plan", "preprocessing", "augmentation"):
        value = getattr(data, key)
        if value not in (None, "default", "none") and not Path(value).exists():
            raise ConfigError(f"{path}: data.{key}: file not found: {value}")
    # the files the config points to are checked now, not after planning and preprocessing
    from medseg.data.config import load_augmentation_config, load_preprocessing_config

    if data.augmentation not in ("default", "none"):
        load_augmentation_config(data.augmentation)
    if data.preprocessing is not None:
        load_preprocessing_config(data.preprocessing)
    return config, base


def prepare_cache(config: TrainingConfig, progress: bool = True) -> dict[str, Any]:
    """Plan (unless ``data.plan`` is given) and preprocess into ``data.cache``; return the plan.

    The cache keeps the plan it was filled with (``plan.json``) and what that plan was made from
    (``planned_from.json``: the manifest and the preprocessing settings); the plan is made again
    when either changed, e.g. after editing ``data.preprocessing``. A cache whose plan differs
    from the one to use is refilled for the changed cases only (cases are keyed by their inputs
    and the plan). Raises :class:`ConfigError` when a case fails to preprocess, naming it.
    """
    from medseg.data.cache import preprocess_dataset
    from medseg.data.config import load_preprocessing_config
    from medseg.data.manifest import load_manifest
    from medseg.data.planning import load_plan, plan_dataset, save_plan
    from medseg.io import atomic_write_text

    manifest = load_manifest(config.data.manifest)
    cache = Path(config.data.cache)
    preprocessing = load_preprocessing_config(config.data.preprocessing)
    planned_from = {"manifest": str(manifest.path), "preprocessing": to_dict(preprocessing)}
    previous = cache / "planned_from.json"
    if config.data.plan:
        plan = load_plan(config.data.plan)
    elif (cache / "plan.json").exists() and (not previous.exists() or json.loads(previous.read_text()) == planned_from):
        plan = load_plan(cache / "plan.json")
    else:
        again = " again (manifest or preprocessing settings changed)" if (cache / "plan.json").exists() else ""
        log.info("planning %s (%d cases)%s ...", manifest.name, len(manifest), again)
        plan = plan_dataset(manifest, preprocessing, workers=config.data.preprocess_workers, progress=progress)
        cache.mkdir(parents=True, exist_ok=True)
        save_plan(plan, cache / "plan.json")
        atomic_write_text(previous, json.dumps(planned_from, indent=1) + "\n")
    report = preprocess_dataset(manifest, plan, cache, workers=config.data.preprocess_workers, progress=progress)
    if not report.ok:
        failed = "; ".join(f"{case}: {reason}" for case, reason in report.failed.items())
        raise ConfigError(f"{cache}: preprocessing failed for {len(report.failed)} case(s): {failed}")
    return load_plan(cache / "plan.json")


def network_settings(config: TrainingConfig, plan: dict[str, Any]) -> dict[str, Any]:
    """Patch size, batch size, strides and kernels for the chosen configuration (overrides applied)."""
    from medseg.data.planning import divisibility, pool_and_kernels

    settings = dict(plan["configurations"][config.data.configuration])
    if config.data.patch_size is not None:
        patch = [int(p) for p in config.data.patch_size]
        if len(patch) != len(settings["patch_size"]):
            raise ConfigError(
                f"data.patch_size {patch} needs {len(settings['patch_size'])} entries for the {config.data.configuration} configuration"
            )
        settings["patch_size"] = patch
        settings["strides"], settings["kernel_sizes"] = pool_and_kernels(settings["spacing_mm"], patch)
        factors = divisibility(settings["strides"])
        if any(p % f for p, f in zip(patch, factors)):
            raise ConfigError(f"data.patch_size {patch} must be divisible by {factors} (the U-Net's downsampling per axis)")
    if config.data.batch_size is not None:
        settings["batch_size"] = int(config.data.batch_size)
    settings["base_channels"] = config.model.base_channels or settings.get("base_channels", 32)
    settings["max_channels"] = config.model.max_channels or settings.get("max_channels", 320)
    return settings


def mirror_axes_from_augmentation(augmentation: str, settings: dict[str, Any], configuration: str) -> list[int]:
    """Volume axes the training flipped (``spatial.flip``): the axes test-time mirroring may use.

    Mirroring at test time along an axis the network never saw flipped would be wrong, e.g. the
    left-right axis for labels that name sides (left/right lung). For 2D, patch axes map to the
    plan's in-plane axes.
    """
    from medseg.data.config import load_augmentation_config

    if augmentation == "none":
        return []
    flip = load_augmentation_config(None if augmentation == "default" else augmentation).spatial.flip
    if flip.p <= 0:
        return []
    if configuration == "3d":
        return sorted(int(a) for a in flip.axes if a < 3)
    return sorted(int(settings["in_plane_axes"][a]) for a in flip.axes if a < 2)


def check_patch_fits(settings: dict[str, Any], cases: list[Any], configuration: str) -> None:
    """Refuse a patch larger than every preprocessed case along some axis (it would be mostly padding)."""
    shapes = np.array([c.shape for c in cases])
    if configuration == "2d":
        shapes = shapes[:, settings["in_plane_axes"]]
    largest = shapes.max(axis=0)
    if np.any(np.asarray(settings["patch_size"]) > largest):
        raise ConfigError(
            f"data.patch_size {settings['patch_size']} is larger than every case after preprocessing "
            f"(largest {largest.tolist()} voxels): use a smaller patch"
        )


def dice_per_label(prediction: np.ndarray, reference: np.ndarray, labels: dict[int, str]) -> dict[str, float]:
    """Dice per foreground label; both empty gives 1.0 (nothing to find, nothing found)."""
    scores = {}
    for value, name in labels.items():
        pred, ref = prediction == value, reference == value
        total = int(pred.sum()) + int(ref.sum())
        scores[name] = 1.0 if total == 0 else 2.0 * int((pred & ref).sum()) / total
    return scores


def make_validator(config: TrainingConfig, settings: dict[str, Any], cases: list[Any], labels: dict[int, str], device: torch.device):
    """A validation function for :class:`Trainer`: mean Dice per label over ``cases``, plus a figure."""
    from medseg.models.sliding_window import predict_volume

    if config.validation.max_cases:
        cases = cases[: config.validation.max_cases]
    num_classes = max(labels) + 1
    slice_axis = int(settings.get("slice_axis", 2))

    def validate(model: torch.nn.Module, epoch: int) -> dict[str, Any]:
        totals: dict[str, list[float]] = {name: [] for name in labels.values()}
        example = None
        for case in cases:
            image = torch.from_numpy(np.ascontiguousarray(case.image(mmap=False)))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = predict_volume(
                    model, image, settings["patch_size"], num_classes,
                    mirror_axes=config.validation.mirror_axes, slice_axis=slice_axis,
                    overlap=config.validation.overlap, device=device, batch_size=max(2, settings["batch_size"]),
                )
            prediction = logits.argmax(0).numpy().astype(np.uint8)
            reference = np.asarray(case.label(mmap=False))
            for name, score in dice_per_label(prediction, reference, labels).items():
                totals[name].append(score)
            if example is None:
                example = (case.case_id, image[0].numpy(), reference, prediction)
        result: dict[str, Any] = {"dice": {name: float(np.mean(v)) for name, v in totals.items()}}
        if example is not None:
            result["figure"] = example_figure(*example, labels=labels)
        return result

    return validate


def example_figure(case_id: str, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, labels: dict[int, str]):
    """A matplotlib figure of the slice (across axis 2) with most reference foreground: truth and prediction contours."""
    from matplotlib.figure import Figure  # not pyplot: never touch the caller's backend (e.g. a notebook's)

    k = int(np.argmax((reference > 0).sum(axis=(0, 1))))
    figure = Figure(figsize=(4, 4), dpi=100)
    axis = figure.subplots()
    axis.imshow(image[:, :, k].T, cmap="gray", origin="lower")
    for value in labels:
        if (reference[:, :, k] == value).any():
            axis.contour((reference[:, :, k] == value).T, levels=[0.5], colors="lime", linewidths=1)
        if (prediction[:, :, k] == value).any():
            axis.contour((prediction[:, :, k] == value).T, levels=[0.5], colors="red", linewidths=1)
    axis.set_title(f"{case_id} k={k}: truth green, prediction red", fontsize=8)
    axis.axis("off")
    figure.tight_layout()
    return figure


def train(
    config_path: str | Path,
    run_dir: str | Path | None = None,
    *,
    fold: int | str = 0,
    resume: bool = False,
    epochs: int | None = None,
    device: str | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> Path:
    """Train one fold from a config (see the module docstring); returns the run folder.

    ``fold``: a 0-based fold number, or ``"all"`` to train on every case (except ``split: test``
    ones) without validation, as nnU-Net's ``all`` fold: the model to ship. Such a run keeps only
    ``checkpoint_latest.pt`` (no best checkpoint without validation) and its ``splits.json`` says
    ``"fold": "all"`` with an empty validation list.

    ``epochs`` overrides ``train.epochs`` (with ``resume``, more epochs than the finished run
    had extend it). ``device``: ``cpu``, ``cuda`` or ``None`` (CUDA when available). Under
    ``torchrun`` each process trains on its own batches and rank 0 writes the run folder.
    """
    from medseg.data.cache import open_cache
    from medseg.data.manifest import load_manifest
    from medseg.data.sampling import make_patch_loader
    from medseg.data.splits import (
        ALL_FOLDS,
        all_cases_split,
        fold_of,
        given_splits,
        kfold_splits,
        parse_fold,
        suspected_same_patient,
    )

    fold = parse_fold(fold)
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    if epochs is not None:
        overrides.setdefault("train", {})["epochs"] = int(epochs)
    config, _ = load_training_config(config_path, overrides)
    device_kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available (torch.cuda.is_available() is False)")
    context = init_distributed(device_kind)
    if device_kind == "cpu":  # leave one core per data worker; oversubscribed threads slow training down a lot
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.world_size - config.data.workers))
    torch_device = torch.device(device_kind, context.local_rank) if device_kind == "cuda" else torch.device("cpu")
    run_dir = Path(run_dir or Path("runs") / Path(config_path).stem / f"fold_{fold}").expanduser().resolve()

    if context.is_main:
        plan = prepare_cache(config, progress=progress)
    if context.enabled:
        torch.distributed.barrier()
    plan = json.loads((Path(config.data.cache) / "plan.json").read_text())
    manifest = load_manifest(config.data.manifest)
    if fold == ALL_FOLDS:
        split = all_cases_split(manifest)
    else:
        split = fold_of(kfold_splits(manifest, config.data.folds, config.data.split_seed, config.data.group_pattern), fold)
    computed_folds = given_splits(manifest) is None
    if context.is_main and fold != ALL_FOLDS and computed_folds and config.data.group_pattern is None and (alike := suspected_same_patient(manifest)):
        examples = "; ".join(", ".join(ids) for ids in alike[:3])
        log.warning(
            "%d cases look like several scans of one patient (%s%s) but have no group, so one patient may be in "
            "training and validation; set data.group_pattern (e.g. '^(patient\\d+)') or a group column in a CSV manifest",
            sum(map(len, alike)), examples, " ..." if len(alike) > 3 else "",
        )
    settings = network_settings(config, plan)
    train_cases = open_cache(config.data.cache, split["train"])
    val_cases = open_cache(config.data.cache, split["val"]) if split["val"] else []
    check_patch_fits(settings, train_cases, config.data.configuration)
    labels = {int(v): name for name, v in manifest.labels.items() if int(v) != 0}
    in_channels = int(np.load(train_cases[0].image_path, mmap_mode="r").shape[0])

    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_run_files(run_dir, config, plan, split, fold, manifest, settings)
        channels = stage_channels(len(settings["strides"]), settings["base_channels"], settings["max_channels"])
        log.info(
            "training a %s U-Net on %s: patch %s voxels, batch %s, %d input channel(s), feature maps %s; fold %s: "
            "%d training / %d validation cases%s (see network.json)",
            config.data.configuration.upper(), torch_device.type, settings["patch_size"], settings["batch_size"],
            in_channels, channels, fold, len(split["train"]), len(split["val"]),
            " (every case trains; no validation, no checkpoint_best.pt)" if fold == ALL_FOLDS else "",
        )

    torch.manual_seed(config.train.seed)
    model = build_unet(
        config.model, in_channels, max(labels) + 1, settings["strides"], settings["kernel_sizes"],
        settings.get("base_channels", 32), settings.get("max_channels", 320),
    )
    loss = build_loss(config.loss, max(labels) + 1)
    if config.model.deep_supervision:
        loss = DeepSupervisionLoss(loss)
    config_dict = {
        "config": to_dict(config), "plan": plan, "settings": settings, "in_channels": in_channels,
        "mirror_axes": mirror_axes_from_augmentation(config.data.augmentation, settings, config.data.configuration),
        "labels": {str(k): v for k, v in labels.items()}, "fold": fold,
    }
    trainer = Trainer(
        model, loss, config.optim, config.train, run_dir, torch_device,
        config_dict=config_dict, distributed=context, progress=progress,
    )
    if resume:
        trainer.resume()
    augmentation = {"default": None, "none": False}.get(config.data.augmentation, config.data.augmentation)
    loader = make_patch_loader(
        config.data.cache, configuration=config.data.configuration, case_ids=split["train"],
        augmentation=augmentation, patch_size=settings["patch_size"], batch_size=settings["batch_size"],
        batches_per_epoch=config.train.iterations_per_epoch, foreground_ratio=config.data.foreground_ratio,
        class_balanced=config.data.class_balanced, num_workers=config.data.workers, seed=config.train.seed,
        epoch=trainer.epoch, rank=context.rank, world_size=context.world_size,
    )

    def batches(epoch: int):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            yield {"image": batch["image"], "label": batch["label"].long()}

    validator = make_validator(config, settings, val_cases, labels, torch_device) if val_cases else None
    trainer.fit(batches, validator)
    if context.enabled:
        torch.distributed.destroy_process_group()
    return run_dir


def _write_run_files(run_dir: Path, config: TrainingConfig, plan: dict[str, Any], split: dict[str, list[str]], fold: int | str, manifest,
                     settings: dict[str, Any]) -> None:
    """config.yaml (as used), plan.json (the dataset's plan), network.json (the network actually trained:
    the plan's configuration with the config's overrides), splits.json and validation.csv (the fold's
    held-out cases as a manifest, ready for ``medseg predict --input`` and ``medseg evaluate --manifest``;
    not written, and an earlier one removed with any ``checkpoint_best.pt``, when nothing is held out:
    ``--fold all``)."""
    import yaml

    from medseg.data.manifest import write_csv_manifest
    from medseg.io import atomic_write_text

    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False))
    atomic_write_text(run_dir / "plan.json", json.dumps(plan, indent=1) + "\n")
    atomic_write_text(run_dir / "network.json", json.dumps({"configuration": config.data.configuration, **settings}, indent=1) + "\n")
    atomic_write_text(run_dir / "splits.json", json.dumps({"fold": fold, **split}, indent=1) + "\n")
    held_out = [manifest.case(case_id) for case_id in split["val"]]
    if config.data.group_pattern:  # write the groups the folds were made with
        from medseg.data.splits import case_group

        held_out = [case if case.group else replace(case, group=case_group(case.case_id, config.data.group_pattern))
                    for case in held_out]
    if not held_out:  # files of an earlier fold in this folder would be taken for this run's
        (run_dir / "validation.csv").unlink(missing_ok=True)
        (run_dir / "checkpoint_best.pt").unlink(missing_ok=True)
    else:
        try:
            write_csv_manifest(run_dir / "validation.csv", held_out, manifest.labels,
                               name=f"{manifest.name} fold {fold} validation", modality=manifest.channel_names.get(0))
        except ConfigError as error:  # e.g. label names a CSV header cannot hold: train anyway
            log.warning("validation.csv not written (%s); the held-out cases are listed in splits.json", error)
