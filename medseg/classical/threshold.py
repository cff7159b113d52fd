"""Intensity thresholds: fixed thresholds or ranges, Otsu (two or more classes), balanced histogram.

All three return a label map on the input's grid whose labels count intensity classes from
the darkest: 0 is the darkest class. For CT in Hounsfield units the thresholds are in HU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.classical._common import ImageInput, as_volume, finite_values, label_output, positive_int
from medseg.errors import ConfigError
from medseg.io import Volume

MAX_LABEL = 255


def threshold(
    image: ImageInput,
    thresholds: Sequence[float] | None = None,
    *,
    ranges: Sequence[tuple[float, float]] | None = None,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Label voxels by fixed intensity thresholds or ranges (NumPy; no fitting).

    Give exactly one of:

    * ``thresholds`` ``t1 < t2 < ... < tn`` (intensity units, HU for CT; given in any order,
      sorted here): a voxel with value ``v`` gets label ``m`` = the number of thresholds
      ``<= v``, so label 0 is ``v < t1``, label 1 is ``t1 <= v < t2``, ..., label ``n`` is
      ``v >= tn``.
    * ``ranges`` ``[(low1, high1), (low2, high2), ...]``: label ``m`` (1-based) for
      ``low_m <= v <= high_m`` (both ends included); voxels in no range are 0; a voxel in
      several ranges gets the first one listed.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        thresholds: increasing intensity thresholds (no duplicates), at most 255.
        ranges: closed intensity intervals, each ``low <= high``, at most 255.

    Returns:
        uint8 label map on the input grid; ``meta['segmentation']`` records the thresholds.
        An input where no voxel passes gives all zeros.

    Raises:
        ConfigError: neither or both of ``thresholds``/``ranges``, duplicates, a range with
            ``low > high``, non-finite values, more than 255 classes.
    """
    volume = as_volume(image, spacing_mm, "threshold")
    values = finite_values(volume, "threshold")
    if (thresholds is None) == (ranges is None):
        raise ConfigError(
            "threshold: give either thresholds (t1 < t2 < ...) or ranges [(low, high), ...], not both or neither"
        )
    if thresholds is not None:
        cuts = _check_thresholds(thresholds)
        if cuts.size <= 16:  # a few comparisons beat a binary search per voxel
            labels = np.zeros(volume.shape, dtype=np.uint8)
            for cut in cuts:
                labels += values >= cut
        else:
            labels = np.searchsorted(cuts, values, side="right")
        return label_output(volume, labels, "threshold", thresholds=cuts.tolist())
    intervals = _check_ranges(ranges)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    for label, (low, high) in reversed(list(enumerate(intervals, start=1))):  # the first listed wins
        labels[(values >= low) & (values <= high)] = label
    return label_output(volume, labels, "threshold", ranges=[list(r) for r in intervals])


def otsu(
    image: ImageInput,
    classes: int = 2,
    *,
    bins: int = 256,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Otsu thresholding into ``classes`` intensity classes (SimpleITK does the work).

    Two classes use ``sitk.OtsuThresholdImageFilter``; three or more use
    ``sitk.OtsuMultipleThresholdsImageFilter`` (multi-level Otsu), both on a histogram of
    ``bins`` bins spanning the volume's min..max. Label 0 is the darkest class, ``classes-1``
    the brightest; a voxel equal to a threshold goes to the darker class (ITK's convention).

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        classes: number of classes, 2..255 (more than ~5 is slow: the search grows as bins^(classes-1)).
        bins: histogram bins.

    Returns:
        uint8 label map; ``meta['segmentation']['thresholds']`` holds the thresholds in
        intensity units (HU for CT). A constant volume gives all zeros and no thresholds.
    """
    volume = as_volume(image, spacing_mm, "otsu")
    values = finite_values(volume, "otsu")
    classes = positive_int(classes, "classes", "otsu", minimum=2)
    bins = positive_int(bins, "bins", "otsu", minimum=2)
    if classes > MAX_LABEL + 1:
        raise ConfigError(f"otsu: at most {MAX_LABEL + 1} classes, got {classes}")
    if values.min() == values.max():
        return label_output(volume, np.zeros(volume.shape, np.uint8), "otsu", classes=classes, thresholds=[])
    import SimpleITK as sitk

    # a histogram method: the voxel order and geometry do not matter, so the array goes to
    # SimpleITK as it is (no transposed copy) and comes back in the same order
    sitk_image = sitk.GetImageFromArray(_sitk_friendly(values))
    if classes == 2:
        otsu_filter = sitk.OtsuThresholdImageFilter()
        otsu_filter.SetInsideValue(0)  # values <= threshold
        otsu_filter.SetOutsideValue(1)
        otsu_filter.SetNumberOfHistogramBins(bins)
        labels = sitk.GetArrayFromImage(otsu_filter.Execute(sitk_image))
        cuts = [float(otsu_filter.GetThreshold())]
    else:
        multi_filter = sitk.OtsuMultipleThresholdsImageFilter()
        multi_filter.SetNumberOfThresholds(classes - 1)
        multi_filter.SetNumberOfHistogramBins(bins)
        labels = sitk.GetArrayFromImage(multi_filter.Execute(sitk_image))
        cuts = [float(t) for t in multi_filter.GetThresholds()]
    return label_output(volume, labels, "otsu", classes=classes, bins=bins, thresholds=cuts)


def bht(
    image: ImageInput,
    *,
    bins: int = 256,
    tail_fraction: float = 0.01,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Balanced histogram thresholding into two classes (NumPy, on the histogram).

    The histogram (``bins`` bins over min..max) is balanced on a moving centre: starting at
    the middle of the occupied range, the heavier side loses its outermost bin and the centre
    moves to the middle of what remains, until the two ends meet (Anjos and Shahbazkia,
    2008). The threshold is the lower edge of the final centre bin; voxels ``>= threshold``
    get label 1. The outermost ``tail_fraction`` of the voxels at each end is left out of
    the range first, so a sparse tail (a CT's bone and clipped 3071 HU, hot pixels) cannot
    drag the centre: on the LIDC chest CT the default gives -416 HU (air | tissue; Otsu
    gives -480 HU), without trimming 2895 HU. Cheaper and cruder than Otsu: meant for
    clearly bimodal histograms.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        bins: histogram bins.
        tail_fraction: fraction of the voxels ignored at each end of the histogram (0 <= f < 0.5).

    Returns:
        uint8 label map (0 dark, 1 bright); ``meta['segmentation']['thresholds']`` holds the
        threshold. A constant volume gives all zeros and no threshold.
    """
    volume = as_volume(image, spacing_mm, "bht")
    values = finite_values(volume, "bht")
    bins = positive_int(bins, "bins", "bht", minimum=2)
    if not 0.0 <= float(tail_fraction) < 0.5:
        raise ConfigError(f"bht: tail_fraction must be in [0, 0.5), got {tail_fraction!r}")
    low, high = float(values.min()), float(values.max())
    if low == high:
        return label_output(volume, np.zeros(volume.shape, np.uint8), "bht", thresholds=[])
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    cut = float(edges[balanced_histogram_bin(counts, tail_fraction)])
    return label_output(volume, values >= cut, "bht", bins=bins, thresholds=[cut])


def balanced_histogram_bin(counts: np.ndarray, tail_fraction: float = 0.0) -> int:
    """Index of the balancing bin of a 1D histogram (balanced histogram thresholding).

    Bins ``< centre`` form the dark side, bins ``>= centre`` the bright side. The range
    starts at the first bin where the cumulative count exceeds ``tail_fraction`` of the
    total and ends at the last bin with more than that fraction at or above it. A cumulative
    sum makes each step O(1); the loop runs at most ``len(counts)`` times. An all-zero
    histogram gives 0; the result is at least 1 (so label 1 is never the whole volume).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 0
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    start = int(np.searchsorted(cumulative[1:], tail_fraction * total, side="right"))
    end = int(np.flatnonzero(total - cumulative[:-1] > tail_fraction * total)[-1])
    start = min(start, end)
    centre = (start + end + 1) // 2
    while end - start > 1:
        weight_dark = cumulative[centre] - cumulative[start]
        weight_bright = cumulative[end + 1] - cumulative[centre]
        if weight_bright >= weight_dark:
            end -= 1
        else:
            start += 1
        centre = (start + end + 1) // 2
    return max(centre, 1)


def _check_thresholds(thresholds: Sequence[float]) -> np.ndarray:
    cuts = np.sort(np.asarray(list(thresholds), dtype=np.float64).ravel())
    if cuts.size == 0:
        raise ConfigError("threshold: thresholds is empty; give at least one value")
    if not np.all(np.isfinite(cuts)):
        raise ConfigError(f"threshold: thresholds must be finite numbers, got {list(thresholds)}")
    if np.any(np.diff(cuts) == 0):
        raise ConfigError(f"threshold: thresholds contain duplicates: {list(thresholds)}")
    if cuts.size > MAX_LABEL:
        raise ConfigError(f"threshold: at most {MAX_LABEL} thresholds, got {cuts.size}")
    return cuts


def _check_ranges(ranges: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    intervals = []
    for item in ranges:
        try:
            low, high = (float(x) for x in item)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold: each range must be (low, high), got {item!r}") from None
        if not (np.isfinite(low) and np.isfinite(high)) or low > high:
            raise ConfigError(f"threshold: range {item!r} must be finite with low <= high")
        intervals.append((low, high))
    if not intervals:
        raise ConfigError("threshold: ranges is empty; give at least one (low, high)")
    if len(intervals) > MAX_LABEL:
        raise ConfigError(f"threshold: at most {MAX_LABEL} ranges, got {len(intervals)}")
    return intervals


def _sitk_friendly(values: np.ndarray) -> np.ndarray:
    """C-contiguous, booleans as uint8 (SimpleITK has no boolean pixel type)."""
    return np.ascontiguousarray(values.astype(np.uint8) if values.dtype == np.bool_ else values)
