"""Classical (training-free) segmentation baselines on 3D volumes, geometry kept.

Every method takes a :class:`medseg.io.Volume` (or a 3D array indexed ``[i, j, k]`` plus
``spacing_mm``) and returns a Volume on exactly the same grid (same shape and affine):
label maps are uint8 (uint16 for split-merge above 255 regions), ``edges`` is float32.
``meta['segmentation']`` records the method and what it chose (thresholds, class means, ...).

=============  ================================================================  ======================
method         what                                                              done by
=============  ================================================================  ======================
threshold      fixed thresholds (labels 0..n) or labelled ranges (HU for CT)     NumPy
otsu           Otsu, 2 classes or multi-level (``classes=3, ...``)               SimpleITK
bht            balanced histogram thresholding, 2 classes                        NumPy (histogram)
kmeans         k-means on intensity (+ position in mm), labels by mean           SciPy ``kmeans2``
region-grow    seeded 3D growing: intensity tolerance or confidence-connected    ITK
split-merge    octree split on a homogeneity criterion, then merge               NumPy (vectorised)
edges          3D Sobel gradient magnitude, intensity units per mm               SciPy ``ndimage``
lung-ct        lung mask from chest CT (1 left, 2 right lung)                    SciPy, SimpleITK
=============  ================================================================  ======================

Use :func:`segment` to call a method by name (as the ``medseg segment`` command does).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from medseg.classical.edges import sobel_edges
from medseg.classical.kmeans import kmeans
from medseg.classical.lung_ct import LEFT_LUNG, RIGHT_LUNG, lung_ct
from medseg.classical.region_grow import region_grow
from medseg.classical.split_merge import split_merge
from medseg.classical.threshold import bht, otsu, threshold
from medseg.errors import ConfigError
from medseg.io import Volume

#: method name -> function; every function takes the image first and keyword options.
METHODS: dict[str, Callable[..., Volume]] = {
    "threshold": threshold,
    "otsu": otsu,
    "bht": bht,
    "kmeans": kmeans,
    "region-grow": region_grow,
    "split-merge": split_merge,
    "edges": sobel_edges,
    "lung-ct": lung_ct,
}

#: methods whose output is an image (float32), not a label map
IMAGE_METHODS = frozenset({"edges"})


def segment(volume: Volume, method: str, **options: Any) -> Volume:
    """Run the classical method ``method`` on ``volume`` with keyword ``options``.

    Args:
        volume: the input Volume (or a 3D array with ``spacing_mm=...`` among the options).
        method: one of :data:`METHODS` (``"threshold"``, ``"otsu"``, ``"bht"``, ``"kmeans"``,
            ``"region-grow"``, ``"split-merge"``, ``"edges"``, ``"lung-ct"``); underscores
            are accepted for dashes.
        options: the method's keyword arguments (see each function); ``None`` values are
            dropped so callers can pass unset options through.

    Returns:
        The method's output Volume on the input grid.

    Raises:
        ConfigError: unknown method, or an option the method does not take (the message
            lists the ones it does).
    """
    name = method.replace("_", "-").lower()
    if name not in METHODS:
        raise ConfigError(f"unknown segmentation method {method!r}; choose one of: {', '.join(METHODS)}")
    function = METHODS[name]
    given = {key: value for key, value in options.items() if value is not None}
    parameters = [
        p
        for p in inspect.signature(function).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][1:]
    accepted = [p.name for p in parameters]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; {name} takes: {', '.join(accepted)}")
    missing = [p.name for p in parameters if p.default is inspect.Parameter.empty and p.name not in given]
    if missing:
        raise ConfigError(f"{name}: missing required option(s) {', '.join(missing)}")
    return function(volume, **given)


__all__ = [
    "IMAGE_METHODS",
    "LEFT_LUNG",
    "METHODS",
    "RIGHT_LUNG",
    "bht",
    "kmeans",
    "lung_ct",
    "otsu",
    "region_grow",
    "segment",
    "sobel_edges",
    "split_merge",
    "threshold",
]
