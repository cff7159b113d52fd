"""Post-processing of predicted label maps (the ``postprocess`` section of a config).

All operations work per label on a label map ``[i, j, k]`` with the voxel spacing in mm, use
face connectivity (6-neighbourhood) in 3D, and leave other labels untouched except where a
removed component's voxels become background. scipy.ndimage does the labelling and hole
filling. An empty label map is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from medseg.config.run_spec import PostprocessConfig  # the config section, validated with the training config

__all__ = ["PostprocessConfig", "fill_holes", "keep_largest_component", "postprocess", "remove_small_components"]


def keep_largest_component(labels: np.ndarray, value: int) -> np.ndarray:
    """Keep only the largest face-connected component of ``value``; its other voxels become 0. In place."""
    mask = labels == value
    components, count = ndimage.label(mask)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        labels[mask & (components != sizes.argmax())] = 0
    return labels


def remove_small_components(labels: np.ndarray, spacing_mm: Sequence[float], min_ml: float) -> np.ndarray:
    """Set components (per label) smaller than ``min_ml`` millilitres to 0. In place."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    min_voxels = min_ml / voxel_ml
    for value in np.unique(labels):
        if value == 0:
            continue
        mask = labels == value
        components, count = ndimage.label(mask)
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small > 0]
        if small.size:
            labels[np.isin(components, small) & mask] = 0
    return labels


def fill_holes(labels: np.ndarray, value: int) -> np.ndarray:
    """Fill background cavities fully enclosed by ``value`` (other labels' voxels are kept). In place."""
    mask = labels == value
    filled = ndimage.binary_fill_holes(mask)
    labels[filled & ~mask & (labels == 0)] = value
    return labels


def postprocess(labels: np.ndarray, spacing_mm: Sequence[float], config: PostprocessConfig) -> np.ndarray:
    """Apply ``config`` to a copy of ``labels`` (``[i, j, k]``, spacing in mm along the same axes)."""
    result = np.array(labels, copy=True)
    if result.size == 0:
        return result
    if config.min_component_ml > 0:
        remove_small_components(result, spacing_mm, config.min_component_ml)
    for value in config.largest_component:
        keep_largest_component(result, value)
    for value in config.fill_holes:
        fill_holes(result, value)
    return result
