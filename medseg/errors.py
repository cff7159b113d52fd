"""Exceptions raised by medseg. Every message names the file (or case) and the problem."""

from __future__ import annotations


class MedsegError(Exception):
    """Base class for all errors medseg raises on purpose."""


class VolumeReadError(MedsegError):
    """A file or folder could not be read as a volume (unreadable, truncated, unsupported)."""


class DicomSeriesError(VolumeReadError):
    """A DICOM folder is ambiguous or inconsistent (several series, missing or duplicated slices, ...)."""


class GeometryError(MedsegError):
    """Two volumes that must share a voxel grid do not (shape, spacing, origin or direction differ)."""


class ConfigError(MedsegError):
    """A configuration file or manifest is invalid; the message names the key and the reason."""
