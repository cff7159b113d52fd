"""Worker processes for CPU-parallel work (fingerprinting, preprocessing)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from multiprocessing.context import BaseContext


def process_context(preload: Sequence[str] = ()) -> BaseContext:
    """Multiprocessing context for worker pools: ``forkserver`` with the modules in ``preload``
    (e.g. ``torch`` and the transforms) imported once in the server, so workers start in well
    under a second and nothing is forked from a parent that may hold threads; ``spawn`` where
    forkserver is unavailable (``preload`` is then ignored)."""
    try:
        context = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    context.set_forkserver_preload(list(preload))
    return context
