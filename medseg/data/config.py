"""YAML configuration of preprocessing (planning overrides) and augmentation, as dataclasses.

:func:`load_preprocessing_config` and :func:`load_augmentation_config` validate a YAML file or
a dict with :func:`medseg.config.from_dict`: an unknown key (with a "did you mean" hint), a
wrong type or a value out of range raises :class:`~medseg.errors.ConfigError` naming the file
and the dotted key, e.g. ``configs/aug.yaml: intensity.gamma.p must be a probability in
[0, 1], got 1.5``. Missing keys take the defaults below, which ``configs/augmentation_default.yaml``
and ``configs/preprocessing_default.yaml`` spell out. Ranges are ``(min, max)`` tuples drawn
uniformly; probabilities ``p`` are per patch; spacings in mm and sizes in voxels, in the
plan's axis order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from medseg.config import Section, bounded, from_dict, load_yaml, setting, span
from medseg.config.plan import ANISOTROPY_THRESHOLD, DEFAULT_BASE_CHANNELS, DEFAULT_MAX_CHANNELS, is_orientation_code

T = TypeVar("T")


def probability(default: float) -> Any:
    """A :func:`~medseg.config.setting` for a probability in [0, 1]."""
    return bounded(default, 0.0, 1.0, "a probability")


def axis_list(default: tuple[int, ...]) -> Any:
    """A setting for a list of spatial axes (0, 1, 2)."""
    return setting(default, "a list of spatial axes among 0, 1, 2", lambda v: all(0 <= a <= 2 for a in v))


# -- augmentation (medseg.data.augment) -------------------------------------------------------
@dataclass
class Rotation(Section):  # about each axis (3D); in-plane only for 2D and anisotropic patches
    p: float = probability(0.2)
    degrees: tuple[float, float] = span((-30.0, 30.0), -180, 180)


@dataclass
class Scale(Section):  # size of the sampled region (> 1: more context)
    p: float = probability(0.2)
    range: tuple[float, float] = span((0.7, 1.4), 0.05, 20)


@dataclass
class Elastic(Section):
    p: float = probability(0.0)
    magnitude_voxels: tuple[float, float] = span((0.0, 4.0), 0, 100)
    sigma_voxels: tuple[float, float] = span((8.0, 12.0), 1, 100)


@dataclass
class Flip(Section):  # p per axis
    p: float = probability(0.5)
    axes: tuple[int, ...] = axis_list((0, 1, 2))


@dataclass
class Rot90(Section):  # exact 90-degree rotations in the plane of `axes`
    p: float = probability(0.0)
    axes: tuple[int, ...] = axis_list((0, 1))


@dataclass
class SpatialAugmentation(Section):
    rotation: Rotation = field(default_factory=Rotation)
    scale: Scale = field(default_factory=Scale)
    elastic: Elastic = field(default_factory=Elastic)
    flip: Flip = field(default_factory=Flip)
    rot90: Rot90 = field(default_factory=Rot90)


@dataclass
class GaussianNoise(Section):
    p: float = probability(0.1)
    variance: tuple[float, float] = span((0.0, 0.1), 0)


@dataclass
class GaussianBlur(Section):
    p: float = probability(0.2)
    sigma: tuple[float, float] = span((0.5, 1.0), 0, 10)  # voxels


@dataclass
class Brightness(Section):
    p: float = probability(0.15)
    multiplier: tuple[float, float] = span((0.75, 1.25), 0)


@dataclass
class Contrast(Section):
    p: float = probability(0.15)
    factor: tuple[float, float] = span((0.75, 1.25), 0)


@dataclass
class LowResolution(Section):
    p: float = probability(0.25)
    zoom: tuple[float, float] = span((0.5, 1.0), 0.05, 1)


@dataclass
class Gamma(Section):
    p: float = probability(0.3)
    gamma: tuple[float, float] = span((0.7, 1.5), 0.01, 10)
    p_invert: float = probability(0.1)
    retain_stats: bool = True


@dataclass
class IntensityAugmentation(Section):
    gaussian_noise: GaussianNoise = field(default_factory=GaussianNoise)
    gaussian_blur: GaussianBlur = field(default_factory=GaussianBlur)
    brightness: Brightness = field(default_factory=Brightness)
    contrast: Contrast = field(default_factory=Contrast)
    low_resolution: LowResolution = field(default_factory=LowResolution)
    gamma: Gamma = field(default_factory=Gamma)


@dataclass
class AugmentationConfig(Section):
    """Patch augmentation settings (see ``configs/augmentation_default.yaml``)."""

    spatial: SpatialAugmentation = field(default_factory=SpatialAugmentation)
    intensity: IntensityAugmentation = field(default_factory=IntensityAugmentation)


# -- preprocessing (medseg.data.planning) -----------------------------------------------------
def _is_orientation(code: str) -> bool:
    """``auto``, ``none`` or three of R/L, A/P, S/I, one per axis (any case)."""
    return code.lower() in ("auto", "none") or is_orientation_code(code)


def _voxels(n: int) -> Any:
    return setting(None, f"null or {n} positive voxel counts", lambda v: v is None or min(v) > 0)


@dataclass
class NetworkSettings(Section):
    base_channels: int = bounded(DEFAULT_BASE_CHANNELS, 1)
    max_channels: int = bounded(DEFAULT_MAX_CHANNELS, 1)
    gpu_memory_gib: float = bounded(8.0, 0.1)  # budget the patch size is fitted to
    batch_size_3d: int = bounded(2, 1)
    max_batch_size_2d: int = bounded(64, 1)
    patch_size_3d: tuple[int, int, int] | None = _voxels(3)  # None: fitted to the budget
    patch_size_2d: tuple[int, int] | None = _voxels(2)


@dataclass
class PreprocessingConfig(Section):
    """Planning settings (see ``configs/preprocessing_default.yaml``)."""

    orientation: str = setting(
        "auto", "'auto', 'none' or an orientation code such as 'RAS' (three of R/L, A/P, S/I)", _is_orientation
    )
    target_spacing_mm: Literal["auto"] | tuple[float, float, float] = setting(
        "auto", "'auto' or three positive spacings in mm [x, y, z]", lambda v: v == "auto" or min(v) > 0
    )
    anisotropy_threshold: float = bounded(ANISOTROPY_THRESHOLD, 1.0)
    image_interpolation: Literal["linear", "bspline"] = "linear"
    label_interpolation: Literal["nearest", "linear"] = "nearest"
    keep_all_classes: bool = True
    crop: Literal["auto", "body", "nonzero", "none"] = "auto"
    crop_margin_voxels: int = bounded(2, 0)
    normalization: Literal["auto", "ct", "zscore", "percentile", "none"] = "auto"
    ct_clip: Literal["percentiles"] | tuple[float, float] = setting(
        "percentiles",
        "'percentiles' or a HU window [low, high] with low <= high",
        lambda v: v == "percentiles" or v[0] <= v[1],
    )
    zscore_nonzero_mask: Literal["auto", "always", "never"] = "auto"
    cache_dtype: Literal["float32", "float16"] = "float32"
    class_locations_per_class: int = bounded(2000, 1)
    network: NetworkSettings = field(default_factory=NetworkSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        lower = self.orientation.lower()
        self.orientation = lower if lower in ("auto", "none") else self.orientation.upper()


# -- loading ----------------------------------------------------------------------------------
def _load(cls: type[T], config: Any, section: str) -> T:
    """Validate ``config`` (a YAML path, a dict or ``None``) into ``cls``, unwrapping a lone
    top-level ``section:`` key; an instance (checked when it was built) is returned as it is."""
    source = f"<{section} config>"
    if isinstance(config, cls):
        return config
    if isinstance(config, (str, Path)):
        source = str(Path(config).expanduser())
        config = load_yaml(source)
    if isinstance(config, Mapping) and set(config) == {section}:
        config = config[section]
    return from_dict(cls, config, source=source)


def load_augmentation_config(
    config: str | Path | Mapping[str, Any] | AugmentationConfig | None = None,
) -> AugmentationConfig:
    """Augmentation settings from a YAML file, a dict (e.g. the ``augmentation`` section of a
    training config) or ``None`` (defaults). A top-level ``augmentation:`` key is unwrapped."""
    return _load(AugmentationConfig, config, "augmentation")


def load_preprocessing_config(
    config: str | Path | Mapping[str, Any] | PreprocessingConfig | None = None,
) -> PreprocessingConfig:
    """Planning / preprocessing settings from a YAML file, a dict or ``None`` (defaults).
    A top-level ``preprocessing:`` key is unwrapped."""
    return _load(PreprocessingConfig, config, "preprocessing")
