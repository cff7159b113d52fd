"""Intensity normalisation schemes for CT and MRI (one channel at a time).

A scheme is a plain dict (it lives in the plan JSON), with ``"scheme"`` one of:

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

from typing import Any

import numpy as np

from medseg.errors import ConfigError

SCHEMES = ("ct", "window", "zscore", "percentile", "none")
_SAMPLE = 2_000_000
_EPS = 1e-8


def check_scheme(scheme: dict[str, Any], where: str = "normalization") -> dict[str, Any]:
    """Validate a scheme dict; raises :class:`ConfigError` naming the key and the problem."""
    if not isinstance(scheme, dict) or "scheme" not in scheme:
        raise ConfigError(f"{where}: expected a mapping with a 'scheme' key ({', '.join(SCHEMES)}), got {scheme!r}")
    name = scheme["scheme"]
    if name not in SCHEMES:
        raise ConfigError(f"{where}.scheme: {name!r} is not one of {', '.join(SCHEMES)}")
    allowed = {
        "ct": {"clip", "mean", "std"},
        "window": {"clip"},
        "zscore": {"use_nonzero_mask"},
        "percentile": {"percentiles"},
        "none": set(),
    }[name] | {"scheme", "channel", "channel_name"}
    unknown = sorted(set(scheme) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key for scheme {name!r}; allowed: {', '.join(sorted(allowed))}")
    if name in ("ct", "window"):
        clip = scheme.get("clip")
        if not (isinstance(clip, (list, tuple)) and len(clip) == 2 and all(isinstance(v, (int, float)) for v in clip)):
            raise ConfigError(f"{where}.clip: expected [low, high] numbers, got {clip!r}")
        if not clip[0] < clip[1]:
            raise ConfigError(f"{where}.clip: low must be below high, got {list(clip)}")
    if name == "ct":
        for key in ("mean", "std"):
            if not isinstance(scheme.get(key), (int, float)):
                raise ConfigError(f"{where}.{key}: expected a number (from the dataset fingerprint), got {scheme.get(key)!r}")
        if scheme["std"] <= 0:
            raise ConfigError(f"{where}.std: must be > 0, got {scheme['std']}")
    return scheme


def _sample(values: np.ndarray) -> np.ndarray:
    flat = np.ravel(values, order="K")  # memory order: a view even for transposed arrays
    return flat[:: flat.size // _SAMPLE + 1] if flat.size > _SAMPLE else flat


def normalize(channel: np.ndarray, scheme: dict[str, Any]) -> dict[str, Any]:
    """Normalise one channel ``(X, Y, Z)`` float32 **in place**; returns the parameters used."""
    name = scheme["scheme"]
    used: dict[str, Any] = {"scheme": name}
    if channel.size == 0 or name == "none":
        return used
    if name == "ct":
        low, high = (float(v) for v in scheme["clip"])
        mean, std = float(scheme["mean"]), float(scheme["std"])
        np.clip(channel, low, high, out=channel)
        channel -= mean
        channel /= max(std, _EPS)
        used.update(clip=[low, high], mean=mean, std=std)
    elif name == "window":
        low, high = (float(v) for v in scheme["clip"])
        np.clip(channel, low, high, out=channel)
        channel -= low
        channel /= high - low
        used.update(clip=[low, high])
    elif name == "zscore":
        if scheme.get("use_nonzero_mask"):
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
        used.update(mean=mean, std=std, use_nonzero_mask=bool(scheme.get("use_nonzero_mask", False)))
    elif name == "percentile":
        p_low, p_high = scheme.get("percentiles", [0.5, 99.5])
        low, high = (float(v) for v in np.percentile(_sample(channel), [p_low, p_high]))
        np.clip(channel, low, high, out=channel)
        channel -= low
        channel /= max(high - low, _EPS)
        used.update(percentiles=[p_low, p_high], clip=[low, high])
    return used
