"""Exact voxel-grid operations: reorientation (axis permutation and flips), cropping, padding.

All functions work on the last three axes of an array, so they apply equally to a volume
``(X, Y, Z)`` and to channel-first data ``(C, X, Y, Z)``; index order is the volume's
``[i, j, k]``. Each forward operation has an exact inverse here, and returns the 4 x 4 matrix
that maps an output voxel index to the input voxel index, so the new affine is
``affine_in @ index_map`` (RAS+ mm). Pure NumPy; no interpolation happens in this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.errors import GeometryError, InvalidArgumentError

_WORLD_AXIS = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def is_tensor(array) -> bool:
    """Whether ``array`` is a torch tensor (checked without importing torch)."""
    return type(array).__module__.startswith("torch")


def check_axcodes(code: str) -> str:
    """Validate a three-letter orientation code such as ``"RAS"`` or ``"LPS"`` (upper-cased)."""
    code = str(code).upper()
    if len(code) != 3 or any(c not in _WORLD_AXIS for c in code) or len({_WORLD_AXIS[c][0] for c in code}) != 3:
        raise InvalidArgumentError(
            f"orientation: {code!r} is not an orientation code (three of R/L, A/P, S/I, e.g. 'RAS')"
        )
    return code


def orientation_plan(affine: np.ndarray, target: str = "RAS") -> tuple[list[int], list[bool]]:
    """``(permutation, flips)`` taking an array with ``affine`` to the ``target`` axis codes.

    Output axis ``j`` is input axis ``permutation[j]``, reversed when ``flips[j]``. Oblique
    grids are mapped to the closest target axes (nibabel's ``io_orientation``); they stay
    oblique, as no interpolation is done.
    """
    import nibabel.orientations as nio

    target = check_axcodes(target)
    ornt = nio.io_orientation(np.asarray(affine, dtype=np.float64))  # per input axis: world axis, sign
    permutation, flips = [], []
    for letter in target:
        world_axis, sign = _WORLD_AXIS[letter]
        matches = np.flatnonzero(ornt[:, 0] == world_axis)
        if matches.size != 1:
            raise GeometryError(f"cannot determine orientation of affine {np.round(affine, 4).tolist()}")
        axis = int(matches[0])
        permutation.append(axis)
        flips.append(bool(ornt[axis, 1] != sign))
    return permutation, flips


def reorient_index_map(shape_in: Sequence[int], permutation: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    """4 x 4 matrix mapping an output voxel index of :func:`apply_orientation` to the input index."""
    shape_out = [int(shape_in[p]) for p in permutation]
    index_map = np.zeros((4, 4))
    index_map[3, 3] = 1.0
    for out_axis, (in_axis, flip) in enumerate(zip(permutation, flips)):
        index_map[in_axis, out_axis] = -1.0 if flip else 1.0
        if flip:
            index_map[in_axis, 3] = shape_out[out_axis] - 1
    return index_map


def apply_orientation(array: np.ndarray, permutation: Sequence[int], flips: Sequence[bool]) -> np.ndarray:
    """Permute and flip the last three axes (a view where NumPy allows; no data are changed)."""
    lead = array.ndim - 3
    axes = list(range(lead)) + [lead + p for p in permutation]
    out = np.transpose(array, axes)
    flip_axes = tuple(lead + a for a, f in enumerate(flips) if f)
    return np.flip(out, axis=flip_axes) if flip_axes else out


def invert_orientation(array, permutation: Sequence[int], flips: Sequence[bool]):
    """Undo :func:`apply_orientation` (NumPy array or torch tensor, last three axes)."""
    lead = array.ndim - 3
    flip_axes = tuple(lead + a for a, f in enumerate(flips) if f)
    inverse = [0, 0, 0]
    for out_axis, in_axis in enumerate(permutation):
        inverse[in_axis] = out_axis
    axes = list(range(lead)) + [lead + p for p in inverse]
    if isinstance(array, np.ndarray):
        if flip_axes:
            array = np.flip(array, axis=flip_axes)
        return np.transpose(array, axes)
    if flip_axes:
        array = array.flip(flip_axes)
    return array.permute(*axes)


# -- bounding boxes, cropping and padding ---------------------------------------------------
def bbox_of_mask(mask: np.ndarray, margin: Sequence[int] | int = 0) -> list[list[int]] | None:
    """``[[start, stop], ...]`` (voxels, stop exclusive) of the True voxels of a 3D mask,
    grown by ``margin`` voxels and clipped to the array; ``None`` when the mask is empty."""
    margin = [int(margin)] * 3 if np.isscalar(margin) else [int(m) for m in margin]
    bbox = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        if present.size == 0:
            return None
        start = max(0, int(present[0]) - margin[axis])
        stop = min(mask.shape[axis], int(present[-1]) + 1 + margin[axis])
        bbox.append([start, stop])
    return bbox


def union_bbox(a: list[list[int]] | None, b: list[list[int]] | None) -> list[list[int]] | None:
    """Smallest box containing both (either may be ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    return [[min(x[0], y[0]), max(x[1], y[1])] for x, y in zip(a, b)]


def crop(array: np.ndarray, bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """View of the last three axes inside ``bbox`` (``[[start, stop], ...]`` voxels)."""
    index = (Ellipsis,) + tuple(slice(int(s), int(e)) for s, e in bbox)
    return array[index]


def crop_index_map(bbox: Sequence[Sequence[int]]) -> np.ndarray:
    """4 x 4 matrix mapping a cropped voxel index to the uncropped one (a translation)."""
    index_map = np.eye(4)
    index_map[:3, 3] = [s for s, _ in bbox]
    return index_map


def pad_widths_to_size(shape: Sequence[int], size: Sequence[int]) -> list[list[int]]:
    """``[[before, after], ...]`` voxels that pad ``shape`` symmetrically to at least ``size``
    (the odd voxel goes after); zeros where the shape is already large enough."""
    widths = []
    for n, target in zip(shape, size):
        missing = max(0, int(target) - int(n))
        widths.append([missing // 2, missing - missing // 2])
    return widths


def pad(array: np.ndarray, widths: Sequence[Sequence[int]], value: float = 0.0) -> np.ndarray:
    """Pad the last three axes by ``widths`` with a constant (returns the input if no padding)."""
    if not any(b or a for b, a in widths):
        return array
    full = [(0, 0)] * (array.ndim - 3) + [(int(b), int(a)) for b, a in widths]
    return np.pad(array, full, mode="constant", constant_values=value)


def pad_index_map(widths: Sequence[Sequence[int]]) -> np.ndarray:
    """4 x 4 matrix mapping a padded voxel index to the unpadded one (a translation)."""
    index_map = np.eye(4)
    index_map[:3, 3] = [-int(b) for b, _ in widths]
    return index_map
