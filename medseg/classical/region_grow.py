"""Seeded 3D region growing (ITK ``ConnectedThresholdImageFilter`` / ``ConfidenceConnectedImageFilter``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg.classical._common import ImageInput, as_volume, finite_values, label_output, positive_float, positive_int
from medseg.errors import ConfigError
from medseg.io import Volume
from medseg.io.itk_bridge import from_itk, itk_order, itk_pixels, to_itk, world_to_index

CRITERIA = ("tolerance", "confidence")


def region_grow(
    image: ImageInput,
    seeds: Sequence[Sequence[float]],
    *,
    seeds_in: str = "voxel",
    criterion: str = "tolerance",
    tolerance: float | None = None,
    lower: float | None = None,
    upper: float | None = None,
    multiplier: float = 2.5,
    iterations: int = 4,
    neighbourhood_radius: int = 1,
    spacing_mm: Sequence[float] | None = None,
) -> Volume:
    """Grow one region (label 1) from seed voxels through face-connected (6-neighbour) voxels.

    ITK (``import itk``) does the growing on an ITK image carrying the volume's spacing,
    origin and direction (int16 CT stays int16; types ITK Python does not wrap become float32):

    * ``criterion="tolerance"``: ``itk.ConnectedThresholdImageFilter`` adds every voxel
      connected to a seed whose value lies in ``[lower, upper]``. By default the interval is
      the mean value at the seeds +/- ``tolerance`` (intensity units, HU for CT); ``lower``
      and ``upper`` replace either end.
    * ``criterion="confidence"``: ``itk.ConfidenceConnectedImageFilter`` starts from the
      mean and standard deviation of the seeds' neighbourhoods (cubes of radius
      ``neighbourhood_radius`` voxels), grows through voxels within mean +/- ``multiplier``
      x std, and re-estimates mean and std from the region ``iterations`` times.

    Args:
        image: Volume or 3D array ``[i, j, k]`` (then ``spacing_mm`` sets the grid).
        seeds: one or more points; voxel indices ``(i, j, k)`` when ``seeds_in="voxel"``, RAS+
            world coordinates in mm when ``seeds_in="world"`` (rounded to the nearest voxel).
        seeds_in: ``"voxel"`` or ``"world"``.
        criterion: ``"tolerance"`` or ``"confidence"``.
        tolerance, lower, upper: intensity interval of the tolerance criterion.
        multiplier, iterations, neighbourhood_radius: parameters of the confidence criterion.

    Returns:
        uint8 label map, 1 for the grown region, 0 elsewhere; ``meta['segmentation']`` records
        the seed voxels and the interval used (and, for the tolerance criterion, how many
        seeds lie outside it). A seed whose own value falls outside the interval grows
        nothing; if none grows the map is all zeros.

    Raises:
        ConfigError: no seeds, a seed outside the grid, an unknown criterion or ``seeds_in``,
            a tolerance criterion with neither ``tolerance`` nor ``lower``/``upper``.
    """
    volume = as_volume(image, spacing_mm, "region-grow")
    values = finite_values(volume, "region-grow")
    seed_voxels = seed_indices(volume, seeds, seeds_in)
    seed_values = values[tuple(seed_voxels.T)].astype(np.float64)
    if criterion not in CRITERIA:
        raise ConfigError(f"region-grow: criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")

    import itk

    pixels = itk_pixels(values)
    itk_image = to_itk(pixels, volume.affine)
    image_type = type(itk_image)
    if criterion == "tolerance":
        low, high = _interval(seed_values, tolerance, lower, upper)
        grow = itk.ConnectedThresholdImageFilter[image_type, image_type].New(Input=itk_image)
        pixel_low, pixel_high = _pixel_interval(low, high, pixels.dtype)
        grow.SetLower(pixel_low)
        grow.SetUpper(pixel_high)
        outside = int(np.count_nonzero((seed_values < low) | (seed_values > high)))
        details = {"lower": low, "upper": high, "seeds_outside_interval": outside}
    else:
        grow = itk.ConfidenceConnectedImageFilter[image_type, itk.Image[itk.UC, 3]].New(Input=itk_image)
        grow.SetMultiplier(positive_float(multiplier, "multiplier", "region-grow"))
        grow.SetNumberOfIterations(positive_int(iterations, "iterations", "region-grow", minimum=0))
        grow.SetInitialNeighborhoodRadius(
            positive_int(neighbourhood_radius, "neighbourhood_radius", "region-grow", minimum=0)
        )
        details = {
            "multiplier": float(multiplier),
            "iterations": int(iterations),
            "neighbourhood_radius": int(neighbourhood_radius),
        }
    grow.SetReplaceValue(1)
    for seed in seed_voxels:
        grow.AddSeed([int(index) for index in itk_order(seed)])
    grow.Update()
    region = from_itk(grow.GetOutput()) > 0
    if criterion == "confidence":
        details.update(mean=float(grow.GetMean()), std=float(np.sqrt(max(grow.GetVariance(), 0.0))))
    return label_output(volume, region, "region-grow", criterion=criterion, seeds_voxel=seed_voxels.tolist(), **details)


def seed_indices(volume: Volume, seeds: Sequence[Sequence[float]], seeds_in: str = "voxel") -> np.ndarray:
    """Seeds as integer voxel indices ``(n, 3)`` ``(i, j, k)``, checked to lie inside the grid.

    ``seeds_in="voxel"``: indices (whole numbers); ``"world"``: RAS+ mm, rounded to the
    nearest voxel centre through the inverse affine.
    """
    if seeds_in not in ("voxel", "world"):
        raise ConfigError(f"region-grow: seeds_in must be 'voxel' or 'world', got {seeds_in!r}")
    points = np.asarray(seeds, dtype=np.float64)
    if points.ndim == 1:
        points = points[None, :]
    if points.size == 0 or points.ndim != 2 or points.shape[1] != 3:
        raise ConfigError(f"region-grow: seeds must be one or more (3,) points, got {seeds!r}")
    if seeds_in == "world":
        indices = np.rint(world_to_index(volume.affine, points)).astype(np.int64)
    else:
        if not np.array_equal(points, np.round(points)):
            raise ConfigError(f"region-grow: voxel seeds must be whole indices (i, j, k), got {seeds!r}")
        indices = points.astype(np.int64)
    outside = np.any((indices < 0) | (indices >= np.asarray(volume.shape)), axis=1)
    if outside.any():
        where = "world mm" if seeds_in == "world" else "voxel"
        bad = points[outside][0].tolist()
        raise ConfigError(
            f"{volume.name}: region-grow seed {bad} ({where}) is outside the grid of shape {volume.shape}"
            + (f" (nearest voxel {indices[outside][0].tolist()})" if seeds_in == "world" else "")
        )
    return indices


def _pixel_interval(low: float, high: float, dtype: np.dtype) -> tuple[float, float]:
    """``[low, high]`` as bounds ITK accepts for ``dtype`` pixels: whole numbers within the type's range."""
    if not np.issubdtype(dtype, np.integer):
        return float(low), float(high)
    info = np.iinfo(dtype)
    pixel_low = int(min(max(np.ceil(low), info.min), info.max))
    pixel_high = int(max(min(np.floor(high), info.max), info.min))
    return pixel_low, pixel_high


def _interval(
    seed_values: np.ndarray, tolerance: float | None, lower: float | None, upper: float | None
) -> tuple[float, float]:
    if tolerance is None and (lower is None or upper is None):
        if lower is None and upper is None:
            raise ConfigError("region-grow: the tolerance criterion needs tolerance, or lower and upper")
        raise ConfigError("region-grow: give tolerance, or both lower and upper")
    centre = float(seed_values.mean())
    low = (
        float(lower)
        if lower is not None
        else centre - positive_float(tolerance, "tolerance", "region-grow", allow_zero=True)
    )
    high = (
        float(upper)
        if upper is not None
        else centre + positive_float(tolerance, "tolerance", "region-grow", allow_zero=True)
    )
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ConfigError(f"region-grow: interval [{low}, {high}] is empty or not finite")
    return low, high
