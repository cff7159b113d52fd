"""Readable JSON for the files people open: plans, cache records, summaries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def readable_json(value: Any, indent: int = 2, _level: int = 0) -> str:
    """JSON with nested mappings indented and short lists of plain values on one line
    (``"patch_size": [128, 128, 96]``), so plans and summaries read well. Keys are written as
    strings in their given order; an empty mapping gives ``{}``. No trailing newline."""
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {readable_json(v, indent, _level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        flat = json.dumps(list(value), separators=(", ", ": "))
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value) or len(flat) <= 100:
            return flat
        items = [f"{inner}{readable_json(v, indent, _level + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value)
