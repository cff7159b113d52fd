"""Hounsfield units (HU) for CT.

Rescaling stored values to HU (DICOM ``RescaleSlope``/``RescaleIntercept``, NIfTI
``scl_slope``/``scl_inter``) is done by the readers (SimpleITK/GDCM and nibabel), exactly
once, when the file is read; nothing in medseg applies it again. This module decides whether
an array already is in HU, maps scanner padding to air and clips to a window.

Conventions: air is -1000 HU, water 0 HU. CT cannot measure below air, so values below
``air_floor_hu`` (default -1024, the lowest value of the common 12-bit scale) are padding
outside the scan's field of view (typical fill values -2000, -2048, -3024, -32768) or
reconstruction artefacts, and are set to ``air_floor_hu``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.errors import InvalidArgumentError, VolumeReadError

AIR_FLOOR_HU = -1024.0
#: Values at or below this are treated as padding when judging whether data are HU.
_PADDING_BELOW_HU = -1500.0


def looks_like_hu(array: np.ndarray, max_samples: int = 2_000_000) -> bool:
    """Whether values look like CT Hounsfield units.

    True when, ignoring padding (values <= -1500), the 0.5th percentile lies between
    -1200 and -500 HU (air or lung present) and the maximum is at most 32 767. Raw stored CT
    values without the intercept applied start near 0, MRI and normalised images are not
    negative around -1000, so both give False. An empty array gives False.
    """
    flat = np.asarray(array).ravel(order="K")  # a view for C- or Fortran-ordered arrays
    if flat.size == 0:
        return False
    if flat.size > max_samples:  # a strided sample is plenty for percentiles
        flat = flat[:: flat.size // max_samples + 1]
    body = flat[flat > _PADDING_BELOW_HU]
    if body.size == 0:
        return False
    low = float(np.percentile(body, 0.5))
    return -1200.0 <= low <= -500.0 and float(body.max()) <= 32767.0


def to_hounsfield(
    array: np.ndarray,
    *,
    source: str = "<array>",
    air_floor_hu: float = AIR_FLOOR_HU,
    clip_hu: tuple[float, float] | None = None,
    check: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Map padding to air and optionally clip an array that is already rescaled to HU.

    Args:
        array: CT values in HU (rescale slope/intercept already applied by the reader).
        source: file name used in error messages.
        air_floor_hu: values below this (padding, out-of-field fill) become this value.
        clip_hu: optional ``(low, high)`` window in HU applied afterwards.
        check: raise :class:`VolumeReadError` if the values do not look like HU
            (e.g. raw stored values whose RescaleIntercept was lost).

    Returns:
        ``(array_hu, info)`` where ``array_hu`` keeps an integer dtype when the input had one
        (int16 when it fits) and ``info`` records how many voxels were padding and the clip.
        An empty array is returned unchanged.
    """
    info: dict[str, Any] = {"air_floor_hu": air_floor_hu, "clip_hu": list(clip_hu) if clip_hu else None}
    if array.size == 0:
        info["padding_voxels"] = 0
        return array, info
    if check and not looks_like_hu(array):
        low, high = float(np.min(array)), float(np.max(array))
        raise VolumeReadError(
            f"{source}: values do not look like Hounsfield units (range {low:g} .. {high:g}, no air "
            "near -1000 HU). If these are raw stored CT values, the rescale intercept (usually "
            "-1024) is missing from the file; if this is not CT, load it with ct=False."
        )
    padding = array < air_floor_hu
    info["padding_voxels"] = int(np.count_nonzero(padding))
    if np.issubdtype(array.dtype, np.integer) and array.dtype.itemsize < 2:
        array = array.astype(np.int16)
    if info["padding_voxels"]:
        array = array.copy() if not array.flags.writeable else array
        array[padding] = air_floor_hu
    if clip_hu is not None:
        low, high = clip_hu
        if not low < high:
            raise InvalidArgumentError(f"clip_hu must be (low, high) with low < high, got {clip_hu}")
        np.clip(array, low, high, out=array)
    return array, info
