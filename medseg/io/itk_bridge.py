"""Hand-over of medseg's voxel grids to SimpleITK and ITK filters, every voxel kept at its world position.

medseg indexes arrays ``[i, j, k]`` with a RAS+ affine (mm); SimpleITK and ITK index images ``(x, y, z)`` in
LPS+ and read NumPy arrays as ``[z, y, x]``. :func:`to_sitk` / :func:`to_itk` hand an array over without
copying axes, so the image's index ``(x, y, z)`` is medseg's ``(k, j, i)``; spacing and direction are reversed
to match. Per-axis parameters (kernel radii, seed indices) go in through :func:`itk_order`; :func:`from_sitk` /
:func:`from_itk` give ``[i, j, k]`` arrays back. :func:`world_to_index` and :func:`index_to_world` convert
RAS+ millimetres and voxel indices with an affine. Empty arrays are handed over as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.io.volume import itk_geometry_from_affine


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
    """Per-axis values ``(i, j, k)`` (an index, radii) in the ``(k, j, i)`` order of
    :func:`to_sitk` / :func:`to_itk` images."""
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
