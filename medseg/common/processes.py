"""Worker processes for CPU-parallel work (fingerprinting, preprocessing) and the cores a process may use."""

from __future__ import annotations

import multiprocessing
import os
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


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset``, a container's cpuset or
    a scheduler's allocation), which can be fewer than the machine's ``os.cpu_count()``; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)
