"""Atomic file writes: a temporary file beside the target, renamed over it only when complete.

Every writer in medseg that replaces a file (volumes, cache arrays, checkpoints, CSV/JSON
reports, submission zips) goes through :func:`atomic_path` (a ``.mhd``/``.nhdr`` header and its
data file are moved as a pair instead, see :func:`medseg.io.save_volume`), so a reader of the
target sees either the old file or the new one, never a half-written one, and the new file gets the
permissions ``open()`` would have given it rather than ``mkstemp``'s private ``0o600``.
:func:`atomic_save_npy` writes a NumPy array that way and :func:`atomic_directory` builds a
whole folder under a temporary name. Standard library (``tempfile``, ``os.replace``) and NumPy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary is an empty file named ``.tmp-<name>-<random><suffix>`` in ``path``'s folder
    (created, with missing parents, if needed), so the rename stays on one file system. Give
    ``suffix`` when the writer chooses its format from the extension (``".nii.gz"`` for nibabel,
    ``".npy"`` for ``np.save``). The block writes to the yielded path by name (reopen it; it may
    also be replaced, e.g. by a library that writes its own file at that name).

    What a reader of ``path`` observes: the previous file (or no file) until the block has
    finished, then the complete new file, swapped in by one ``os.replace`` (atomic on POSIX).
    Before the rename the temporary gets ``mode`` (``None``: :func:`default_file_mode`, i.e.
    0666 minus the umask, what ``open()`` gives a new file; pass ``path.stat().st_mode & 0o7777``
    to keep an existing file's permissions).

    Failure: if the block, the ``chmod`` or the rename raises (any exception, ``KeyboardInterrupt``
    included), the temporary is deleted, ``path`` is left exactly as it was, and the exception
    propagates. Nothing is fsynced: a caller that must survive a power cut fsyncs inside the block.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-", suffix=suffix)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path` (same guarantees: old or new content,
    never partial; permissions 0666 minus the umask; the parent folder is created if missing).

    Encoded as UTF-8 whatever the locale (manifests, JSON and CSV files travel between machines); newlines
    are ``open``'s default translation. Empty ``text`` writes an empty file. Returns ``path`` as a
    :class:`~pathlib.Path`.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            stream.write(text)
    return path


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """``np.save`` (C order, no pickles) to ``path`` through :func:`atomic_path` (same guarantees
    and permissions). An empty array is saved as such. Returns ``path`` as a :class:`~pathlib.Path`."""
    path = Path(path)
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
    return path


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``out_dir``; rename it into place on success.

    Yields the temporary folder to fill. On success it replaces ``out_dir``: a missing or
    empty ``out_dir`` directly; a non-empty one only with ``overwrite`` (the old folder is
    renamed aside, the new one renamed in, then the old one deleted). On failure the
    temporary folder is deleted and ``out_dir`` is left as it was. The folder gets the
    permissions ``mkdir`` would give it (0777 minus the umask), not ``mkdtemp``'s 0700.

    Raises (before anything is written): ``NotADirectoryError`` when ``out_dir`` is a file,
    ``FileExistsError`` when it is a non-empty folder and ``overwrite`` is false.
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(20, "output exists and is not a folder", str(out_dir))
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(17, "output folder is not empty (overwrite it explicitly)", str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".tmp-{out_dir.name}-"))
    try:
        os.chmod(tmp_dir, default_file_mode(folder=True))  # mkdtemp creates 0700
        yield tmp_dir
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".old-{out_dir.name}-"))
            os.replace(out_dir, old / out_dir.name)
            os.replace(tmp_dir, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def default_file_mode(*, folder: bool = False) -> int:
    """The permission bits a new file (``0o666``) or folder (``0o777``, ``folder=True``) gets
    from ``open()`` / ``mkdir()``: those minus the process umask (e.g. ``0o644`` / ``0o755``
    under umask 022).

    ``tempfile.mkstemp`` creates files with ``0o600`` and ``mkdtemp`` folders with ``0o700``;
    atomic writers ``os.chmod`` their temporary to this before renaming it into place, so the
    result is as readable by colleagues as a file written directly. The umask is read from
    ``/proc/self/status`` where Linux provides it (the process umask is left alone), else by
    setting and restoring it with ``os.umask``.
    """
    base = 0o777 if folder else 0o666
    return base & ~_process_umask()


def _process_umask() -> int:
    """The process umask (e.g. ``0o022``), left unchanged where ``/proc/self/status`` reports it."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # not thread-safe, hence only the fallback
    os.umask(umask)
    return umask


def ensure_writable_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if missing and prove that files can be written in it.

    Call it before long work whose result goes there, so a bad output path fails in a second, not
    after the computation. Raises ``OSError`` naming the path: a file stands where a folder is
    needed (``NotADirectoryError``/``FileExistsError``), no permission, read-only or full file
    system. Returns the folder.
    """
    folder = Path(folder).expanduser()
    for parent in (folder, *folder.parents):  # name the file that is in the way, not a child of it
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(20, "a file is in the way (a folder is needed here)", str(parent))
            break
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".medseg-write-test-"):
        pass
    return folder


def ensure_writable_file(path: str | Path) -> Path:
    """:func:`ensure_writable_folder` for the folder of the file ``path``, and ``path`` itself must not be a
    folder (``IsADirectoryError``). Nothing is written at ``path``. Returns ``path``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder, a file name is needed here", str(path))
    ensure_writable_folder(path.parent)
    return path
