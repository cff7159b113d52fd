"""The run spec: a training config (``configs/*.yaml``) as typed sections, and what a checkpoint
records about its run.

A training config has the sections ``data`` (:class:`DataConfig`), ``model``
(:class:`UNetConfig`), ``loss`` (:class:`LossConfig`), ``optim`` (:class:`OptimConfig`),
``train`` (:class:`LoopConfig`), ``validation`` (:class:`ValidationConfig`) and ``postprocess``
(:class:`PostprocessConfig`, applied by ``medseg predict``); together they are a
:class:`RunSpec`. :func:`medseg.training.run.load_training_config` reads one (paths relative to
the file) and validates it with :func:`medseg.config.from_dict`: errors name the file and the
key (``train.yaml: optim.lr must be a number > 0, got 0``). Every default is written once, here.

A checkpoint stores a :class:`TrainedRun` (the run spec, the plan and the network trained) in
its plain form; :meth:`TrainedRun.from_checkpoint` reads it back typed, so a checkpoint alone
is enough to predict. Nothing here imports torch, so inference shares these sections without
importing training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from medseg.config.plan import Configuration, Plan
from medseg.config.validation import Section, bounded, fraction, from_dict, positive, required, setting, to_dict
from medseg.errors import ConfigError


def _regular_expression(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(str(error)) from None
    return True


def _label_values(default: tuple[int, ...] = ()) -> Any:
    return setting(default, "a list of label values > 0", lambda values: all(v > 0 for v in values))


@dataclass
class DataConfig(Section):
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
    patch_size: list[int] | None = setting(
        None, "null or a list of positive voxel counts", lambda v: v is None or min(v) > 0
    )
    batch_size: int | None = setting(None, "null or an integer >= 1", lambda v: v is None or v >= 1)
    foreground_ratio: float = bounded(1.0 / 3.0, 0.0, 1.0)
    class_balanced: bool = False
    workers: int = bounded(2, 0)
    preprocess_workers: int = bounded(1, 1)
    folds: int = 5
    split_seed: int = 0
    group_pattern: str | None = setting(None, "a regular expression", lambda v: v is None or _regular_expression(v))


@dataclass
class UNetConfig(Section):
    """The ``model`` section: network width and building blocks.

    The topology (strides and kernel sizes per stage) comes from the plan's configuration
    (see :mod:`medseg.data.planning`), so the network fits the patch size and voxel spacing.

    Attributes:
        base_channels: feature maps at full resolution (``null``: the plan's value).
        max_channels: cap on feature maps per stage; stage ``s`` has
            ``min(base_channels * 2**s, max_channels)`` (``null``: the plan's value).
        norm: ``"instance"`` (default, as nnU-Net) or ``"batch"``.
        deep_supervision: also return lower-resolution outputs during training.
        deep_supervision_heads: how many extra lower-resolution outputs.
        residual: residual blocks instead of plain double convolutions.
        dropout: dropout probability inside the blocks, in [0, 1).
    """

    base_channels: int | None = setting(None, "null or an integer >= 1", lambda v: v is None or v >= 1)
    max_channels: int | None = setting(None, "null or an integer >= 1", lambda v: v is None or v >= 1)
    norm: Literal["instance", "batch"] = "instance"
    deep_supervision: bool = False
    deep_supervision_heads: int = bounded(2, 1)
    residual: bool = False
    dropout: float = fraction(0.0)


AmpName = Literal["auto", "bf16", "fp16", "none"]
AMP_NAMES: tuple[str, ...] = get_args(AmpName)  # resolved by medseg.models.precision.autocast_dtype

LossName = Literal["dice", "dice_ce", "dice_focal", "tversky", "generalized_dice", "ce"]
LOSS_NAMES: tuple[str, ...] = get_args(LossName)


@dataclass
class LossConfig(Section):
    """The ``loss`` section.

    Attributes:
        name: one of ``dice``, ``dice_ce`` (default), ``dice_focal``, ``tversky``,
            ``generalized_dice``, ``ce`` (weighted cross-entropy).
        include_background: whether overlap terms score the background class.
        class_weights: per-class weights for cross-entropy (``ce``, ``dice_ce``), one per
            class including background; empty = uniform.
        tversky_alpha, tversky_beta: Tversky weights of false positives and false negatives.
        focal_gamma: focusing parameter of the focal term.
        batch_dice: the overlap terms pool every sample of the batch into one Dice per class
            (``true``, nnU-Net's choice for 2D) or average one Dice per sample and class (``false``: a small
            structure, such as the RV on an apical slice, weighs as much as a large one; a sample without the
            class adds a near-constant term with almost no gradient).
    """

    name: LossName = "dice_ce"
    include_background: bool = False
    class_weights: tuple[float, ...] = setting(
        (), "a list of weights >= 0 (one per class)", lambda v: min(v, default=0) >= 0
    )
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    focal_gamma: float = 2.0
    batch_dice: bool = True


@dataclass
class OptimConfig(Section):
    """The ``optim`` section. Default: SGD with Nesterov momentum and polynomial decay (nnU-Net)."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = positive(0.01)
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    schedule: Literal["poly", "cosine", "constant"] = "poly"
    poly_exponent: float = 0.9
    warmup_epochs: int = bounded(0, 0)


@dataclass
class LoopConfig(Section):
    """The ``train`` section: how long, how big, how precise.

    Attributes:
        epochs: epochs to train (``--epochs`` overrides; more than a finished run extends it).
        iterations_per_epoch: optimiser steps per epoch (per rank).
        amp: mixed precision (:mod:`medseg.models.precision`): ``auto`` (CUDA: bf16 where supported,
            else fp16; CPU: bf16 where the processor has native bf16, else float32), ``bf16``,
            ``fp16`` (CUDA only) or ``none``.
        compile: wrap the model in ``torch.compile``.
        grad_clip: maximum gradient norm (0 disables clipping).
        val_every: validate every this many epochs (and after the last).
        ema_alpha: per-epoch smoothing of validation mean Dice for choosing the best
            checkpoint (nnU-Net: 0.9); with validation every ``val_every`` epochs each update is
            ``ema = a * ema + (1 - a) * dice`` with ``a = ema_alpha ** val_every``, so sparse
            validation does not make the average lag behind.
        seed: seeds the model initialisation, sampling and augmentation.
    """

    epochs: int = bounded(50, 1)
    iterations_per_epoch: int = bounded(50, 1)
    amp: AmpName = "auto"
    compile: bool = False
    grad_clip: float = 12.0
    val_every: int = bounded(5, 1)
    ema_alpha: float = fraction(0.9)
    seed: int = 0


@dataclass
class ValidationConfig(Section):
    """The ``validation`` section: sliding-window settings for validation during training
    (``overlap`` is also ``medseg predict``'s default)."""

    overlap: float = fraction(0.5)
    max_cases: int = bounded(0, 0)  # 0 = every validation case
    mirror_axes: tuple[int, ...] = setting(
        (), "a list of spatial axes among 0, 1, 2", lambda v: all(0 <= a <= 2 for a in v)
    )


@dataclass
class PostprocessConfig(Section):
    """The ``postprocess`` section, applied by ``medseg predict`` (:mod:`medseg.inference.postprocess`)
    in this order: small-component removal, largest component, hole filling.

    Attributes:
        largest_component: labels (values) for which only the largest connected component is kept.
        fill_holes: labels whose enclosed background cavities are filled (3D, face connectivity).
        min_component_ml: remove components smaller than this many millilitres (0 = off), all labels.
    """

    largest_component: tuple[int, ...] = _label_values()
    fill_holes: tuple[int, ...] = _label_values()
    min_component_ml: float = bounded(0.0, 0.0)


@dataclass
class RunSpec(Section):
    """A whole training config (one dataclass per section)."""

    data: DataConfig
    model: UNetConfig = field(default_factory=UNetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)


#: Checkpoint keys of the fields whose stored name differs (kept from the first checkpoint format).
_CHECKPOINT_KEYS = {"spec": "config", "network": "settings"}


@dataclass(kw_only=True)
class TrainedRun(Section):
    """What a checkpoint records about its run besides the weights.

    Attributes:
        spec: the run spec as used (overrides applied, data paths absolute).
        plan: the dataset plan (its ``preprocessing`` is what prediction applies).
        network: the configuration trained (the plan's, with the spec's overrides).
        in_channels: image channels the network takes.
        labels: foreground label value (as a string, the stored form) -> name.
        mirror_axes: axes the training augmentation flipped (what test-time mirroring may use).
        fold: the cross-validation fold trained, or ``"all"`` (every case, no validation).
    """

    spec: RunSpec
    plan: Plan
    network: Configuration
    in_channels: int = required("an integer >= 1", lambda value: value >= 1)
    labels: dict[str, str]
    mirror_axes: list[int] = field(default_factory=list)
    fold: int | Literal["all"] = 0

    @property
    def label_names(self) -> dict[int, str]:
        """Foreground label value -> name."""
        return {int(value): name for value, name in self.labels.items()}

    @property
    def num_classes(self) -> int:
        """Network outputs: the largest label value + 1 (background included)."""
        return max(self.label_names) + 1

    def to_checkpoint(self) -> dict[str, Any]:
        """The plain form a checkpoint stores (keys ``config``, ``plan``, ``settings``, ...)."""
        return {_CHECKPOINT_KEYS.get(name, name): value for name, value in to_dict(self).items()}

    @classmethod
    def from_checkpoint(cls, saved: Any, source: str) -> TrainedRun:
        """Read :meth:`to_checkpoint`'s form back (also from checkpoints of earlier medseg versions,
        which store the same keys); ``source`` (the checkpoint's path) names the file in errors."""
        if not isinstance(saved, dict) or "plan" not in saved:
            raise ConfigError(f"{source}: not a checkpoint written by `medseg train` (no plan inside)")
        stored = {stored: name for name, stored in _CHECKPOINT_KEYS.items()}
        return from_dict(cls, {stored.get(key, key): value for key, value in saved.items()}, source=source)
