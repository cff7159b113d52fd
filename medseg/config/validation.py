"""The one validation mechanism for every config, plan and run spec: dataclasses and :func:`from_dict`.

A config section is a dataclass; :func:`from_dict` builds it from a mapping and rejects
unknown keys, wrong types and values its rules refuse, with a
:class:`~medseg.errors.ConfigError` that names the file, the key path (``train.lr``) and the
reason. Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``,
``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses. A field made with :func:`setting` (or :func:`bounded`, :func:`span`) also carries
a rule, such as a range, and the words its errors use (``intensity.gamma.p must be a
probability in [0, 1], got 1.5``); an unknown key gets a "did you mean" hint.

Sections derive from :class:`Section`, whose ``__post_init__`` applies the same field rules
to a section built in Python (``UNetConfig(dropout=2.0)`` raises
:class:`~medseg.errors.InvalidArgumentError`, a ``ValueError``). A rule that involves several fields goes in the
section's ``__post_init__`` (after ``super().__post_init__()``), raising
:class:`~medseg.errors.InvalidArgumentError` with a message that starts with the field name;
:func:`from_dict` turns it into a :class:`~medseg.errors.ConfigError` with the key path in front.
:func:`to_dict` gives the plain (JSON/YAML) form; fields made with :func:`optional` are left
out of it while they are ``None``, so optional keys are written only when they say something.
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

from medseg.errors import ConfigError, InvalidArgumentError

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
    values = {
        name: _field_value(raw, hints[name], fields[name], _join(where, name), prefix) for name, raw in data.items()
    }
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
        raise ConfigError(f"{prefix}{_join(where, str(exc))}") from None


class Section:
    """Base of config sections: a section built in Python is checked against its field types'
    choices (``Literal``) and its :func:`setting` rules, as :func:`from_dict` checks a file.
    Raises :class:`~medseg.errors.InvalidArgumentError` naming the class and the field
    (``UNetConfig: dropout must be a number in [0, 1), got 2.0``)."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.init:
                try:
                    _field_value(getattr(self, f.name), hints[f.name], f, f.name, "")
                except ConfigError as exc:
                    raise InvalidArgumentError(f"{type(self).__name__}: {exc}") from None


def setting(default: Any, what: str, valid: Callable[[Any], bool] | None = None) -> Any:
    """A dataclass field with an immutable ``default`` (use tuples, not lists) whose value
    :func:`from_dict` also checks with ``valid`` (given the converted value; ``False`` refuses it,
    and a ``ValueError`` it raises refuses it with the error's text as the reason).
    Any error for this key, a wrong type included, then reads ``<key> must be <what>, got <value>``."""
    return dataclasses.field(default=default, metadata={"what": what, "valid": valid})


def required(what: str, valid: Callable[[Any], bool]) -> Any:
    """A field without a default whose value must pass ``valid`` (see :func:`setting`)."""
    return setting(dataclasses.MISSING, what, valid)


def optional(what: str = "", valid: Callable[[Any], bool] | None = None) -> Any:
    """A field that defaults to ``None`` and is left out of :func:`to_dict`'s plain form while it
    is ``None`` (e.g. a plan key written only for some datasets). ``what``/``valid`` as in
    :func:`setting` (the rule is not applied to ``None``)."""
    metadata: dict[str, Any] = {"omit_if_none": True}
    if what:
        metadata.update(what=what, valid=None if valid is None else (lambda value: value is None or valid(value)))
    return dataclasses.field(default=None, metadata=metadata)


def positive(default: float) -> Any:
    """A :func:`setting` for a number > 0."""
    return setting(default, "a number > 0", lambda value: value > 0)


def fraction(default: float) -> Any:
    """A :func:`setting` for a number in [0, 1) (an overlap, a smoothing factor, a dropout)."""
    return setting(default, "a number in [0, 1)", lambda value: 0 <= value < 1)


def bounded(default: float, low: float = -math.inf, high: float = math.inf, noun: str = "") -> Any:
    """A :func:`setting` for a number with ``low <= value <= high``; errors say e.g. ``a probability
    in [0, 1]`` (``noun`` defaults to ``an integer`` or ``a number``, after the type of ``default``)."""
    noun = noun or ("an integer" if isinstance(default, int) else "a number")
    limits = (
        f"in [{low:g}, {high:g}]"
        if low > -math.inf and high < math.inf
        else f">= {low:g}"
        if low > -math.inf
        else f"<= {high:g}"
    )
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def to_dict(config: Any) -> Any:
    """Plain (YAML/JSON-ready) form of a config dataclass: nested dicts, tuples as lists, paths
    as strings; :func:`optional` fields that are ``None`` are left out. ``from_dict`` of the
    result gives an equal dataclass."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: to_dict(getattr(config, f.name))
            for f in dataclasses.fields(config)
            if not (f.metadata.get("omit_if_none") and getattr(config, f.name) is None)
        }
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


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
    reason = ""
    try:
        value = _convert(raw, annotation, where, prefix)
        if valid is None or valid(value):
            return value
    except ConfigError:
        pass
    except ValueError as exc:
        reason = f" ({exc})"
    raise ConfigError(f"{prefix}{where} must be {what}, got {raw!r}{reason}")


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
        if isinstance(value, annotation):  # built in Python: checked when it was made
            return value
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
            _convert(k, key_type, where, prefix): _convert(v, value_type, f"{where}.{k}", prefix)
            for k, v in value.items()
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
        if isinstance(value, Path):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{prefix}{where} must be a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{prefix}{where}: unsupported config type {annotation!r}")
