"""Shared plumbing for the classical methods: inputs and outputs (hand-over to SimpleITK / ITK:
:mod:`medseg.io.itk_bridge`).

Every method accepts a :class:`medseg.io.Volume`, or a bare 3D NumPy array together with
``spacing_mm`` (then the grid is axis-aligned, origin 0, RAS+: ``affine = diag(spacing, 1)``),
and returns a :class:`~medseg.io.Volume` on exactly the same grid (same shape, same affine).
Arrays are indexed ``[i, j, k]`` as everywhere in medseg.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.errors import ConfigError, GeometryError
from medseg.io import Volume, label_dtype

ImageInput = Volume | np.ndarray


def as_volume(image: ImageInput, spacing_mm: Sequence[float] | None = None, method: str = "segment") -> Volume:
    """The input as a :class:`Volume`.

    Args:
        image: a Volume (``spacing_mm`` must then be ``None``), or a 3D array indexed ``[i, j, k]``.
        spacing_mm: voxel size in mm along ``(i, j, k)`` for a bare array (default 1 mm).
        method: name used in error messages.

    Raises:
        GeometryError: not 3D, empty, or a spacing that is not 3 positive numbers.
        ConfigError: ``spacing_mm`` given together with a Volume (the Volume's affine wins, so
            a second spacing would be silently ignored).
    """
    if isinstance(image, Volume):
        if spacing_mm is not None:
            raise ConfigError(f"{method}: spacing_mm is taken from the Volume's affine; do not pass it as well")
        volume = image
    else:
        array = np.asarray(image)
        if array.ndim != 3:
            raise GeometryError(f"{method}: needs a 3D array indexed [i, j, k], got shape {array.shape}")
        spacing = np.ones(3) if spacing_mm is None else np.asarray(spacing_mm, dtype=np.float64).ravel()
        if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise GeometryError(f"{method}: spacing_mm must be three positive numbers (mm), got {spacing_mm!r}")
        volume = Volume(array, np.diag([*spacing, 1.0]))
    if volume.array.size == 0:
        raise GeometryError(f"{volume.name}: {method} needs a non-empty volume, got shape {volume.shape}")
    if not np.issubdtype(volume.array.dtype, np.number) and volume.array.dtype != np.bool_:
        raise GeometryError(f"{volume.name}: {method} needs numeric voxels, got dtype {volume.array.dtype}")
    return volume


def finite_values(volume: Volume, method: str) -> np.ndarray:
    """The voxel array itself (no copy); raises :class:`GeometryError` if any value is NaN or infinite."""
    array = volume.array
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise GeometryError(f"{volume.name}: {method} needs finite voxel values; the volume has NaN or infinity")
    return array


def label_output(volume: Volume, labels: np.ndarray, method: str, **meta: Any) -> Volume:
    """A label-map Volume (uint8, or uint16 above 255) on ``volume``'s grid, ``meta['kind'] = 'label'``."""
    labels = np.asarray(labels)
    return Volume(
        np.ascontiguousarray(labels.astype(label_dtype(labels), copy=False)),
        volume.affine.copy(),
        volume.source,
        {"kind": "label", "segmentation": {"method": method, **meta}},
    )


def image_output(volume: Volume, values: np.ndarray, method: str, **meta: Any) -> Volume:
    """A float32 image Volume on ``volume``'s grid (``meta['kind'] = 'image'``)."""
    return Volume(
        np.ascontiguousarray(values, dtype=np.float32),
        volume.affine.copy(),
        volume.source,
        {"kind": "image", "segmentation": {"method": method, **meta}},
    )


def positive_int(value: Any, name: str, method: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` or a :class:`ConfigError` naming the option."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{method}: {name} must be a whole number, got {value!r}") from None
    if number != value and not (isinstance(value, float) and float(number) == value):
        raise ConfigError(f"{method}: {name} must be a whole number, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{method}: {name} must be at least {minimum}, got {value!r}")
    return number


def positive_float(value: Any, name: str, method: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``) or a :class:`ConfigError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{method}: {name} must be a number, got {value!r}") from None
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{method}: {name} must be a finite number {bound}, got {value!r}")
    return number
