"""Bounding boxes, surface voxels and exact surface-to-surface distances.

Definitions (the MedPy / MONAI convention):

* The **surface** ``S(M)`` of a binary mask ``M`` is the set of mask voxels with at least one
  face-neighbour outside the mask: ``M XOR erosion(M)`` with face connectivity (6-connectivity
  in 3D), where everything outside the array counts as background (``border_value=0``).
  :func:`surface_mask` gives exactly ``scipy.ndimage.binary_erosion(M, structure=<face
  connectivity>, border_value=0) ^ M`` (checked in the tests), computed with array slicing.
* The **directed surface distances** from ``S(A)`` to ``S(B)`` are, for every voxel ``a`` of
  ``S(A)``, the Euclidean distance in mm from the centre of ``a`` to the centre of the nearest
  voxel of ``S(B)``, with the voxel spacing of each axis (anisotropy respected).

Distances are exact (float64), not approximations: :func:`nearest_surface_distances` first
looks for the nearest target voxel among a ball of voxel offsets sorted by their length in mm
(a voxel resolved at offset ``o`` is at exactly ``|o|`` mm, because every shorter offset has
been checked and missed), and gives the few voxels that are farther away than the ball to an
exact brute-force search (few points) or a ``scipy.spatial.cKDTree`` (many points). Every
computation runs on the union bounding box of the two masks, which contains both surfaces,
so cropping changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: number of voxel offsets tried (nearest first) before falling back to an exact search
STENCIL_OFFSETS = 96
#: below this many point pairs the fallback is a brute-force search, above it a KD-tree
BRUTE_FORCE_PAIRS = 2_000_000


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box of array indices holding every non-zero voxel of ``mask`` (any dtype).

    Returns one ``slice`` per axis (voxel indices, stop exclusive), or ``None`` for an all-zero
    (or size-zero) array. Works on C- or Fortran-ordered arrays without copying them and reads
    an integer or boolean array once: block by block along the slowest-varying axis (about
    1 MiB each, so the second look stays in the cache), the maximum of each slab finds the
    occupied slabs and the bitwise OR of the block's slabs accumulates a 2D projection (both
    on 64-bit words, 8 voxels each, when the slabs allow).
    """
    mask = np.asarray(mask)
    if mask.size == 0:
        return None
    if mask.ndim == 3 and mask.flags.f_contiguous and not mask.flags.c_contiguous:
        box = bounding_box(mask.T)  # the transpose of a Fortran array is C-ordered
        return None if box is None else tuple(reversed(box))
    if mask.ndim != 3 or not mask.flags.c_contiguous or mask.dtype.kind not in "biu":
        return _bounding_box_generic(mask)
    n0, n1, n2 = mask.shape
    slabs = mask.reshape(n0, n1 * n2)
    words = slabs.dtype.itemsize == 1 and (n1 * n2) % 8 == 0
    # unsigned views: a slab is occupied when its maximum is non-zero, whatever the sign of the values
    slabs = slabs.view(np.uint64) if words else slabs.view(f"u{slabs.dtype.itemsize}")
    occupied = np.empty(n0, dtype=bool)
    projection = np.zeros(slabs.shape[1], dtype=slabs.dtype)
    block = max(1, (1 << 20) // max(slabs.shape[1] * slabs.dtype.itemsize, 1))
    for start in range(0, n0, block):
        part = slabs[start : start + block]
        peaks = part.max(axis=1)
        occupied[start : start + block] = peaks != 0
        if peaks.any():
            np.bitwise_or(projection, np.bitwise_or.reduce(part, axis=0), out=projection)
    present = np.flatnonzero(occupied)
    if present.size == 0:
        return None
    if words:
        projection = projection.view(np.uint8)
    projection = projection.reshape(n1, n2) != 0
    second = np.flatnonzero(projection.any(axis=1))
    third = np.flatnonzero(projection.any(axis=0))
    return (
        slice(int(present[0]), int(present[-1]) + 1),
        slice(int(second[0]), int(second[-1]) + 1),
        slice(int(third[0]), int(third[-1]) + 1),
    )


def _bounding_box_generic(mask: np.ndarray) -> tuple[slice, ...] | None:
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others)) if others else np.flatnonzero(mask)
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


#: label maps whose largest value is at most this are indexed with one comparison per value;
#: larger ones with one ``scipy.ndimage.find_objects`` pass and a histogram
FEW_LABELS = 16


def label_boxes(label_map: np.ndarray) -> dict[int, tuple[tuple[slice, ...], int]]:
    """Bounding box and voxel count of every non-zero value of a label map.

    Args:
        label_map: integer label map (any shape, C- or Fortran-ordered); best already cropped to
            its foreground with :func:`bounding_box`, since every voxel of it is read.

    Returns:
        ``{value: (box, count)}`` in ascending value order: ``box`` as from :func:`bounding_box`
        (indices into ``label_map``, stop exclusive), ``count`` the number of voxels holding the
        value. ``{}`` for an all-zero or empty map.

    Work: with non-negative integers up to :data:`FEW_LABELS`, one comparison per value
    (cheaper than any histogram for a few labels); up to 65535, one ``scipy.ndimage.find_objects``
    pass and a histogram; otherwise (larger, negative or float values) one comparison per
    distinct value.
    """
    label_map = np.asarray(label_map)
    if label_map.size == 0:
        return {}
    integers = label_map.dtype.kind in "biu"
    low = 0 if label_map.dtype.kind in "bu" else int(label_map.min()) if integers else None
    top = int(label_map.max()) if low is not None and low >= 0 else None
    if top is not None and top <= 65535:
        if top > FEW_LABELS:
            from scipy import ndimage

            counts = np.bincount(label_map.ravel(order="K"), minlength=top + 1)
            objects = ndimage.find_objects(label_map)
            return {v + 1: (box, int(counts[v + 1])) for v, box in enumerate(objects) if box is not None}
        values = range(1, top + 1)
    else:
        values = [v for v in np.unique(label_map).tolist() if v != 0]
    found = {}
    for value in values:
        mask = label_map == value
        count = int(np.count_nonzero(mask))
        if count:
            found[int(value)] = (bounding_box(mask), count)
    return found


def union_box(*boxes: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    """Smallest box containing all given boxes (``None`` entries, i.e. empty masks, are skipped)."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(
        slice(min(b[axis].start for b in present), max(b[axis].stop for b in present))
        for axis in range(len(present[0]))
    )


def surface_mask(mask: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Surface voxels of a binary mask: voxels with a face-neighbour outside the mask.

    Args:
        mask: boolean array (any number of dimensions, indexed like the volume).
        axes: the axes along which neighbours count (default: all, i.e. 6-connectivity in 3D).
            ``axes=(0, 1)`` gives the 2D surface (contour) of every slice along axis 2.

    Returns:
        Boolean array of the same shape; equal to ``mask ^ binary_erosion(mask, face
        connectivity, border_value=0)`` (outside the array is background). An empty mask
        gives an empty surface.
    """
    mask = np.asarray(mask, dtype=bool)
    axes = tuple(range(mask.ndim)) if axes is None else tuple(axes)
    interior = mask.copy()
    for axis in axes:
        if mask.shape[axis] == 0:
            continue
        head = [slice(None)] * mask.ndim
        tail = [slice(None)] * mask.ndim
        head[axis], tail[axis] = slice(1, None), slice(None, -1)
        interior[tuple(head)] &= mask[tuple(tail)]
        interior[tuple(tail)] &= mask[tuple(head)]
        edge = [slice(None)] * mask.ndim
        edge[axis] = 0
        interior[tuple(edge)] = False
        edge[axis] = -1
        interior[tuple(edge)] = False
    np.logical_xor(mask, interior, out=interior)
    return interior


@functools.lru_cache(maxsize=128)
def _sorted_offsets(spacing_mm: tuple[float, ...], count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``<= count`` shortest voxel offsets (integer, shape (n, ndim)) and their lengths in mm,
    ascending; complete: every offset shorter than the longest one returned is included."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    radius = float(spacing.min())
    while True:
        reach = np.floor(radius / spacing + 1e-9).astype(int)
        grids = np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij")
        offsets = np.stack([g.ravel() for g in grids], axis=1)
        lengths = np.sqrt(((offsets * spacing) ** 2).sum(axis=1))
        inside = lengths <= radius
        if inside.sum() > count or radius > 1e6:
            break
        radius *= 1.5
    offsets, lengths = offsets[inside], lengths[inside]
    order = np.argsort(lengths, kind="stable")
    offsets, lengths = offsets[order], lengths[order]
    if len(lengths) > count:
        keep = lengths < lengths[count]  # drop the whole shell that would be cut in two
        offsets, lengths = offsets[keep], lengths[keep]
    return offsets, lengths


def mask_points(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """Voxel indices of the ``True`` voxels of a mask, like ``np.nonzero`` (C order) but faster
    (``np.flatnonzero`` + ``np.unravel_index``)."""
    mask = np.ascontiguousarray(mask)
    return np.unravel_index(np.flatnonzero(mask), mask.shape)


def nearest_surface_distances(
    query_points: tuple[np.ndarray, ...],
    target_surface: np.ndarray,
    spacing_mm: np.ndarray,
    target_points: tuple[np.ndarray, ...] | None = None,
) -> np.ndarray:
    """Exact distance (mm) from each query voxel to the nearest ``True`` voxel of ``target_surface``.

    Args:
        query_points: voxel indices of the query voxels, as returned by ``np.nonzero`` or
            :func:`mask_points`
            (one integer array per axis, in the frame of ``target_surface``).
        target_surface: boolean array; must contain at least one ``True`` voxel.
        spacing_mm: voxel size along each array axis in mm.
        target_points: ``mask_points(target_surface)`` when the caller has it already.

    Returns:
        float64 array, one distance per query voxel (empty for no query voxels).

    Work: a search over the shortest voxel offsets (see the module docstring), then an exact
    brute-force or ``scipy.spatial.cKDTree`` search for the voxels not resolved by it.
    """
    n_query = len(query_points[0])
    distances = np.empty(n_query, dtype=np.float64)
    if n_query == 0:
        return distances
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    offsets, lengths = _sorted_offsets(tuple(float(s) for s in spacing), STENCIL_OFFSETS)
    reach = np.abs(offsets).max(axis=0)
    padded = np.zeros(tuple(n + 2 * int(r) for n, r in zip(target_surface.shape, reach)), dtype=bool)
    padded[tuple(slice(int(r), int(r) + n) for n, r in zip(target_surface.shape, reach))] = target_surface
    strides = np.array([int(np.prod(padded.shape[axis + 1 :])) for axis in range(padded.ndim)], dtype=np.int64)
    index_dtype = np.int32 if padded.size < 2**31 - 1 else np.int64
    flat = np.zeros(n_query, dtype=index_dtype)
    for axis, coords in enumerate(query_points):
        flat += ((coords + reach[axis]) * strides[axis]).astype(index_dtype)
    target_flat = padded.ravel()
    remaining = np.arange(n_query)
    for step, length in zip((offsets @ strides).astype(index_dtype), lengths):
        hit = target_flat[flat + step]
        if hit.any():
            distances[remaining[hit]] = length
            miss = ~hit
            remaining, flat = remaining[miss], flat[miss]
            if remaining.size == 0:
                return distances
    query = np.stack([np.asarray(c)[remaining] * s for c, s in zip(query_points, spacing)], axis=1)
    target_points = mask_points(target_surface) if target_points is None else target_points
    target = np.stack([c * s for c, s in zip(target_points, spacing)], axis=1)
    distances[remaining] = _exact_nearest(query, target)
    return distances


def _exact_nearest(query: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query point to its nearest target point (points in mm)."""
    if len(query) * len(target) <= BRUTE_FORCE_PAIRS:
        best = np.full(len(query), np.inf)
        chunk = max(1, BRUTE_FORCE_PAIRS // (4 * max(len(target), 1)))
        for start in range(0, len(query), chunk):
            block = query[start : start + chunk, None, :] - target[None, :, :]
            best[start : start + chunk] = np.einsum("ijk,ijk->ij", block, block).min(axis=1)
        return np.sqrt(best)
    from scipy.spatial import cKDTree

    return cKDTree(target, leafsize=32, balanced_tree=False, compact_nodes=False).query(query, k=1)[0]


@dataclass
class SurfaceDistances:
    """Directed surface distances of one structure, computed once.

    Attributes:
        ref_points: voxel indices (tuple of arrays, full-volume frame) of the reference surface
            ``S(A)``.
        ref_to_pred_mm: for each of them, the distance (mm) to the nearest voxel of ``S(B)``.
        pred_points: voxel indices of the prediction surface ``S(B)``.
        pred_to_ref_mm: for each of them, the distance (mm) to the nearest voxel of ``S(A)``.

    When one mask is empty its point arrays are empty and the other side's distances are
    ``inf`` (there is no surface to reach); :mod:`medseg.evaluation.metrics` applies the
    empty-mask policy.
    """

    ref_points: tuple[np.ndarray, ...]
    ref_to_pred_mm: np.ndarray
    pred_points: tuple[np.ndarray, ...]
    pred_to_ref_mm: np.ndarray


def surface_distances(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: np.ndarray,
    *,
    offset: tuple[int, ...] | None = None,
    surface_axes: tuple[int, ...] | None = None,
) -> SurfaceDistances:
    """Surfaces of two binary masks and the exact directed distances between them (mm).

    Args:
        reference, prediction: boolean arrays of one shape (already cropped to their union
            bounding box by the caller for speed; any crop that holds both masks gives the same
            answer as long as what is outside the crop and inside the array is background).
        spacing_mm: voxel size per axis in mm.
        offset: index of the crop's first voxel in the full volume, added to the returned
            point indices (default: zeros).
        surface_axes: axes along which face-neighbours define the surface (default all; the
            slice-wise mode passes the two in-plane axes and a huge spacing along the slice
            axis, so surfaces and nearest neighbours stay within each slice).

    Returns:
        A :class:`SurfaceDistances`. Empty masks give empty point arrays (see there).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    offset = offset or (0,) * reference.ndim
    ref_surface = surface_mask(reference, surface_axes)
    pred_surface = surface_mask(prediction, surface_axes)
    ref_points = mask_points(ref_surface)
    pred_points = mask_points(pred_surface)
    if len(ref_points[0]) and len(pred_points[0]):
        ref_to_pred = nearest_surface_distances(ref_points, pred_surface, spacing, pred_points)
        pred_to_ref = nearest_surface_distances(pred_points, ref_surface, spacing, ref_points)
    else:
        ref_to_pred = np.full(len(ref_points[0]), np.inf)
        pred_to_ref = np.full(len(pred_points[0]), np.inf)
    shift = lambda points: tuple(p + o for p, o in zip(points, offset))  # noqa: E731
    return SurfaceDistances(shift(ref_points), ref_to_pred, shift(pred_points), pred_to_ref)
