"""``metrics.csv``: the one schema, writer and reader of an evaluation's table of values.

Every reader and writer of the file uses this module (``medseg evaluate`` writes it, ``evaluate
compare`` and ``medseg submit --format grand-challenge`` read it).

Schema (long form, one row per case, label, region and metric)::

    case,label,region,metric,value,flag

* ``case``: the case id; ``label``: the label's name (or its value when unnamed);
* ``region``: ``all``, ``base``, ``middle`` or ``apex``;
* ``metric``: a metric name (:data:`medseg.evaluation.metrics.ALL_METRICS`);
* ``value``: a number as Python's ``repr(float)`` writes it, ``nan`` when undefined;
* ``flag``: empty, or why the value is a convention (``both_empty``, ``ref_empty``, ...).

A case that failed has one **error row**: metric ``error``, empty label and region, value ``nan``
and the message in ``flag``. :class:`MetricsWriter` appends rows as cases finish (an interrupted
run keeps them); :func:`write_metrics_csv` rewrites the file atomically at the end.
:func:`read_metrics_csv` checks a file against the schema and returns its rows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medseg.errors import InvalidArgumentError
from medseg.io import atomic_path

COLUMNS = ("case", "label", "region", "metric", "value", "flag")
#: the ``metric`` of a failed case's row
ERROR_METRIC = "error"
_KEY = ("case", "label", "region", "metric")
_SHOWN_PROBLEMS = 10


def _cells(row: dict[str, Any]) -> list[Any]:
    value = row["value"]
    text = "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))
    return [row["case"], row["label"], row["region"], row["metric"], text, row["flag"]]


class MetricsWriter:
    """Appends rows to a new ``metrics.csv`` (header first), flushed after each :meth:`write`."""

    def __init__(self, path: str | Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.handle)
        self.writer.writerow(COLUMNS)
        self.handle.flush()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        self.writer.writerows(_cells(row) for row in rows)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def write_metrics_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts with the :data:`COLUMNS` keys) as ``metrics.csv``, replacing ``path`` atomically."""
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(_cells(row) for row in rows)


def read_metrics_csv(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.csv`` as dicts with the :data:`COLUMNS` keys, in file order, error rows included.

    ``value`` is a float (NaN for ``nan`` or an empty cell); an empty ``region`` of a value row reads as
    ``all``; a missing ``flag`` column reads as empty flags. An empty table gives ``[]``.

    Raises:
        OSError: the file cannot be opened (the error names it).
        InvalidArgumentError: naming the file: a required column is missing, or rows with an empty case or
            metric, a value that is not a number, or a repeated ``(case, label, region, metric)``; the
            first problems are listed with their line numbers.
    """
    path = Path(path).expanduser()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c != "flag" and c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidArgumentError(
                f"{path}: not a metrics.csv: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
            )
        rows: list[dict[str, Any]] = []
        problems: list[str] = []
        seen: set[tuple[str, ...]] = set()
        for line, raw in enumerate(reader, start=2):
            row = {c: (raw.get(c) or "").strip() for c in COLUMNS}
            if row["metric"] != ERROR_METRIC and not row["region"]:
                row["region"] = "all"
            key = tuple(row[c] for c in _KEY)
            if not row["case"] or not row["metric"]:
                problems.append(f"line {line}: empty case or metric")
            elif key in seen:
                problems.append(f"line {line}: {'/'.join(key)} appears twice")
            else:
                try:
                    row["value"] = float(row["value"]) if row["value"] else math.nan
                except ValueError:
                    problems.append(f"line {line}: value {row['value']!r} is not a number")
                    continue
                seen.add(key)
                rows.append(row)
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        if len(problems) > _SHOWN_PROBLEMS:
            shown += f"; and {len(problems) - _SHOWN_PROBLEMS} more"
        raise InvalidArgumentError(f"{path}: {len(problems)} bad row(s) in the metrics table: {shown}")
    return rows


def scored_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` without the error rows of failed cases."""
    return [row for row in rows if row["metric"] != ERROR_METRIC]


def metrics_frame(rows: Iterable[dict[str, Any]]):
    """A ``pandas.DataFrame`` with the :data:`COLUMNS` of ``rows`` (all text but ``value``)."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(COLUMNS))


def read_metrics_frame(path: str | Path):
    """The scored rows of a ``metrics.csv`` (error rows dropped) as a ``pandas.DataFrame``; see
    :func:`read_metrics_csv`."""
    return metrics_frame(scored_rows(read_metrics_csv(path)))
