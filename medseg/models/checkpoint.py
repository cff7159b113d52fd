"""Checkpoints: written atomically, loaded with ``weights_only=True``.

Training writes them (:mod:`medseg.training.engine`) and inference reads them
(:class:`medseg.inference.predict.Predictor`), so they live here, below both. A checkpoint is a
dict of tensors and plain Python values only (numpy RNG state is stored as a tensor; the run it
belongs to as a plain :class:`~medseg.config.run_spec.TrainedRun`), so it loads with
``torch.load(..., weights_only=True)`` and no pickled code runs.
Writing goes to a temporary file in the same folder, flushed and fsynced, then renamed over
the target: a kill at any moment leaves either the previous or the new checkpoint, never a
torn one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
