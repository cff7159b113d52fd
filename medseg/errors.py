"""Exceptions raised by medseg. Every message names the file (or case) and the problem.

One hierarchy: everything medseg raises on purpose is a :class:`MedsegError`, so the command
line can turn it into one line. Errors about a value (a bad argument, a bad config key, two
grids that disagree) are also :class:`ValueError`, so ``except ValueError`` keeps working for
callers of the Python API. Operating-system failures (a missing folder, no permission, a full
disk) stay :class:`OSError`; the command line reports those in one line too, naming the path.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class for all errors medseg raises on purpose."""


class VolumeReadError(MedsegError):
    """A file or folder could not be read as a volume (unreadable, truncated, unsupported)."""


class DicomSeriesError(VolumeReadError):
    """A DICOM folder is ambiguous or inconsistent (several series, missing or duplicated slices, ...)."""


class InvalidArgumentError(MedsegError, ValueError):
    """A function or command was given a value it cannot use (out of range, unknown name, wrong shape)."""


class GeometryError(InvalidArgumentError):
    """Two volumes that must share a voxel grid do not (shape, spacing, origin or direction differ)."""


class ConfigError(InvalidArgumentError):
    """A configuration file, plan or manifest is invalid; the message names the file, the key and the reason."""


def describe_os_error(error: OSError) -> str:
    """One line for an :class:`OSError`: the path(s) it concerns and the system's reason.

    ``FileNotFoundError(2, 'No such file or directory', 'x.nii')`` gives
    ``x.nii: No such file or directory``; an error without a path keeps its own text.
    """
    import os.path

    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    reason = error.strerror or str(error) or type(error).__name__
    if isinstance(error, (FileExistsError, NotADirectoryError)) and paths:  # a file where a folder is needed
        blocking = paths[0]
        while blocking and not os.path.exists(blocking):
            blocking = os.path.dirname(blocking)
        if blocking and os.path.isfile(blocking):
            return f"{blocking}: a file is in the way (a folder is needed here)"
    if not paths:
        return reason
    return f"{' -> '.join(paths)}: {reason}"
