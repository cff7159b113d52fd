"""Octree split-and-merge segmentation (vectorised NumPy split, union-find merge).

Split: the volume is covered by an octree of cubic blocks of ``2^s`` voxels per edge
(clipped at the volume's far faces). A block is *homogeneous* when the standard deviation of
its voxels is at most ``max_std`` and all its eight children are homogeneous (single voxels
always are). Starting from one block covering the whole volume, inhomogeneous blocks are
split into their children; homogeneous blocks become leaves. Block statistics for every
level come from one bottom-up pass of ``np.add.reduceat`` (sums of values and squares), so
the split costs a few passes over the volume whatever the depth.

Merge: adjacent leaves (sharing a face) are merged greedily, most similar first, while the
means of the two growing regions differ by at most ``merge_tolerance`` (a union-find over the
leaf adjacency graph; the loop runs over adjacent leaf pairs in Python). A second pass merges
regions smaller than ``min_region_voxels`` into their most similar neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.classical._common import ImageInput, as_volume, finite_values, label_output, positive_float, positive_int
from medseg.errors import ConfigError
from medseg.io import Volume

#: regions a uint16 label map can hold (label 0 is not used)
MAX_REGIONS = 65535


def split_merge(
    image: ImageInput,
    *,
    max_std: float | None = None,
    merge_tolerance: float | None = None,
    min_region_voxels: int = 8,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Octree split-and-merge into regions of homogeneous intensity (see the module docstring).

    Blocks are cubes in voxels (not in mm), as in the classical octree.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        max_std: largest intensity standard deviation of a homogeneous block (intensity units,
            HU for CT). Default: 3 x the noise level estimated from the median absolute
            difference of neighbouring voxels (``1.4826 * MAD / sqrt(2)``), so noise alone
            does not split blocks; 0-noise (piecewise-constant) volumes split at every change.
        merge_tolerance: largest difference of region means that still merges two adjacent
            regions (intensity units). Default: ``max_std``.
        min_region_voxels: regions smaller than this are merged into the most similar
            neighbour (1 keeps every region).

    Returns:
        Label map with one label per region, ``1 .. n`` ordered by increasing mean intensity
        (uint8, or uint16 above 255 regions; every voxel belongs to a region, so there is no
        0). ``meta['segmentation']`` records ``max_std``, ``merge_tolerance``, the number of
        octree leaves and of regions, and each region's mean. A constant volume is one region.

    Raises:
        ConfigError: bad parameters, or more than 65535 regions (raise ``merge_tolerance`` or
            ``min_region_voxels``, or smooth/downsample first).
    """
    volume = as_volume(image, spacing_mm, "split-merge")
    values = finite_values(volume, "split-merge").astype(np.float64)
    value_range = float(values.max() - values.min())
    noise_std = estimate_noise_std(values)
    if max_std is None:
        max_std = 3.0 * noise_std
    max_std = max(positive_float(max_std, "max_std", "split-merge", allow_zero=True), 1e-9 * max(value_range, 1.0))
    merge_tolerance = (
        max_std
        if merge_tolerance is None
        else positive_float(merge_tolerance, "merge_tolerance", "split-merge", allow_zero=True)
    )
    min_region_voxels = positive_int(min_region_voxels, "min_region_voxels", "split-merge")

    leaf_map = octree_leaves(values, max_std)
    n_leaves = int(leaf_map.max()) + 1
    counts = np.bincount(leaf_map.ravel(), minlength=n_leaves).astype(np.float64)
    sums = np.bincount(leaf_map.ravel(), weights=values.ravel(), minlength=n_leaves)
    first, second = adjacent_pairs(leaf_map)
    roots = _merge(first, second, counts, sums, merge_tolerance, min_region_voxels)

    region_ids, leaf_region = np.unique(roots, return_inverse=True)
    n_regions = len(region_ids)
    if n_regions > MAX_REGIONS:
        raise ConfigError(
            f"{volume.name}: split-merge found {n_regions} regions, more than a label map holds ({MAX_REGIONS}); "
            f"raise merge_tolerance (now {merge_tolerance:g}) or min_region_voxels, or smooth the image first"
        )
    region_counts = np.bincount(leaf_region, weights=counts, minlength=n_regions)
    region_means = np.bincount(leaf_region, weights=sums, minlength=n_regions) / region_counts
    order = np.argsort(region_means, kind="stable")
    rank = np.empty(n_regions, dtype=np.int64)
    rank[order] = np.arange(1, n_regions + 1)
    labels = rank[leaf_region][leaf_map]
    return label_output(
        volume,
        labels,
        "split-merge",
        max_std=max_std,
        merge_tolerance=merge_tolerance,
        min_region_voxels=min_region_voxels,
        noise_std_estimate=noise_std,
        leaves=n_leaves,
        regions=n_regions,
        region_means=[float(m) for m in region_means[order]],
    )


def estimate_noise_std(values: np.ndarray) -> float:
    """Robust noise standard deviation: ``1.4826 * median(|x[n+1] - x[n]|) / sqrt(2)`` along the longest axis.

    Edges between regions are a minority of neighbour pairs, so the median ignores them.
    Returns 0 for a piecewise-constant volume (and for an axis of length 1 everywhere).
    """
    axis = int(np.argmax(values.shape))
    if values.shape[axis] < 2:
        return 0.0
    differences = np.abs(np.diff(values, axis=axis)).ravel()
    if differences.size > 4_000_000:
        differences = differences[:: differences.size // 4_000_000 + 1]
    return float(1.4826 * np.median(differences) / np.sqrt(2.0))


def octree_leaves(values: np.ndarray, max_std: float) -> np.ndarray:
    """Leaf index (0 .. n-1, int64) of every voxel for the octree split at ``max_std``.

    Leaves are numbered coarse to fine, in C order of their block grid within a level.
    """
    shape = np.asarray(values.shape)
    n_levels = int(np.ceil(np.log2(max(int(shape.max()), 1))))
    homogeneous = _homogeneity_pyramid(values, max_std, n_levels)

    leaf_ids = np.full((1, 1, 1), -1, dtype=np.int64)
    active = np.ones((1, 1, 1), dtype=bool)
    next_id = 0
    for level in range(n_levels, -1, -1):  # coarse (one block) to fine (voxels)
        if level < n_levels:
            grid = tuple(int(n) for n in -(-shape // 2**level))
            leaf_ids = _upsample2(leaf_ids, grid)
            active = _upsample2(active, grid)
        new_leaves = active & homogeneous[level]
        count = int(new_leaves.sum())
        leaf_ids[new_leaves] = np.arange(next_id, next_id + count)
        next_id += count
        active &= ~new_leaves
    return leaf_ids


def adjacent_pairs(leaf_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique pairs ``(a, b)``, ``a < b``, of leaf ids sharing a voxel face (6-neighbourhood)."""
    n = int(leaf_map.max()) + 1
    keys = []
    for axis in range(3):
        low = np.moveaxis(leaf_map, axis, 0)[:-1]
        high = np.moveaxis(leaf_map, axis, 0)[1:]
        differ = low != high
        a, b = low[differ], high[differ]
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
    unique = np.sort(np.concatenate(keys))  # sort + neighbour test: faster than np.unique's hashing here
    unique = unique[np.concatenate([[True], unique[1:] != unique[:-1]])] if unique.size else unique
    return unique // n, unique % n


def _homogeneity_pyramid(values: np.ndarray, max_std: float, n_levels: int) -> list[np.ndarray]:
    """``homogeneous[level]``: block-grid booleans for blocks of ``2**level`` voxels per edge."""
    homogeneous = [np.ones(values.shape, dtype=bool)]
    sums, squares, counts = values, values * values, np.ones(values.shape, dtype=np.float64)
    limit = max_std * max_std
    for _ in range(n_levels):
        sums, squares, counts = _pool2(sums, np.add), _pool2(squares, np.add), _pool2(counts, np.add)
        mean = sums / counts
        variance = squares / counts - mean * mean
        tolerance = 1e-9 * np.maximum(squares / counts, 1.0)  # rounding of E[x^2] - E[x]^2
        children_ok = _pool2(homogeneous[-1].view(np.uint8), np.minimum).astype(bool)
        homogeneous.append(children_ok & (variance <= limit + tolerance))
    return homogeneous


def _pool2(array: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
    """Reduce non-overlapping 2 x 2 x 2 groups with ``ufunc.reduceat`` (a ragged last group is kept)."""
    for axis in range(3):
        starts = np.arange(0, array.shape[axis], 2)
        array = ufunc.reduceat(array, starts, axis=axis)
    return array


def _upsample2(array: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Each element repeated 2 x 2 x 2, cropped to ``grid`` (the next finer block grid)."""
    for axis in range(3):
        array = np.repeat(array, 2, axis=axis)
    return np.ascontiguousarray(array[: grid[0], : grid[1], : grid[2]])


def _merge(
    first: np.ndarray,
    second: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    tolerance: float,
    min_region_voxels: int,
) -> np.ndarray:
    """Union-find merge of adjacent leaves; returns the root (region) of each leaf.

    Pairs are visited most similar first (by leaf means). Pass 1 merges two regions when
    their current means differ by at most ``tolerance``; pass 2 visits only pairs touching a
    region smaller than ``min_region_voxels`` (regions only grow, so no other pair can
    qualify) and merges them. The loops are plain Python with path halving inlined.
    """
    parent = list(range(len(counts)))
    size = counts.tolist()
    total = sums.tolist()
    means = sums / counts
    order = np.argsort(np.abs(means[first] - means[second]), kind="stable")
    first, second = first[order], second[order]

    for a, b in zip(first.tolist(), second.tolist()):
        a, b = _find(parent, a), _find(parent, b)
        if a != b and abs(total[a] / size[a] - total[b] / size[b]) <= tolerance:
            _union(parent, size, total, a, b)
    if min_region_voxels > 1:
        roots = _roots(parent)
        region_size = np.bincount(roots, weights=counts, minlength=len(counts))
        small = np.minimum(region_size[roots[first]], region_size[roots[second]]) < min_region_voxels
        for a, b in zip(first[small].tolist(), second[small].tolist()):
            a, b = _find(parent, a), _find(parent, b)
            if a != b and min(size[a], size[b]) < min_region_voxels:
                _union(parent, size, total, a, b)
    return _roots(parent)


def _find(parent: list[int], node: int) -> int:
    """Union-find root of ``node``, halving the path on the way (in place)."""
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = parent[node]
    return node


def _union(parent: list[int], size: list[float], total: list[float], a: int, b: int) -> None:
    """Join the regions of roots ``a`` and ``b`` (the larger one stays root), pooling sizes and sums."""
    if size[a] < size[b]:
        a, b = b, a
    parent[b] = a
    size[a] += size[b]
    total[a] += total[b]


def _roots(parent: list[int]) -> np.ndarray:
    """Root of every element of a union-find forest (vectorised pointer jumping)."""
    roots = np.asarray(parent, dtype=np.int64)
    while True:
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            return roots
        roots = jumped
