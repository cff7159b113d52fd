"""Intensity normalisation schemes for CT and MRI (one channel at a time).

A scheme is a :class:`~medseg.config.plan.NormalizationScheme` (the plan's
``preprocessing.normalization`` entries; :func:`check_scheme` builds one from its plain form),
with ``scheme`` one of:

* ``"ct"``: clip to ``clip`` = ``[low, high]`` HU (a fixed window, or the dataset's
  foreground 0.5/99.5 percentiles from the fingerprint), then z-score with the dataset's
  foreground ``mean`` and ``std`` (nnU-Net's CT normalisation; the same numbers for every case).
* ``"window"``: clip to ``clip`` = ``[low, high]`` and map linearly to ``[0, 1]`` (what MONAI's
  ``ScaleIntensityRanged(..., clip=True)`` does).
* ``"zscore"``: per case ``(x - mean) / std``; with ``use_nonzero_mask`` the statistics come
  from voxels != 0 only and voxels outside that mask are set to 0 (MRI with a zero background).
* ``"percentile"``: per case clip to the ``percentiles`` (default 0.5, 99.5) and map to ``[0, 1]``.
* ``"none"``: leave values unchanged.

:func:`normalize` works in place on a float32 array and returns the parameters it used (a
JSON-friendly dict for the step record). Statistics on large volumes are taken on a strided
sample of at most 2 million voxels. An empty array is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medseg.config import from_dict
from medseg.config.plan import NormalizationScheme

_SAMPLE = 2_000_000
_EPS = 1e-8


def check_scheme(scheme: NormalizationScheme | Mapping[str, Any], where: str = "normalization") -> NormalizationScheme:
    """A :class:`~medseg.config.plan.NormalizationScheme` from its plain form (returned as it is when
    already one); raises :class:`~medseg.errors.ConfigError` naming ``where``, the key and the problem."""
    if isinstance(scheme, NormalizationScheme):
        return scheme
    return from_dict(NormalizationScheme, scheme, where)


def _sample(values: np.ndarray) -> np.ndarray:
    flat = np.ravel(values, order="K")  # memory order: a view even for transposed arrays
    return flat[:: flat.size // _SAMPLE + 1] if flat.size > _SAMPLE else flat


def normalize(channel: np.ndarray, scheme: NormalizationScheme | Mapping[str, Any]) -> dict[str, Any]:
    """Normalise one channel ``(X, Y, Z)`` float32 **in place** with ``scheme`` (see
    :func:`check_scheme`); returns the parameters used."""
    scheme = check_scheme(scheme)
    name = scheme.scheme
    used: dict[str, Any] = {"scheme": name}
    if channel.size == 0 or name == "none":
        return used
    if name == "ct":
        low, high = (float(v) for v in scheme.clip)
        mean, std = float(scheme.mean), float(scheme.std)
        np.clip(channel, low, high, out=channel)
        channel -= mean
        channel /= max(std, _EPS)
        used.update(clip=[low, high], mean=mean, std=std)
    elif name == "window":
        low, high = (float(v) for v in scheme.clip)
        np.clip(channel, low, high, out=channel)
        channel -= low
        channel /= high - low
        used.update(clip=[low, high])
    elif name == "zscore":
        if scheme.use_nonzero_mask:
            mask = channel != 0
            values = channel[mask] if mask.any() else channel.reshape(-1)
            mean, std = float(values.mean()), float(values.std())
            channel -= mean
            channel /= max(std, _EPS)
            channel[~mask] = 0.0
        else:
            sample = _sample(channel)
            mean, std = float(sample.mean(dtype=np.float64)), float(sample.std(dtype=np.float64))
            channel -= mean
            channel /= max(std, _EPS)
        used.update(mean=mean, std=std, use_nonzero_mask=bool(scheme.use_nonzero_mask))
    elif name == "percentile":
        p_low, p_high = scheme.percentiles or (0.5, 99.5)
        low, high = (float(v) for v in np.percentile(_sample(channel), [p_low, p_high]))
        np.clip(channel, low, high, out=channel)
        channel -= low
        channel /= max(high - low, _EPS)
        used.update(percentiles=[p_low, p_high], clip=[low, high])
    return used
