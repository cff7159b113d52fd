"""A plain-dict description of a volume: what ``medseg inspect`` prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.io.hounsfield import looks_like_hu
from medseg.io.volume import Volume

#: An integer volume with at most this many distinct values is described as a label map.
MAX_LABELS = 64


def looks_like_label_map(array: np.ndarray) -> bool:
    """Integer (or bool) values >= 0 with at most ``MAX_LABELS`` distinct values. Empty: False."""
    if array.size == 0 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        return False
    sample = array.ravel(order="K")[:: max(1, array.size // 1_000_000)]
    return sample.min() >= 0 and np.unique(sample).size <= MAX_LABELS and np.unique(array).size <= MAX_LABELS


def nonfinite_voxels(array: np.ndarray) -> dict[str, int]:
    """How many voxels are NaN, +inf and -inf: ``{"nan": n, "inf": m, "-inf": k}`` (zeros for integer
    arrays, which cannot hold them; an empty array gives zeros)."""
    if not np.issubdtype(array.dtype, np.floating) or array.size == 0:
        return {"nan": 0, "inf": 0, "-inf": 0}
    flat = array.ravel(order="K")
    if np.isfinite(flat.sum(dtype=np.float64)):  # fast path: no NaN or inf anywhere (one pass)
        return {"nan": 0, "inf": 0, "-inf": 0}
    return {
        "nan": int(np.count_nonzero(np.isnan(flat))),
        "inf": int(np.count_nonzero(np.isposinf(flat))),
        "-inf": int(np.count_nonzero(np.isneginf(flat))),
    }


def describe_nonfinite(counts: dict[str, int]) -> str:
    """``"12 NaN and 3 inf voxel(s)"`` for the counts of :func:`nonfinite_voxels`; ``""`` when all are finite."""
    parts = [f"{counts['nan']} NaN"] if counts["nan"] else []
    if counts["inf"] + counts["-inf"]:
        parts.append(f"{counts['inf'] + counts['-inf']} inf")
    return f"{' and '.join(parts)} voxel(s)" if parts else ""


def describe_volume(volume: Volume, label: bool | None = None) -> dict[str, Any]:
    """Geometry, intensity summary and, for a label map, voxel counts and volumes per label.

    ``label=None`` decides from the values (:func:`looks_like_label_map`). Spacing and origin in
    mm, RAS+ world frame; label volumes in ml. An empty array gives ``None`` for intensities.
    Intensity statistics ignore NaN and inf voxels, which are counted under ``nonfinite`` (``None``
    for intensities when no voxel is finite).
    """
    array = volume.array
    info: dict[str, Any] = {
        "source": volume.source,
        "format": volume.meta.get("format"),
        "shape": list(volume.shape),
        "dtype": str(array.dtype),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing_mm],
        "origin_mm": [round(float(o), 6) for o in volume.origin_mm],
        "orientation": volume.orientation,
        "direction": np.round(volume.direction, 6).tolist(),
        "oblique": bool(np.abs(np.abs(volume.direction) - np.round(np.abs(volume.direction))).max() > 1e-4),
        "extent_mm": [round(float(n * s), 3) for n, s in zip(volume.shape, volume.spacing_mm)],
    }
    if array.size == 0:
        info["intensity"] = None
        return info
    is_label = looks_like_label_map(array) if label is None else label
    info["kind"] = "label map" if is_label else volume.meta.get("kind", "image")
    if is_label:
        values, counts = np.unique(array, return_counts=True)
        info["labels"] = {
            int(v): {"voxels": int(c), "volume_ml": round(float(c) * volume.voxel_volume_ml, 3)}
            for v, c in zip(values, counts)
        }
    else:
        info["nonfinite"] = nonfinite_voxels(array)
        finite = array if not any(info["nonfinite"].values()) else array[np.isfinite(array)]
        if finite.size == 0:
            info["intensity"] = None
            return info
        sample = finite.ravel(order="K")[:: max(1, finite.size // 2_000_000)]
        p1, p50, p99 = np.percentile(sample, [1, 50, 99])
        info["intensity"] = {
            "min": float(finite.min()),
            "max": float(finite.max()),
            "p1": float(p1),
            "median": float(p50),
            "p99": float(p99),
        }
        info["looks_like_hu"] = bool(looks_like_hu(finite))
        if "hu" in volume.meta:
            info["hu"] = volume.meta["hu"]
    for key in (
        "modality",
        "series_uid",
        "rescale_slope",
        "rescale_intercept",
        "scl_slope",
        "scl_inter",
        "resampled_slices",
    ):
        if key in volume.meta:
            info[key] = volume.meta[key]
    return info
