"""``medseg train``: from a YAML config to a run folder with checkpoints, logs and TensorBoard.

A training config (see ``configs/*.yaml``) has the sections ``data``, ``model``, ``loss``,
``optim``, ``train``, ``validation`` and ``postprocess`` (used at prediction time): a
:class:`~medseg.config.run_spec.RunSpec`. Paths in it are relative to the config file. The
config, the settings files it names and the plan are each read once and passed down. The run:

1. plans the dataset (or reads ``data.plan``) and preprocesses it into ``data.cache``
   (cases already cached are skipped), on rank 0 only;
2. splits the manifest into folds (patients kept together; ``splits.json``);
3. builds the U-Net from the plan's configuration (``data.configuration``: ``3d`` or the
   slice-wise ``2d``) and trains it with :class:`~medseg.training.engine.Trainer`;
4. validates every ``train.val_every`` epochs with sliding-window prediction on whole
   validation cases (Dice per label on the preprocessed grid).

The run folder holds ``config.yaml`` (as used, overrides applied), ``plan.json``,
``network.json``, ``splits.json``, ``checkpoint_latest.pt`` / ``checkpoint_best.pt`` (each
carrying a :class:`~medseg.config.run_spec.TrainedRun`: the run spec, the plan and the network
trained, so a checkpoint alone is enough to predict), ``training_log.csv`` and ``tensorboard/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.common.processes import usable_cpus
from medseg.config import from_dict, load_yaml, to_dict
from medseg.config.plan import Configuration, Plan, load_plan, save_plan
from medseg.config.run_spec import RunSpec, TrainedRun
from medseg.data.config import (
    AugmentationConfig,
    PreprocessingConfig,
    load_augmentation_config,
    load_preprocessing_config,
)
from medseg.data.manifest import Manifest
from medseg.errors import ConfigError, InvalidArgumentError
from medseg.models import build_unet, stage_channels
from medseg.models.precision import autocast
from medseg.training.engine import Trainer, init_distributed
from medseg.training.losses import DeepSupervisionLoss, build_loss

log = logging.getLogger(__name__)


@dataclass
class TrainingInputs:
    """A training config and the settings files it names, each read and validated once.

    Attributes:
        spec: the run spec (data paths absolute).
        preprocessing: the planning settings (``data.preprocessing``, or the defaults).
        augmentation: the augmentation settings (``data.augmentation``); ``None`` for ``none``.
        folder: the config file's folder (relative paths in it are relative to this).
    """

    spec: RunSpec
    preprocessing: PreprocessingConfig
    augmentation: AugmentationConfig | None
    folder: Path


def load_training_config(path: str | Path, overrides: dict[str, dict[str, Any]] | None = None) -> TrainingInputs:
    """Read and validate a training config and the preprocessing / augmentation files it names.

    ``overrides`` (section -> key -> value, e.g. from CLI flags) are applied before validation.
    Data paths are made absolute (relative to the config file). Errors (unknown keys, wrong
    types, missing files, a bad preprocessing or augmentation file) raise :class:`ConfigError`
    naming the file and the key, before any planning or training starts.
    """
    path = Path(path).expanduser().resolve()
    raw = load_yaml(path)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    if "data" not in raw:
        raise ConfigError(f"{path}: missing required section 'data' (manifest, cache)")
    spec = from_dict(RunSpec, raw, source=str(path))
    base = path.parent
    data = spec.data
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
    augmentation = (
        None
        if data.augmentation == "none"
        else load_augmentation_config(None if data.augmentation == "default" else data.augmentation)
    )
    return TrainingInputs(spec, load_preprocessing_config(data.preprocessing), augmentation, base)


def prepare_cache(inputs: TrainingInputs, manifest: Manifest | None = None, progress: bool = True) -> Plan:
    """Plan (unless ``data.plan`` is given) and preprocess into ``data.cache``; return the plan.

    The cache keeps the plan it was filled with (``plan.json``) and what that plan was made from
    (``planned_from.json``: the manifest and the preprocessing settings); the plan is made again
    when either changed, e.g. after editing ``data.preprocessing``. A cache whose plan differs
    from the one to use is refilled for the changed cases only (cases are keyed by their inputs
    and the plan). ``manifest``: the loaded ``data.manifest`` (read here when not given).
    Raises :class:`ConfigError` when a case fails to preprocess, naming it.
    """
    from medseg.data.cache import preprocess_dataset
    from medseg.data.manifest import load_manifest
    from medseg.data.planning import plan_dataset
    from medseg.io import atomic_write_text

    data = inputs.spec.data
    manifest = manifest or load_manifest(data.manifest)
    cache = Path(data.cache)
    planned_from = {"manifest": str(manifest.path), "preprocessing": to_dict(inputs.preprocessing)}
    previous = cache / "planned_from.json"
    if data.plan:
        plan = load_plan(data.plan)
    elif (cache / "plan.json").exists() and (
        not previous.exists() or json.loads(previous.read_text(encoding="utf-8")) == planned_from
    ):
        plan = load_plan(cache / "plan.json")
    else:
        again = " again (manifest or preprocessing settings changed)" if (cache / "plan.json").exists() else ""
        log.info("planning %s (%d cases)%s ...", manifest.name, len(manifest), again)
        plan = plan_dataset(manifest, inputs.preprocessing, workers=data.preprocess_workers, progress=progress)
        save_plan(plan, cache / "plan.json")
        atomic_write_text(previous, json.dumps(planned_from, indent=1) + "\n")
    report = preprocess_dataset(manifest, plan, cache, workers=data.preprocess_workers, progress=progress)
    if not report.ok:
        failed = "; ".join(f"{case}: {reason}" for case, reason in report.failed.items())
        raise ConfigError(f"{cache}: preprocessing failed for {len(report.failed)} case(s): {failed}")
    return plan


def network_configuration(spec: RunSpec, plan: Plan) -> Configuration:
    """The network to train: the plan's ``data.configuration`` with the spec's overrides
    (``data.patch_size``, ``data.batch_size``, ``model.base_channels``/``max_channels``).
    A new patch size gets strides and kernels planned for it and must be divisible by them."""
    from medseg.data.planning import divisibility, pool_and_kernels

    configuration = plan.configuration(spec.data.configuration)
    changes: dict[str, Any] = {}
    if spec.data.patch_size is not None:
        patch = [int(p) for p in spec.data.patch_size]
        if len(patch) != len(configuration.patch_size):
            raise ConfigError(
                f"data.patch_size {patch} needs {len(configuration.patch_size)} entries for the "
                f"{spec.data.configuration} configuration"
            )
        strides, kernels = pool_and_kernels(configuration.spacing_mm, patch)
        factors = divisibility(strides)
        if any(p % f for p, f in zip(patch, factors)):
            raise ConfigError(
                f"data.patch_size {patch} must be divisible by {factors} (the U-Net's downsampling per axis)"
            )
        changes.update(patch_size=patch, strides=strides, kernel_sizes=kernels)
    if spec.data.batch_size is not None:
        changes["batch_size"] = spec.data.batch_size
    changes["base_channels"] = spec.model.base_channels or configuration.base_channels
    changes["max_channels"] = spec.model.max_channels or configuration.max_channels
    return replace(configuration, **changes)


def mirror_axes_from_augmentation(augmentation: AugmentationConfig | None, network: Configuration) -> list[int]:
    """Volume axes the training flipped (``spatial.flip``): the axes test-time mirroring may use.

    Mirroring at test time along an axis the network never saw flipped would be wrong, e.g. the
    left-right axis for labels that name sides (left/right lung). For a 2D network, patch axes
    map to the plan's in-plane axes. ``augmentation`` ``None`` (no augmentation): no axis.
    """
    if augmentation is None or augmentation.spatial.flip.p <= 0:
        return []
    axes = augmentation.spatial.flip.axes
    if network.slice_axis is None:
        return sorted(int(a) for a in axes if a < 3)
    return sorted(int(network.in_plane_axes[a]) for a in axes if a < 2)


def check_unannotated(manifest: Manifest, cases: list[Any]) -> None:
    """Refuse a cached case whose label map marks a label its manifest row calls unannotated: the
    marginal loss gives that class probability 0 there, so its cross-entropy would be infinite."""
    for case in cases:
        if marked := manifest.marked_unannotated(case.case_id, case.classes_present):
            raise ConfigError(
                f"{manifest.path}: case {case.case_id!r} lists label value(s) {marked} as unannotated, but its label "
                "map marks them; fix the unannotated column or the label map (medseg validate checks every case)"
            )


def check_patch_fits(network: Configuration, cases: list[Any]) -> None:
    """Refuse a patch larger than every preprocessed case along some axis (it would be mostly padding)."""
    shapes = np.array([c.shape for c in cases])
    if network.in_plane_axes is not None:
        shapes = shapes[:, network.in_plane_axes]
    largest = shapes.max(axis=0)
    if np.any(np.asarray(network.patch_size) > largest):
        raise ConfigError(
            f"data.patch_size {network.patch_size} is larger than every case after preprocessing "
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


def make_validator(
    spec: RunSpec,
    network: Configuration,
    cases: list[Any],
    labels: dict[int, str],
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    unannotated: Mapping[str, Sequence[int]] | None = None,
):
    """A validation function for :class:`Trainer`: mean Dice per label over ``cases``, plus a figure;
    the network runs under autocast to ``amp_dtype`` (the trainer's; ``None`` = float32).
    ``unannotated`` (case id -> label values its label map leaves unmarked) skips those labels for
    those cases; a label no case annotates is left out of the result."""
    from medseg.models.sliding_window import predict_volume

    if spec.validation.max_cases:
        cases = cases[: spec.validation.max_cases]
    num_classes = max(labels) + 1
    slice_axis = 2 if network.slice_axis is None else network.slice_axis

    def validate(model: torch.nn.Module, epoch: int) -> dict[str, Any]:
        totals: dict[str, list[float]] = {name: [] for name in labels.values()}
        example = None
        for case in cases:
            image = torch.from_numpy(np.ascontiguousarray(case.image(mmap=False)))
            with autocast(amp_dtype, device):
                logits = predict_volume(
                    model,
                    image,
                    network.patch_size,
                    num_classes,
                    mirror_axes=spec.validation.mirror_axes,
                    slice_axis=slice_axis,
                    overlap=spec.validation.overlap,
                    device=device,
                    batch_size=max(2, network.batch_size),
                )
            prediction = logits.argmax(0).numpy().astype(np.uint8)
            reference = np.asarray(case.label(mmap=False))
            skipped = set((unannotated or {}).get(case.case_id, ()))
            scored = {value: name for value, name in labels.items() if value not in skipped}
            for name, score in dice_per_label(prediction, reference, scored).items():
                totals[name].append(score)
            if example is None:
                example = (case.case_id, image[0].numpy(), reference, prediction)
        result: dict[str, Any] = {"dice": {name: float(np.mean(v)) for name, v in totals.items() if v}}
        if example is not None:
            result["figure"] = example_figure(*example, labels=labels)
        return result

    return validate


def example_figure(
    case_id: str, image: np.ndarray, reference: np.ndarray, prediction: np.ndarray, labels: dict[int, str]
):
    """A matplotlib figure of the slice (across axis 2) with most reference foreground: truth and
    prediction contours."""
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
    from medseg.data.cache import load_cache_plan, open_cache
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
    inputs = load_training_config(config_path, overrides)
    spec = inputs.spec
    device_kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_kind == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(
            "--device cuda was asked for but CUDA is not available (torch.cuda.is_available() is False)"
        )
    context = init_distributed(device_kind)
    if device_kind == "cpu":  # leave one core per data worker; oversubscribed threads slow training down a lot
        torch.set_num_threads(max(1, usable_cpus() // context.world_size - spec.data.workers))
    torch_device = torch.device(device_kind, context.local_rank) if device_kind == "cuda" else torch.device("cpu")
    run_dir = Path(run_dir or Path("runs") / Path(config_path).stem / f"fold_{fold}").expanduser().resolve()

    manifest = load_manifest(spec.data.manifest)
    if context.is_main:
        plan = prepare_cache(inputs, manifest, progress=progress)
    if context.enabled:
        torch.distributed.barrier()
        if not context.is_main:  # the plan rank 0 made (or found) and wrote into the cache
            plan = load_cache_plan(spec.data.cache)
    if fold == ALL_FOLDS:
        split = all_cases_split(manifest)
    else:
        split = fold_of(kfold_splits(manifest, spec.data.folds, spec.data.split_seed, spec.data.group_pattern), fold)
    computed_folds = given_splits(manifest) is None
    warn_groups = context.is_main and fold != ALL_FOLDS and computed_folds and spec.data.group_pattern is None
    if warn_groups and (alike := suspected_same_patient(manifest)):
        examples = "; ".join(", ".join(ids) for ids in alike[:3])
        log.warning(
            "%d cases look like several scans of one patient (%s%s) but have no group, so one patient may be in "
            "training and validation; set data.group_pattern (e.g. '^(patient\\d+)') or a group column in a CSV "
            "manifest",
            sum(map(len, alike)),
            examples,
            " ..." if len(alike) > 3 else "",
        )
    network = network_configuration(spec, plan)
    train_cases = open_cache(spec.data.cache, split["train"])
    val_cases = open_cache(spec.data.cache, split["val"]) if split["val"] else []
    check_patch_fits(network, train_cases)
    check_unannotated(manifest, train_cases + val_cases)
    labels = {int(v): name for name, v in manifest.labels.items() if int(v) != 0}
    in_channels = int(np.load(train_cases[0].image_path, mmap_mode="r").shape[0])
    record = TrainedRun(
        spec=spec,
        plan=plan,
        network=network,
        in_channels=in_channels,
        labels={str(k): v for k, v in labels.items()},
        mirror_axes=mirror_axes_from_augmentation(inputs.augmentation, network),
        fold=fold,
    )

    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_files(run_dir, record, split, manifest)
        channels = stage_channels(len(network.strides), network.base_channels, network.max_channels)
        log.info(
            "training a %s U-Net on %s: patch %s voxels, batch %s, %d input channel(s), feature maps %s; fold %s: "
            "%d training / %d validation cases%s (see network.json)",
            spec.data.configuration.upper(),
            torch_device.type,
            network.patch_size,
            network.batch_size,
            in_channels,
            channels,
            fold,
            len(split["train"]),
            len(split["val"]),
            " (every case trains; no validation, no checkpoint_best.pt)" if fold == ALL_FOLDS else "",
        )

    torch.manual_seed(spec.train.seed)
    model = build_unet(
        spec.model,
        in_channels,
        record.num_classes,
        network.strides,
        network.kernel_sizes,
        network.base_channels,
        network.max_channels,
    )
    loss = build_loss(spec.loss, record.num_classes)
    if spec.model.deep_supervision:
        loss = DeepSupervisionLoss(loss)
    trainer = Trainer(
        model,
        loss,
        spec.optim,
        spec.train,
        run_dir,
        torch_device,
        config_dict=record.to_checkpoint(),
        distributed=context,
        progress=progress,
    )
    if resume:
        trainer.resume()
    loader = make_patch_loader(
        spec.data.cache,
        configuration=network,
        case_ids=split["train"],
        augmentation=False if inputs.augmentation is None else inputs.augmentation,
        batches_per_epoch=spec.train.iterations_per_epoch,
        foreground_ratio=spec.data.foreground_ratio,
        class_balanced=spec.data.class_balanced,
        num_workers=spec.data.workers,
        seed=spec.train.seed,
        epoch=trainer.epoch,
        rank=context.rank,
        world_size=context.world_size,
    )

    unannotated = manifest.unannotated

    def batches(epoch: int):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            out = {"image": batch["image"], "label": batch["label"].long()}
            if unannotated:
                out["annotated"] = annotated_mask(batch["case_id"], unannotated, record.num_classes)
            yield out

    validator = (
        make_validator(spec, network, val_cases, labels, torch_device, trainer.amp_dtype, unannotated)
        if val_cases
        else None
    )
    trainer.fit(batches, validator)
    if context.enabled:
        torch.distributed.destroy_process_group()
    return run_dir


def annotated_mask(case_ids: Sequence[str], unannotated: Mapping[str, Sequence[int]], num_classes: int) -> torch.Tensor:
    """Bool ``[len(case_ids), num_classes]``: False where a case's label map leaves that class (label
    value) unannotated (:attr:`medseg.data.manifest.Manifest.unannotated`), True elsewhere."""
    mask = torch.ones(len(case_ids), num_classes, dtype=torch.bool)
    for row, case_id in enumerate(case_ids):
        mask[row, list(unannotated.get(case_id, ()))] = False
    return mask


def write_run_files(run_dir: Path, record: TrainedRun, split: dict[str, list[str]], manifest: Manifest) -> None:
    """config.yaml (as used), plan.json (the dataset's plan), network.json (the network actually trained:
    the plan's configuration with the config's overrides), splits.json and validation.csv (the fold's
    held-out cases as a manifest, ready for ``medseg predict --input`` and ``medseg evaluate --manifest``;
    not written, and an earlier one removed with any ``checkpoint_best.pt``, when nothing is held out:
    ``--fold all``)."""
    import yaml

    from medseg.data.manifest import write_csv_manifest
    from medseg.io import atomic_write_text

    spec, fold = record.spec, record.fold
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(spec), sort_keys=False))
    save_plan(record.plan, run_dir / "plan.json")
    network = {"configuration": spec.data.configuration, **to_dict(record.network)}
    atomic_write_text(run_dir / "network.json", json.dumps(network, indent=1) + "\n")
    atomic_write_text(run_dir / "splits.json", json.dumps({"fold": fold, **split}, indent=1) + "\n")
    held_out = [manifest.case(case_id) for case_id in split["val"]]
    if spec.data.group_pattern:  # write the groups the folds were made with
        from medseg.data.splits import case_group

        held_out = [
            case if case.group else replace(case, group=case_group(case.case_id, spec.data.group_pattern))
            for case in held_out
        ]
    if not held_out:  # files of an earlier fold in this folder would be taken for this run's
        (run_dir / "validation.csv").unlink(missing_ok=True)
        (run_dir / "checkpoint_best.pt").unlink(missing_ok=True)
    else:
        try:
            write_csv_manifest(
                run_dir / "validation.csv",
                held_out,
                manifest.labels,
                name=f"{manifest.name} fold {fold} validation",
                modality=manifest.channel_names.get(0),
            )
        except ConfigError as error:  # e.g. label names a CSV header cannot hold: train anyway
            log.warning("validation.csv not written (%s); the held-out cases are listed in splits.json", error)
