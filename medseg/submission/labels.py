"""Label remapping from a model's training labels to a challenge's labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError, InvalidArgumentError


def parse_label_map(spec: str | Path | dict | None) -> dict[int, int]:
    """Read a label map ``{training label: challenge label}``.

    Accepts ``"1:2,2:1"`` (swap 1 and 2), ``"3:0"`` (drop label 3), a path to a YAML or JSON
    file holding a mapping (``{1: 2, 2: 1}``; keys may be strings of digits), or a dict.
    Labels not listed keep their value. ``None`` or ``""`` gives ``{}`` (no remapping).
    Every label must be a whole number in 0..255; a training label listed twice is an error.
    """
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return _validated(spec, "label map", InvalidArgumentError)
    text = str(spec).strip()
    if not text:
        return {}
    path = Path(text).expanduser()
    if path.suffix.lower() in (".json", ".yaml", ".yml") or path.is_file():
        return _validated(_read_mapping_file(path), str(path), ConfigError)
    pairs: dict[str, str] = {}
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)[:=](\d+)", part)
        if not match:
            raise InvalidArgumentError(
                f"--label-map: cannot read {part!r} in {text!r}; use FROM:TO pairs, e.g. 1:2,2:1"
            )
        if match.group(1) in pairs:
            raise InvalidArgumentError(f"--label-map: label {match.group(1)} is mapped twice in {text!r}")
        pairs[match.group(1)] = match.group(2)
    return _validated(pairs, f"--label-map {text!r}", InvalidArgumentError)


def _read_mapping_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the label map ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            content = json.loads(text)
        else:
            import yaml

            content = yaml.safe_load(text)
    except Exception as exc:  # json/yaml raise several types
        raise ConfigError(f"{path}: not a valid label map file ({type(exc).__name__}: {exc})") from None
    if isinstance(content, dict) and isinstance(content.get("label_map"), dict):
        content = content["label_map"]
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a label map must be a mapping of training label to challenge label")
    return content


def _validated(mapping: dict, where: str, error: type[InvalidArgumentError]) -> dict[int, int]:
    """``mapping`` as ``{int: int}``; ``error`` (ConfigError for a file, else InvalidArgumentError) names ``where``."""
    result: dict[int, int] = {}
    for key, value in mapping.items():
        source, target = _as_label(key, where, error), _as_label(value, where, error)
        if source in result:
            raise error(f"{where}: label {source} is mapped twice")
        result[source] = target
    return result


def _as_label(value: object, where: str, error: type[InvalidArgumentError]) -> int:
    if isinstance(value, bool):
        raise error(f"{where}: {value!r} is not a label value")
    if isinstance(value, (int, np.integer)):
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise error(f"{where}: {value!r} is not a whole-number label value")
    if not 0 <= number <= 255:
        raise error(f"{where}: label {number} is outside 0..255 (submissions are uint8)")
    return number


def remap_labels(labels: np.ndarray, label_map: dict[int, int]) -> np.ndarray:
    """Apply ``label_map`` to a label array of any shape; unlisted labels keep their value.

    All pairs apply at once (so ``{1: 2, 2: 1}`` swaps). Done with one NumPy lookup table,
    O(voxels). The result has the input's dtype, or uint16 when a target does not fit it.
    An empty map returns the input unchanged; an empty array returns an empty array.
    """
    labels = np.asarray(labels)
    if not label_map or labels.size == 0:
        return labels
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise InvalidArgumentError("label remapping needs a non-negative integer label array")
    size = max(int(labels.max()), max(label_map)) + 1
    dtype = np.promote_types(labels.dtype, np.min_scalar_type(max(label_map.values())))
    table = np.arange(size, dtype=dtype)
    for source, target in label_map.items():
        table[source] = target
    return table[labels]
