"""k-means clustering of voxels on intensity, optionally with position (SciPy ``kmeans2``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from medseg.classical._common import ImageInput, as_volume, finite_values, label_output, positive_float, positive_int
from medseg.errors import ConfigError
from medseg.io import Volume

#: voxels assigned to centroids per slab when positions are features (bounds memory)
_CHUNK_VOXELS = 2_000_000


def kmeans(
    image: ImageInput,
    k: int = 3,
    *,
    seed: int = 0,
    position_scale_mm: float | None = None,
    sample_size: int = 200_000,
    iterations: int = 50,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Cluster voxels into ``k`` classes by intensity (and optionally position) with k-means.

    SciPy's :func:`scipy.cluster.vq.kmeans2` (Lloyd iterations, k-means++ initialisation,
    seeded NumPy generator) fits the centroids on a random sample of ``sample_size`` voxels;
    every voxel is then assigned to its nearest centroid. Features are the intensity divided
    by its standard deviation and, when ``position_scale_mm`` is given, the voxel's RAS+
    world position in mm divided by ``position_scale_mm`` (so ``position_scale_mm`` mm of
    distance weigh as much as one standard deviation of intensity: smaller values give more
    compact, blob-like classes).

    Labels are ``0 .. k-1`` ordered by the mean intensity of each class's voxels (0 the
    darkest). The same ``seed`` gives the same labels.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        k: number of classes, 2..255.
        seed: seed of the generator for the sample and the initialisation.
        position_scale_mm: millimetres that count as one intensity standard deviation; ``None``
            clusters on intensity only.
        sample_size: voxels used to fit the centroids (all voxels when the volume is smaller).
        iterations: Lloyd iterations of ``kmeans2``.

    Returns:
        uint8 label map; ``meta['segmentation']['class_means']`` holds each class's mean intensity.
        A volume with fewer than ``k`` distinct values (intensity only) gives one class per
        distinct value and records ``classes_found``.
    """
    volume = as_volume(image, spacing_mm, "kmeans")
    values = finite_values(volume, "kmeans")
    k = positive_int(k, "k", "kmeans", minimum=2)
    if k > 255:
        raise ConfigError(f"kmeans: k must be at most 255, got {k}")
    sample_size = positive_int(sample_size, "sample_size", "kmeans", minimum=k)
    iterations = positive_int(iterations, "iterations", "kmeans")
    if position_scale_mm is not None:
        position_scale_mm = positive_float(position_scale_mm, "position_scale_mm", "kmeans")
    rng = np.random.default_rng(seed)

    flat = values.ravel()
    intensity_std = float(flat.std()) or 1.0
    intensity_mean = float(flat.mean())
    n_voxels = flat.size
    sample = (
        np.sort(rng.choice(n_voxels, size=sample_size, replace=False))
        if n_voxels > sample_size
        else np.arange(n_voxels)
    )

    def features(flat_indices: np.ndarray) -> np.ndarray:
        columns = [(flat[flat_indices].astype(np.float64) - intensity_mean) / intensity_std]
        if position_scale_mm is not None:
            ijk = np.stack(np.unravel_index(flat_indices, volume.shape), axis=1).astype(np.float64)
            world = (ijk - _grid_centre(volume)) @ volume.affine[:3, :3].T  # mm from the grid's centre
            columns.extend((world / position_scale_mm).T)
        return np.stack(columns, axis=1)

    training = features(sample)
    distinct = np.unique(training, axis=0)
    if len(distinct) <= k:
        centroids = distinct
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "One of the clusters is empty": handled below
            centroids, _ = _kmeans2(training, k, iterations, rng)
        centroids = centroids[np.isfinite(centroids).all(axis=1)]

    if position_scale_mm is None:
        labels = _nearest_1d(flat, (centroids[:, 0] * intensity_std) + intensity_mean)
    else:
        labels = _nearest_with_position(
            volume, values, centroids, intensity_mean, intensity_std, position_scale_mm
        ).ravel()
    labels, class_means = _order_by_mean(labels, flat, len(centroids))
    return label_output(
        volume,
        labels.reshape(volume.shape),
        "kmeans",
        k=k,
        seed=seed,
        position_scale_mm=position_scale_mm,
        class_means=class_means,
        classes_found=len(class_means),
    )


def _kmeans2(data: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.cluster.vq.kmeans2`` with k-means++ and a generator (``rng=`` in new SciPy, ``seed=`` before)."""
    from scipy.cluster.vq import kmeans2

    try:
        return kmeans2(data, k, iter=iterations, minit="++", missing="warn", rng=rng)
    except TypeError:  # SciPy < 1.15
        return kmeans2(data, k, iter=iterations, minit="++", missing="warn", seed=rng)


def _grid_centre(volume: Volume) -> np.ndarray:
    return (np.asarray(volume.shape, dtype=np.float64) - 1) / 2


def _nearest_with_position(
    volume: Volume,
    values: np.ndarray,
    centroids: np.ndarray,
    intensity_mean: float,
    intensity_std: float,
    position_scale_mm: float,
) -> np.ndarray:
    """Nearest centroid of every voxel for features (intensity, x, y, z); slabs along axis 0, positions
    built by broadcasting (the world position is linear in the index), one centroid at a time."""
    labels = np.zeros(volume.shape, dtype=np.int32)
    axes = [np.arange(n, dtype=np.float64) - c for n, c in zip(volume.shape, _grid_centre(volume))]
    slab = max(1, _CHUNK_VOXELS // max(1, volume.shape[1] * volume.shape[2]))
    matrix = volume.affine[:3, :3] / position_scale_mm
    for start in range(0, volume.shape[0], slab):
        rows = slice(start, min(start + slab, volume.shape[0]))
        intensity = (values[rows].astype(np.float32) - np.float32(intensity_mean)) / np.float32(intensity_std)
        position = [
            (
                matrix[d, 0] * axes[0][rows, None, None]
                + matrix[d, 1] * axes[1][None, :, None]
                + matrix[d, 2] * axes[2][None, None, :]
            ).astype(np.float32)
            for d in range(3)
        ]
        best = np.full(intensity.shape, np.inf, dtype=np.float32)
        for index, centroid in enumerate(centroids.astype(np.float32)):
            distance = (intensity - centroid[0]) ** 2
            for d in range(3):
                distance += (position[d] - centroid[1 + d]) ** 2
            closer = distance < best
            best[closer] = distance[closer]
            labels[rows][closer] = index
    return labels


def _nearest_1d(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest of ``centres`` for each value (1D: cuts at midpoints, no distance matrix)."""
    order = np.argsort(centres)
    sorted_centres = centres[order]
    midpoints = (sorted_centres[1:] + sorted_centres[:-1]) / 2
    return order[np.searchsorted(midpoints, values, side="right")]


def _order_by_mean(labels: np.ndarray, values: np.ndarray, n_classes: int) -> tuple[np.ndarray, list[float]]:
    """Renumber classes 0.. by increasing mean intensity, dropping classes with no voxel."""
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.bincount(labels, weights=values.astype(np.float64), minlength=n_classes)
    present = np.flatnonzero(counts)
    means = sums[present] / counts[present]
    order = present[np.argsort(means, kind="stable")]
    new_label = np.zeros(n_classes, dtype=np.uint8)
    new_label[order] = np.arange(len(order), dtype=np.uint8)
    return new_label[labels], [float(sums[c] / counts[c]) for c in order]
