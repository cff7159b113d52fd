"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values only (numpy RNG state is stored as
a tensor), so it loads with ``torch.load(..., weights_only=True)`` and no pickled code runs.
Writing goes to a temporary file in the same folder, flushed and fsynced, then renamed over
the target: a kill at any moment leaves either the previous or the new checkpoint, never a
torn one.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.errors import MedsegError
from medseg.io import atomic_path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + fsync + rename, via
    :func:`medseg.io.atomic_path`), with the usual permissions (0666 minus the umask); missing
    parent folders are created."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        torch.save(state, stream)
        stream.flush()
        os.fsync(stream.fileno())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or corrupt file raises :class:`MedsegError`."""
    path = Path(path)
    if not path.is_file():
        raise MedsegError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for torn or foreign files
        raise MedsegError(f"{path}: not a loadable medseg checkpoint ({type(exc).__name__}: {exc})") from None


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states, as checkpoint-safe values."""
    numpy_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "name": numpy_state[0],
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
