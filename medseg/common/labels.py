"""Label specs: the one ``--labels`` grammar and the one reader of dataset.json labels.

A **label spec** (``medseg evaluate --labels``, ``medseg submit --labels``, ``submit check --labels``) is

* a ``dataset.json`` (or a folder holding one): its ``labels``, in the nnU-Net v2 layout
  ``{"background": 0, "liver": 1}`` or the MSD layout ``{"0": "background", "1": "liver"}``;
* or a comma-separated list whose items are ``3`` (a value), ``1-3`` (the values 1, 2 and 3),
  ``liver=1`` (a value and its name) or ``liver`` (a name the command already knows: the manifest's
  labels, the dataset.json beside the references, or the submission format's labels).

Values are whole numbers in 0..65535. 0 is background: ``evaluate`` never scores it, ``submit``
always allows it, so ``0-3`` and ``1-3`` mean the same to both. A value named twice differently, a
backwards range and an unknown name are errors. Region-based nnU-Net labels (a list of values per
name) are refused: medseg needs one value per label.

:func:`label_names_from_mapping` is the rule for a ``labels`` mapping in either layout; manifests
(``medseg.data.manifest``) read a dataset.json's labels and a CSV's ``# labels:`` line with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from medseg.errors import ConfigError, InvalidArgumentError

#: largest label value (label maps are uint8, or uint16 above 255)
MAX_LABEL_VALUE = 65535
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def label_names_from_mapping(
    raw: object, source: str | Path, error: type[InvalidArgumentError] = ConfigError
) -> dict[int, str]:
    """``{value: name}`` (sorted by value) from a ``labels`` mapping in the nnU-Net v2 layout
    (``{"liver": 1}``) or the MSD layout (``{"1": "liver"}``; a key of digits with a text value).

    Values may be integers or digit strings (a CSV manifest's ``# labels:`` line); 0 is kept when given.

    Raises:
        ``error`` (ConfigError for a file, InvalidArgumentError for a Python argument), naming ``source``:
            an empty or non-mapping ``raw``, a region (list of values), a value that is not a whole
            number in 0..65535, or a value used twice.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise error(f"{source}: 'labels' must be a non-empty mapping")
    names: dict[int, str] = {}
    for key, value in raw.items():
        if _is_whole(key) and isinstance(value, str) and not _is_whole(value):  # MSD: {"0": "background"}
            name, number = value, key
        else:  # nnU-Net v2: {"background": 0}
            name, number = str(key), value
        if isinstance(number, list):
            raise error(f"{source}: label {name!r} is a region (list of values); medseg needs one value per label")
        if not _is_whole(number):
            raise error(f"{source}: label {name!r} has value {number!r}, which is not an integer")
        number = int(float(number)) if isinstance(number, float) else int(number)  # type: ignore[arg-type]
        if not 0 <= number <= MAX_LABEL_VALUE:
            raise error(f"{source}: label {name!r} = {number} is outside 0..{MAX_LABEL_VALUE}")
        if number in names:
            raise error(f"{source}: label value {number} is used twice ({names[number]!r} and {name!r})")
        names[number] = name
    return dict(sorted(names.items()))


def read_dataset_json_labels(path: str | Path) -> dict[int, str]:
    """``{value: name}`` from a dataset.json's ``labels`` (either layout, see :func:`label_names_from_mapping`);
    a folder means its ``dataset.json``. Raises :class:`ConfigError` naming the file."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "dataset.json"
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such dataset.json") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(content, dict) or "labels" not in content:
        raise ConfigError(f"{path}: has no 'labels' mapping")
    return label_names_from_mapping(content["labels"], path)


def parse_label_spec(spec: object, known: Mapping[int, str] | None = None) -> dict[int, str] | None:
    """Label values and names, ``{value: name}`` sorted by value, from a label spec (module docstring).

    Args:
        spec: the ``--labels`` text or a path (``None`` or ``""`` give ``None``: no spec), or, from
            Python, a mapping (either layout) or an iterable of values.
        known: ``{value: name}`` the command already knows; they name bare values and ranges and
            resolve bare names. A value without a known name is named by its number (``"3"``).

    Raises:
        InvalidArgumentError: unreadable items, backwards ranges, unknown names, values outside 0..65535,
            a value named twice differently. ConfigError: a dataset.json that cannot be read.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    known = dict(known or {})
    if isinstance(spec, Mapping):
        return label_names_from_mapping(spec, "labels", InvalidArgumentError)
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        path = Path(text).expanduser()
        if text.lower().endswith(".json") or (path / "dataset.json").is_file():
            return read_dataset_json_labels(path)
        return _parse_list(text, known)
    values = list(spec)  # an iterable of values
    if not all(_is_whole(v) and not isinstance(v, str) for v in values):
        raise InvalidArgumentError(f"labels {values!r}: expected whole-number label values")
    return _parse_list(",".join(str(int(v)) for v in values), known)


def _parse_list(text: str, known: dict[int, str]) -> dict[int, str]:
    by_name = {name: value for value, name in known.items()}
    out: dict[int, str] = {}

    def add(value: int, name: str | None, item: str) -> None:
        if value > MAX_LABEL_VALUE:
            raise InvalidArgumentError(f"--labels {text!r}: {item!r}: value {value} is outside 0..{MAX_LABEL_VALUE}")
        name = name or known.get(value, str(value))
        if out.setdefault(value, name) != name:
            raise InvalidArgumentError(f"--labels {text!r}: value {value} is named both {out[value]!r} and {name!r}")

    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if sep:
            if not name.strip() or not re.fullmatch(r"[0-9]+", value.strip()):
                raise InvalidArgumentError(f"--labels {text!r}: {item!r} must be name=value with a whole-number value")
            add(int(value), name.strip(), item)
        elif match := _RANGE.fullmatch(item):
            low, high = int(match.group(1)), int(match.group(2) or match.group(1))
            if high < low:
                raise InvalidArgumentError(f"--labels {text!r}: range {item!r} runs backwards")
            if high - low > MAX_LABEL_VALUE:
                raise InvalidArgumentError(f"--labels {text!r}: {item!r}: values are at most {MAX_LABEL_VALUE}")
            for number in range(low, high + 1):
                add(number, None, item)
        elif item in by_name:
            add(by_name[item], item, item)
        else:
            hint = f"known names: {', '.join(by_name)}" if by_name else "no label names are known here; use name=value"
            raise InvalidArgumentError(
                f"--labels {text!r}: cannot read {item!r}; use values (1,2), ranges (1-3), name=value or a "
                f"dataset.json ({hint})"
            )
    return dict(sorted(out.items()))


def _is_whole(value: object) -> bool:
    """True for an int (not bool), a whole float, or a text of ASCII digits (optionally ``-``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if hasattr(value, "dtype") and hasattr(value, "item"):  # NumPy integers
        return _is_whole(value.item())
    return isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()) is not None
