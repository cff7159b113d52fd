"""YAML configuration of preprocessing (planning overrides) and augmentation, validated.

Every key is checked: an unknown key (with a "did you mean" hint), a wrong type or a value
out of range raises :class:`~medseg.errors.ConfigError` whose message names the file and the
dotted key, e.g. ``configs/aug.yaml: intensity.gamma.p: expected a probability in [0, 1],
got 1.5``. Missing keys take the defaults below (:data:`AUGMENTATION_DEFAULTS`,
:data:`PREPROCESSING_DEFAULTS`), which are also what ``configs/augmentation_default.yaml`` and
``configs/preprocessing_default.yaml`` spell out.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Callable, Mapping

from medseg.errors import ConfigError

# -- field checkers ---------------------------------------------------------------------------
Checker = Callable[[Any], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def probability(value: Any) -> float:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"expected a probability in [0, 1], got {value!r}")
    return float(value)


def number(low: float | None = None, high: float | None = None) -> Checker:
    def check(value: Any) -> float:
        if not _is_number(value):
            raise ValueError(f"expected a number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected a number in [{low}, {high}], got {value!r}")
        return float(value)

    return check


def integer(low: int | None = None) -> Checker:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if low is not None and value < low:
            raise ValueError(f"expected an integer >= {low}, got {value!r}")
        return int(value)

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def value_range(low: float | None = None, high: float | None = None) -> Checker:
    """A ``[min, max]`` pair of numbers with min <= max, inside ``[low, high]``."""

    def check(value: Any) -> list[float]:
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)):
            raise ValueError(f"expected [min, max] (two numbers), got {value!r}")
        a, b = float(value[0]), float(value[1])
        if a > b:
            raise ValueError(f"min must not exceed max, got {list(value)}")
        if (low is not None and a < low) or (high is not None and b > high):
            raise ValueError(f"values must lie in [{low}, {high}], got {list(value)}")
        return [a, b]

    return check


def choice(*options: str) -> Checker:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(map(str, options))}, got {value!r}")
        return value

    return check


def axes_list(value: Any) -> list[int]:
    if not (isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2 for v in value)):
        raise ValueError(f"expected a list of spatial axes among 0, 1, 2, got {value!r}")
    return [int(v) for v in value]


def axcodes(value: Any) -> str:
    """A three-letter orientation code such as ``RAS`` or ``LPS``, or ``auto`` / ``none``."""
    if isinstance(value, str) and value.lower() in ("auto", "none"):
        return value.lower()
    letters = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    code = str(value).upper() if isinstance(value, str) else ""
    if len(code) != 3 or any(c not in letters for c in code) or len({letters[c] for c in code}) != 3:
        raise ValueError(f"expected 'auto', 'none' or an orientation code of three of R/L, A/P, S/I such as 'RAS', got {value!r}")
    return code


def spacing_or_auto(value: Any) -> Any:
    if value == "auto":
        return value
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) and v > 0 for v in value):
        return [float(v) for v in value]
    raise ValueError(f"expected 'auto' or three positive spacings in mm [x, y, z], got {value!r}")


def window_or_percentiles(value: Any) -> Any:
    if value == "percentiles":
        return value
    try:
        return value_range()(value)
    except ValueError:
        raise ValueError(f"expected 'percentiles' or a HU window [low, high], got {value!r}") from None


def optional(checker: Checker) -> Checker:
    def check(value: Any) -> Any:
        return None if value is None else checker(value)

    return check


# -- schemas ----------------------------------------------------------------------------------
AUGMENTATION_SCHEMA: dict[str, Any] = {
    "spatial": {
        "rotation": {"p": probability, "degrees": value_range(-180, 180)},
        "scale": {"p": probability, "range": value_range(0.05, 20)},
        "elastic": {"p": probability, "magnitude_voxels": value_range(0, 100), "sigma_voxels": value_range(1, 100)},
        "flip": {"p": probability, "axes": axes_list},
        "rot90": {"p": probability, "axes": axes_list},
    },
    "intensity": {
        "gaussian_noise": {"p": probability, "variance": value_range(0, None)},
        "gaussian_blur": {"p": probability, "sigma": value_range(0, 10)},
        "brightness": {"p": probability, "multiplier": value_range(0, None)},
        "contrast": {"p": probability, "factor": value_range(0, None)},
        "low_resolution": {"p": probability, "zoom": value_range(0.05, 1)},
        "gamma": {"p": probability, "gamma": value_range(0.01, 10), "p_invert": probability, "retain_stats": boolean},
    },
}

AUGMENTATION_DEFAULTS: dict[str, Any] = {
    "spatial": {
        "rotation": {"p": 0.2, "degrees": [-30.0, 30.0]},
        "scale": {"p": 0.2, "range": [0.7, 1.4]},
        "elastic": {"p": 0.0, "magnitude_voxels": [0.0, 4.0], "sigma_voxels": [8.0, 12.0]},
        "flip": {"p": 0.5, "axes": [0, 1, 2]},
        "rot90": {"p": 0.0, "axes": [0, 1]},
    },
    "intensity": {
        "gaussian_noise": {"p": 0.1, "variance": [0.0, 0.1]},
        "gaussian_blur": {"p": 0.2, "sigma": [0.5, 1.0]},
        "brightness": {"p": 0.15, "multiplier": [0.75, 1.25]},
        "contrast": {"p": 0.15, "factor": [0.75, 1.25]},
        "low_resolution": {"p": 0.25, "zoom": [0.5, 1.0]},
        "gamma": {"p": 0.3, "gamma": [0.7, 1.5], "p_invert": 0.1, "retain_stats": True},
    },
}

PREPROCESSING_SCHEMA: dict[str, Any] = {
    "orientation": axcodes,
    "target_spacing_mm": spacing_or_auto,
    "anisotropy_threshold": number(1.0, None),
    "image_interpolation": choice("linear", "bspline"),
    "label_interpolation": choice("nearest", "linear"),
    "keep_all_classes": boolean,
    "crop": choice("auto", "body", "nonzero", "none"),
    "crop_margin_voxels": integer(0),
    "normalization": choice("auto", "ct", "zscore", "percentile", "none"),
    "ct_clip": window_or_percentiles,
    "zscore_nonzero_mask": choice("auto", "always", "never"),
    "cache_dtype": choice("float32", "float16"),
    "class_locations_per_class": integer(1),
    "network": {
        "base_channels": integer(1),
        "max_channels": integer(1),
        "gpu_memory_gib": number(0.1, None),
        "batch_size_3d": integer(1),
        "max_batch_size_2d": integer(1),
        "patch_size_3d": optional(lambda v: _voxels(v, 3)),
        "patch_size_2d": optional(lambda v: _voxels(v, 2)),
    },
}

PREPROCESSING_DEFAULTS: dict[str, Any] = {
    "orientation": "auto",
    "target_spacing_mm": "auto",
    "anisotropy_threshold": 3.0,
    "image_interpolation": "linear",
    "label_interpolation": "nearest",
    "keep_all_classes": True,
    "crop": "auto",
    "crop_margin_voxels": 2,
    "normalization": "auto",
    "ct_clip": "percentiles",
    "zscore_nonzero_mask": "auto",
    "cache_dtype": "float32",
    "class_locations_per_class": 2000,
    "network": {
        "base_channels": 32,
        "max_channels": 320,
        "gpu_memory_gib": 8.0,
        "batch_size_3d": 2,
        "max_batch_size_2d": 64,
        "patch_size_3d": None,
        "patch_size_2d": None,
    },
}


def _voxels(value: Any, n: int) -> list[int]:
    if isinstance(value, (list, tuple)) and len(value) == n and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return [int(v) for v in value]
    raise ValueError(f"expected {n} positive voxel counts, got {value!r}")


# -- validation -------------------------------------------------------------------------------
def validate(config: Any, schema: Mapping[str, Any], defaults: Mapping[str, Any], source: str = "<config>", prefix: str = "") -> dict[str, Any]:
    """Check ``config`` against ``schema`` and fill in ``defaults``; returns a new dict.

    Raises :class:`ConfigError` naming ``source`` and the dotted key on an unknown key, a
    wrong type or an out-of-range value. ``None`` or an empty mapping gives the defaults.
    """
    if config is None:
        config = {}
    where = prefix.rstrip(".") or "top level"
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping of keys, got {type(config).__name__} {config!r}")
    result = copy.deepcopy(dict(defaults))
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            hint = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{source}: {dotted}: unknown key{suggestion}; allowed here: {', '.join(map(str, schema))}")
        rule = schema[key]
        if isinstance(rule, Mapping):
            result[key] = validate(value, rule, defaults.get(key, {}), source, f"{dotted}.")
        else:
            try:
                result[key] = rule(value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {dotted}: {exc}") from None
    return result


def _load_section(config: Any, section: str, schema: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` (a YAML path, a dict or ``None``), unwrapping a lone top-level ``section:`` key."""
    from medseg.config import load_yaml

    source = f"<{section} config>"
    if isinstance(config, (str, Path)):
        config, source = load_yaml(config), str(Path(config).expanduser())
    if isinstance(config, Mapping) and set(config) == {section}:
        config = config[section]
    return validate(config, schema, defaults, source)


def load_augmentation_config(config: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Augmentation settings from a YAML file, a dict (e.g. the ``augmentation`` section of a
    training config) or ``None`` (defaults). A top-level ``augmentation:`` key is unwrapped."""
    return _load_section(config, "augmentation", AUGMENTATION_SCHEMA, AUGMENTATION_DEFAULTS)


def load_preprocessing_config(config: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Planning / preprocessing settings from a YAML file, a dict or ``None`` (defaults).
    A top-level ``preprocessing:`` key is unwrapped."""
    return _load_section(config, "preprocessing", PREPROCESSING_SCHEMA, PREPROCESSING_DEFAULTS)
