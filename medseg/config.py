"""Typed configuration: YAML files in ``configs/`` validated into dataclasses.

A config section is a dataclass; :func:`from_dict` builds it from a mapping and rejects
unknown keys, wrong types and values its ``__post_init__`` refuses, with a
:class:`~medseg.errors.ConfigError` that names the file, the key path (``train.lr``) and the
reason. Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``,
``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses. A field made with :func:`setting` (or :func:`bounded`, :func:`span`) also carries
a rule, such as a range, and the words its errors use (``intensity.gamma.p must be a
probability in [0, 1], got 1.5``); an unknown key gets a "did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from medseg.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "", source: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (``None`` means all defaults); see the module docstring."""
    prefix = f"{source}: " if source else ""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix}{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        names = ", ".join(_join(where, str(k)) + _did_you_mean(str(k), fields) for k in unknown)
        raise ConfigError(f"{prefix}unknown key(s) {names}; allowed: {', '.join(sorted(fields))}")
    values = {name: _field_value(raw, hints[name], fields[name], _join(where, name), prefix) for name, raw in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{prefix}missing required key(s) {', '.join(_join(where, m) for m in missing)}")
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix}{exc}") from None


def setting(default: Any, what: str, valid: Callable[[Any], bool] | None = None) -> Any:
    """A dataclass field with an immutable ``default`` (use tuples, not lists) whose value
    :func:`from_dict` also checks with ``valid`` (given the converted value; ``False`` refuses it).
    Any error for this key, a wrong type included, then reads ``<key> must be <what>, got <value>``."""
    return dataclasses.field(default=default, metadata={"what": what, "valid": valid})


def bounded(default: float, low: float = -math.inf, high: float = math.inf, noun: str = "") -> Any:
    """A :func:`setting` for a number with ``low <= value <= high``; errors say e.g. ``a probability
    in [0, 1]`` (``noun`` defaults to ``an integer`` or ``a number``, after the type of ``default``)."""
    noun = noun or ("an integer" if isinstance(default, int) else "a number")
    limits = f"in [{low:g}, {high:g}]" if low > -math.inf and high < math.inf else f">= {low:g}" if low > -math.inf else f"<= {high:g}"
    return setting(default, f"{noun} {limits}", lambda value: low <= value <= high)


def span(default: tuple[float, float], low: float = -math.inf, high: float = math.inf) -> Any:
    """A :func:`setting` for a ``[min, max]`` pair (annotate it ``tuple[float, float]``) with
    ``low <= min <= max <= high``."""
    limits = (f"{low:g} <= " if low > -math.inf else "") + "min <= max" + (f" <= {high:g}" if high < math.inf else "")
    return setting(default, f"[min, max] with {limits}", lambda pair: low <= pair[0] <= pair[1] <= high)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or bad YAML raises :class:`ConfigError` naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_dict(config: Any) -> Any:
    """Plain (YAML/JSON-ready) form of a config dataclass: nested dicts, tuples as lists."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _did_you_mean(name: str, allowed: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_value(raw: Any, annotation: Any, field: dataclasses.Field, where: str, prefix: str) -> Any:
    """``raw`` converted to ``annotation``, and checked by the field's :func:`setting` rule."""
    what, valid = field.metadata.get("what"), field.metadata.get("valid")
    if what is None:
        return _convert(raw, annotation, where, prefix)
    try:
        value = _convert(raw, annotation, where, prefix)
        if valid is None or valid(value):
            return value
    except ConfigError:
        pass
    raise ConfigError(f"{prefix}{where} must be {what}, got {raw!r}")


def _convert(value: Any, annotation: Any, where: str, prefix: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, where, prefix)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1])
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{prefix}{where} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value, where, prefix.removesuffix(": "))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{prefix}{where} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{prefix}{where} must have {len(args)} entries, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]", prefix) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{where}[{i}]", prefix) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{prefix}{where} must be a mapping, got {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {
            _convert(k, key_type, where, prefix): _convert(v, value_type, f"{where}.{k}", prefix) for k, v in value.items()
        }
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{prefix}{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{prefix}{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{prefix}{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{where} must be a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{where} must be a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{prefix}{where}: unsupported config type {annotation!r}")
