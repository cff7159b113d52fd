"""One progress bar for long work (cases, epochs, windows): :func:`progress_bar`."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "case",
    enabled: bool = True,
    leave: bool = True,
) -> Any:
    """A tqdm bar on stderr over ``iterable`` (or updated by hand when ``iterable`` is None).

    Args:
        iterable: what to iterate; ``None`` for a bar advanced with ``bar.update(n)``.
        total: number of items (taken from ``len(iterable)`` when it has one).
        desc: what is counted, shown left of the bar (``"evaluate"``, ``"epoch 3/60"``).
        unit: the unit counted (``"case"``, ``"it"``, ``"batch"``).
        enabled: ``False`` gives a silent bar with the same interface (``--quiet``).
        leave: keep the finished bar on screen.
    """
    from tqdm import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=leave,
        dynamic_ncols=True,
        file=sys.stderr,
    )
