"""The dataset plan (``plan.json``): one typed format for ``medseg plan``, the cache and training.

:func:`medseg.data.planning.make_plan` derives a :class:`Plan` from a dataset fingerprint;
:func:`save_plan` writes it (readable JSON, atomically) and :func:`load_plan` reads it back,
validated by :func:`medseg.config.from_dict` (errors name the file and the key path, e.g.
``plan.json: preprocessing.target_spacing_mm must be three spacings > 0 in mm, got [1, 0, 1]``).
Every writer (``medseg plan``, the cache's ``plan.json``, a run folder's ``plan.json``) goes
through :func:`save_plan`, so there is one format.

A plan has:

* ``dataset``: name, manifest, labels, channels (:class:`DatasetInfo`);
* ``preprocessing``: what every case goes through, shared by the 3D and 2D configurations
  (:class:`Preprocessing`; the transforms of :mod:`medseg.data.transforms` read it);
* ``configurations``: ``"3d"`` and ``"2d"`` network :class:`Configuration` s (patch, batch,
  U-Net topology);
* ``notes`` (why the planner chose what it chose) and the ``fingerprint`` it was made from
  (plain JSON, see :mod:`medseg.data.fingerprint`).

Spacings (mm), shapes and patch sizes (voxels) are in the plan's orientation's axis order.
The network defaults (:data:`DEFAULT_BASE_CHANNELS`, :data:`DEFAULT_MAX_CHANNELS`) and the
anisotropy threshold live here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from medseg.common.jsonio import readable_json
from medseg.config.validation import Section, bounded, from_dict, optional, required, setting, to_dict
from medseg.errors import ConfigError, InvalidArgumentError

PLAN_VERSION = 1
#: U-Net feature maps at full resolution, and their cap (nnU-Net's 32 / 320).
DEFAULT_BASE_CHANNELS = 32
DEFAULT_MAX_CHANNELS = 320
#: max/min spacing ratio above which the lowest-resolution axis is resampled separately.
ANISOTROPY_THRESHOLD = 3.0

ImageInterpolation = Literal["linear", "bspline", "nearest"]
LabelInterpolation = Literal["nearest", "linear"]
IMAGE_MODES: tuple[str, ...] = get_args(ImageInterpolation)
LABEL_MODES: tuple[str, ...] = get_args(LabelInterpolation)
CropMode = Literal["auto", "body", "nonzero", "none"]
SchemeName = Literal["ct", "window", "zscore", "percentile", "none"]
SCHEMES: tuple[str, ...] = get_args(SchemeName)

#: Parameters each normalisation scheme takes, and those it needs.
_SCHEME_PARAMETERS: dict[str, tuple[set[str], set[str]]] = {
    "ct": ({"clip", "mean", "std"}, {"clip", "mean", "std"}),
    "window": ({"clip"}, {"clip"}),
    "zscore": ({"use_nonzero_mask"}, set()),
    "percentile": ({"percentiles"}, set()),
    "none": (set(), set()),
}


def is_orientation_code(code: str) -> bool:
    """Whether ``code`` names three axes, one of R/L, A/P, S/I each (any case), e.g. ``"RAS"``."""
    return len(code) == 3 and sorted("RLAPSI".find(c) // 2 for c in code.upper()) == [0, 1, 2]


def _low_below_high(pair: list[float]) -> bool:
    return len(pair) == 2 and pair[0] < pair[1]


@dataclass(kw_only=True)
class NormalizationScheme(Section):
    """How one image channel is normalised (see :mod:`medseg.data.intensity` for the maths).

    Attributes:
        scheme: ``ct`` (clip to ``clip`` HU, z-score with the dataset's ``mean``/``std``),
            ``window`` (clip to ``clip``, map to [0, 1]), ``zscore`` (per case; inside the
            non-zero mask with ``use_nonzero_mask``), ``percentile`` (per case clip to the
            ``percentiles``, default 0.5 / 99.5, map to [0, 1]) or ``none``.
        channel, channel_name: which channel the planner made it for (informative).
    """

    channel: int | None = optional()
    channel_name: str | None = optional()
    scheme: SchemeName
    clip: list[float] | None = optional("[low, high] with low < high", _low_below_high)
    mean: float | None = optional()
    std: float | None = optional("a number > 0", lambda value: value > 0)
    use_nonzero_mask: bool | None = optional()
    percentiles: list[float] | None = optional(
        "[low, high] percentiles with 0 <= low < high <= 100",
        lambda pair: _low_below_high(pair) and 0 <= pair[0] and pair[1] <= 100,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        allowed, needed = _SCHEME_PARAMETERS[self.scheme]
        given = {
            name
            for name in ("clip", "mean", "std", "use_nonzero_mask", "percentiles")
            if getattr(self, name) is not None
        }
        if extra := sorted(given - allowed):
            takes = ", ".join(sorted(allowed)) or "no parameters"
            raise InvalidArgumentError(f"{extra[0]} is not a parameter of scheme {self.scheme!r} (it takes {takes})")
        if missing := sorted(needed - given):
            raise InvalidArgumentError(
                f"{missing[0]} is needed by scheme {self.scheme!r} (clip: [low, high]; mean, std: from the fingerprint)"
            )


@dataclass(kw_only=True)
class Preprocessing(Section):
    """The plan's ``preprocessing`` section: what every case goes through, in this order.

    Attributes:
        orientation: axis codes to reorient to (``RAS``), or ``none`` for the files' voxel order.
        target_spacing_mm: voxel size after resampling (mm, in the orientation's axis order).
        anisotropic: whether max/min target spacing exceeds ``anisotropy_threshold`` (informative).
        anisotropy_threshold: above this max/min spacing ratio the coarsest axis is resampled
            separately, with nearest neighbour ("separate z", as nnU-Net).
        separate_z_axis: the axis resampled separately for anisotropic data, else ``None``.
        image_interpolation, label_interpolation: resampling of images and label maps.
        keep_all_classes: a class lost by resampling a label map is put back at one voxel.
        crop: ``auto`` (body for CT, non-zero otherwise), ``body``, ``nonzero`` or ``none``;
            ``crop_margin_voxels`` are kept around the box.
        ct: whether the channels are CT (read as Hounsfield units); ``None`` decides from the data.
        ct_channels: one such flag per channel, written only when the channels differ (CT + PET).
        normalization: one :class:`NormalizationScheme` per image channel (one for all also works).
        cache_dtype: how the cache stores images; ``class_locations_per_class``: voxel
            coordinates stored per class for foreground oversampling.
    """

    orientation: str = setting(
        "RAS",
        "an orientation code such as 'RAS' (three of R/L, A/P, S/I) or 'none'",
        lambda code: code.lower() == "none" or is_orientation_code(code),
    )
    target_spacing_mm: list[float] = required("three spacings > 0 in mm", lambda v: len(v) == 3 and min(v) > 0)
    anisotropic: bool | None = optional()
    anisotropy_threshold: float = bounded(ANISOTROPY_THRESHOLD, 1.0)
    separate_z_axis: int | None = setting(None, "null or a spatial axis 0, 1, 2", lambda v: v is None or 0 <= v <= 2)
    image_interpolation: ImageInterpolation = "linear"
    label_interpolation: LabelInterpolation = "nearest"
    keep_all_classes: bool = True
    crop: CropMode = "auto"
    crop_margin_voxels: int = bounded(2, 0)
    ct: bool | None = optional()
    ct_channels: list[bool] | None = optional(
        "a non-empty list of true/false, one per image channel", lambda v: len(v) > 0
    )
    normalization: list[NormalizationScheme]
    cache_dtype: Literal["float32", "float16"] = "float32"
    class_locations_per_class: int = bounded(2000, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.normalization:
            raise InvalidArgumentError("normalization lists no scheme; give one per image channel")
        if (
            self.ct_channels is not None
            and len(self.normalization) > 1
            and len(self.ct_channels) != len(self.normalization)
        ):
            raise InvalidArgumentError(
                f"ct_channels has {len(self.ct_channels)} entries but normalization has "
                f"{len(self.normalization)} channels"
            )

    def load_ct(self) -> bool | None | list[bool]:
        """What the plan says about CT, as :class:`~medseg.data.transforms.LoadVolumed` takes it:
        ``ct_channels`` (one flag per channel) when given, else ``ct`` for every channel (older
        plans), else ``None`` (decide from the data)."""
        if self.ct_channels is not None:
            return list(self.ct_channels)
        return self.ct


@dataclass(kw_only=True)
class Configuration(Section):
    """One network configuration of a plan (``configurations["3d"]`` or ``["2d"]``), and the
    network a run actually trained (the plan's, with the run spec's overrides).

    Attributes:
        patch_size: training patch (voxels; 3 axes, or the 2 in-plane axes for ``2d``).
        strides, kernel_sizes: per stage, per axis (MONAI ``DynUNet``; stage 0 has stride 1).
        batch_size: patches per step (per rank).
        spacing_mm: voxel size of the patch axes (mm).
        base_channels, max_channels: feature maps at full resolution and their cap.
        slice_axis, in_plane_axes: ``2d`` only: the axis slices are taken across and the other two.
        estimated_memory_gib, median_shape_voxels: what the planner estimated (informative).
    """

    patch_size: list[int] = required(
        "a list of 2 or 3 positive voxel counts", lambda v: len(v) in (2, 3) and min(v) > 0
    )
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    estimated_memory_gib: float | None = optional()
    batch_size: int = required("an integer >= 1", lambda value: value >= 1)
    slice_axis: int | None = optional("a spatial axis 0, 1, 2", lambda axis: 0 <= axis <= 2)
    in_plane_axes: list[int] | None = optional()
    spacing_mm: list[float]
    median_shape_voxels: list[int] | None = optional()
    base_channels: int = bounded(DEFAULT_BASE_CHANNELS, 1)
    max_channels: int = bounded(DEFAULT_MAX_CHANNELS, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.strides) != len(self.kernel_sizes):
            raise InvalidArgumentError(
                f"strides has {len(self.strides)} stages but kernel_sizes has {len(self.kernel_sizes)}"
            )


@dataclass(kw_only=True)
class DatasetInfo(Section):
    """The plan's ``dataset`` section: what the plan was made from (label and channel names by value/index)."""

    name: str = ""
    manifest: str = ""
    n_cases: int = 0
    modality: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    channel_names: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class Plan(Section):
    """A dataset plan (see the module docstring)."""

    medseg_plan_version: int = PLAN_VERSION
    dataset: DatasetInfo = field(default_factory=DatasetInfo)
    preprocessing: Preprocessing
    configurations: dict[str, Configuration] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def configuration(self, name: str) -> Configuration:
        """The configuration ``name`` (``"3d"``/``"2d"``); :class:`ConfigError` when the plan has none."""
        if name not in self.configurations:
            have = ", ".join(self.configurations) or "none"
            raise ConfigError(
                f"the plan of {self.dataset.name or 'this dataset'} has no configuration {name!r} (have: {have})"
            )
        return self.configurations[name]


def load_plan(plan: str | Path | dict[str, Any] | Plan) -> Plan:
    """A :class:`Plan` from a ``plan.json`` path or its plain form (a :class:`Plan` is returned as
    it is). Raises :class:`ConfigError` naming the file and the key for a missing, unreadable or
    invalid plan."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, dict):
        return from_dict(Plan, plan, source="<plan>")
    path = Path(plan).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: plan file not found (make one with `medseg plan`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid plan JSON ({exc})") from None
    return from_dict(Plan, data, source=str(path))


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan`` to ``path`` as readable JSON (:func:`~medseg.common.jsonio.readable_json`),
    atomically (:func:`medseg.io.atomic_write_text`); returns the path."""
    from medseg.io import atomic_write_text

    return atomic_write_text(Path(path).expanduser(), readable_json(to_dict(plan)) + "\n")


def preprocessing_hash(plan: Plan | Preprocessing) -> str:
    """Short hash of a plan's ``preprocessing`` section (what decides a cached case's content)."""
    preprocessing = plan.preprocessing if isinstance(plan, Plan) else plan
    text = json.dumps(to_dict(preprocessing), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
