"""Shared plumbing for the classical methods: inputs, outputs, and hand-over to SimpleITK / ITK.

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
from medseg.io.volume import itk_geometry_from_affine

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


def to_sitk(array: np.ndarray, affine: np.ndarray):
    """A SimpleITK image of ``array`` (``[i, j, k]``) with the grid's exact geometry (LPS+), without copying axes.

    SimpleITK reads a NumPy array as ``[z, y, x]``, so the image's index ``(x, y, z)`` is
    medseg's ``(k, j, i)``: reversed. Spacing and direction columns are reversed to match, so
    every voxel keeps its world position. Pass per-axis parameters (kernel radii, seeds) in
    ``(k, j, i)`` order (:func:`itk_order`); :func:`from_sitk` gives ``[i, j, k]`` back.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    spacing, origin, direction = _reversed_geometry(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def from_sitk(image) -> np.ndarray:
    """The voxels of a SimpleITK image made by :func:`to_sitk` as an array indexed ``[i, j, k]``."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)


#: pixel types the ``itk`` package wraps for the region-growing filters; others go in as float32
_ITK_PIXEL_TYPES = (np.int16, np.uint8, np.uint16, np.float32, np.float64)


def to_itk(array: np.ndarray, affine: np.ndarray):
    """An ITK (``itk`` package) image of ``array`` with the grid's exact geometry (LPS+), axes not copied.

    As for :func:`to_sitk`, ITK's index ``(x, y, z)`` is medseg's ``(k, j, i)``; spacing and
    direction are reversed to match. int16, uint8, uint16, float32 and float64 keep their
    type (ITK Python wraps those); anything else becomes float32.
    """
    import itk

    image = itk.image_from_array(np.ascontiguousarray(itk_pixels(array)))
    spacing, origin, direction = _reversed_geometry(affine)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection(itk.matrix_from_array(np.asarray(direction, dtype=np.float64).reshape(3, 3)))
    return image


def itk_pixels(array: np.ndarray) -> np.ndarray:
    """``array`` in a pixel type ITK Python wraps: int16, uint8, uint16, float32, float64 as they are, else float32."""
    values = np.asarray(array)
    return values if values.dtype in _ITK_PIXEL_TYPES else values.astype(np.float32)


def from_itk(image) -> np.ndarray:
    """The voxels of an ITK image made by :func:`to_itk` as an array indexed ``[i, j, k]``."""
    import itk

    return np.asarray(itk.array_from_image(image))


def itk_order(values: Sequence) -> list:
    """Per-axis values ``(i, j, k)`` (an index, radii) in the ``(k, j, i)`` order of :func:`to_sitk`/:func:`to_itk` images."""
    return list(values)[::-1]


def _reversed_geometry(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """LPS+ ``(spacing, origin, direction_row_major)`` for an image whose axes are ``(k, j, i)``."""
    spacing, origin, direction = itk_geometry_from_affine(affine)
    columns = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, ::-1]
    return tuple(spacing[::-1]), origin, tuple(columns.ravel())


def world_to_index(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Fractional voxel indices ``(i, j, k)`` of RAS+ world points (mm), shape ``(n, 3)`` in and out."""
    points = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    inverse = np.linalg.inv(affine)
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def index_to_world(affine: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """RAS+ world positions (mm) of voxel indices ``(i, j, k)``, shape ``(n, 3)`` in and out."""
    indices = np.atleast_2d(np.asarray(indices, dtype=np.float64))
    return indices @ affine[:3, :3].T + affine[:3, 3]


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
