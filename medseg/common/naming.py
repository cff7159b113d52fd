"""Case ids from file names: the one naming rule of every command (predict, evaluate, submit, manifests).

A file's **case key** (:func:`case_key`) is its name

1. without the volume suffix (case-insensitive): ``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``,
   ``.mha``, ``.mhd`` (and ``.dcm`` for a file of a DICOM series);
2. without one trailing **role suffix** (case-insensitive), which marks a label map:
   ``_gt``, ``_seg``, ``_segmentation``, ``_label``, ``_labels``, ``_mask``, ``_pred``, ``_prediction``;
3. without a trailing nnU-Net **channel-0 suffix** ``_0000``.

So ``lung_001_0000.nii.gz`` (an image), ``lung_001_gt.nii.gz``, ``lung_001_mask.nii.gz`` (references) and
``lung_001.nii.gz``, ``lung_001_pred.nii.gz`` (predictions) all have the key ``lung_001``, and KiTS19's
``case_00000_segmentation.nii.gz`` pairs with ``case_00000.nii.gz``.

**Further channels.** An image ``X_0001``, ``X_0002``, ... (underscore and four digits) is another channel of
case ``X`` when ``X_0000`` lies in the same folder (:func:`group_image_files` gathers them, channel 0 first);
without ``X_0000`` beside it the digits belong to the case id (``amos_0001.nii.gz`` is case ``amos_0001``).
A file with a role suffix is a label map and never an image.

**Pairing** (:func:`match_files`): a file belongs to the expected case whose key equals the file's key; ids
that do not come from file names (a CSV manifest's ``case_id``) are keyed by the same rule.

Folders are searched by :func:`volume_files`: volume files only, hidden files and hidden folders
(``.ipynb_checkpoints``) skipped, optionally filtered by a shell pattern on the file name.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InvalidArgumentError

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: suffixes of the volume files medseg reads (DICOM series are folders)
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
#: role suffixes marking a label map (reference or prediction), longest first so ``_labels`` wins over ``_label``
ROLE_SUFFIXES = ("_segmentation", "_prediction", "_labels", "_label", "_mask", "_pred", "_seg", "_gt")
_CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>[0-9]{4})")


@dataclass(frozen=True)
class CaseName:
    """What a file name says: its case key, its role suffix (``"_gt"`` ..., lower case; ``None`` for an
    image) and whether it carried the channel-0 suffix ``_0000`` (``channel`` 0, else ``None``)."""

    case_id: str
    role: str | None = None
    channel: int | None = None


def volume_stem(name: str | Path) -> str:
    """A file name without its volume suffix: ``"case_01.nii.gz"`` -> ``"case_01"`` (case-insensitive);
    a path gives its last part; a name without a known suffix (a DICOM folder) is returned as it is."""
    name = Path(name).name
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES + (".dcm",):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def parse_case_name(name: str | Path) -> CaseName:
    """Split a file name (or a bare case id) into case key, role and channel-0 suffix; see the module docstring."""
    stem = volume_stem(name)
    role = None
    lower = stem.lower()
    for suffix in ROLE_SUFFIXES:
        if lower.endswith(suffix) and len(stem) > len(suffix):
            stem, role = stem[: -len(suffix)], suffix
            break
    channel = _CHANNEL.fullmatch(stem)
    if channel and channel.group("channel") == "0000":
        return CaseName(channel.group("case"), role, 0)
    return CaseName(stem, role, None)


def case_key(name: str | Path) -> str:
    """The case a file (or a case id) belongs to: ``"lung_001_mask.nii.gz"`` -> ``"lung_001"``; see the module
    docstring."""
    return parse_case_name(name).case_id


def is_label_map_name(name: str | Path) -> bool:
    """True when the name carries a role suffix (``_gt``, ``_seg``, ``_mask``, ...): a label map, not an image."""
    return parse_case_name(name).role is not None


def volume_files(folder: str | Path, pattern: str | None = None, *, recursive: bool = True) -> list[Path]:
    """Volume files under ``folder`` (see :data:`VOLUME_SUFFIXES`), sorted; hidden files and folders skipped.

    ``pattern`` is a shell pattern (``fnmatch``) the file name must match (``None``: every volume file);
    ``recursive=False`` lists only the folder's own files. A folder without volumes gives ``[]``; a missing
    folder raises :class:`FileNotFoundError` (callers check first and say which folder they wanted).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(2, "no such folder", str(folder))
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in files:
            if name.startswith(".") or not name.lower().endswith(VOLUME_SUFFIXES):
                continue
            if pattern is None or fnmatch.fnmatch(name, pattern):
                found.append(Path(root) / name)
    return sorted(found)


@dataclass(frozen=True)
class ImageFiles:
    """One case of a folder of images: its id and its files in channel order (one file for single-channel data)."""

    case_id: str
    channels: tuple[Path, ...]

    @property
    def path(self) -> Path:
        """Channel 0 (the file that gives the case its voxel grid)."""
        return self.channels[0]


def group_image_files(paths: Iterable[str | Path]) -> list[ImageFiles]:
    """Group image files into cases by the naming rule (module docstring), sorted by case id then folder.

    Files with a role suffix are label maps and left out. ``X_0000``, ``X_0001``, ... in one folder form one
    case ``X`` with its channels in order; ``X_0001`` without ``X_0000`` beside it is its own case
    ``X_0001``. Several cases may share an id (files in different folders, or ``x.nii.gz`` beside
    ``x.nrrd``): callers decide whether that is an error. An empty input gives ``[]``.

    Raises:
        InvalidArgumentError: a case's channels are not numbered ``_0000`` to ``_000N`` without gaps, or
            two files claim the same channel; the message names the files.
    """
    paths = [Path(p) for p in paths]
    stems = {(p.parent, volume_stem(p.name)) for p in paths}
    groups: dict[tuple[Path, str, bool], dict[int, list[Path]]] = {}
    for path in paths:
        if is_label_map_name(path.name):
            continue
        stem = volume_stem(path.name)
        channel = _CHANNEL.fullmatch(stem)
        if channel and (path.parent, channel.group("case") + "_0000") in stems:
            key, number = (path.parent, channel.group("case"), True), int(channel.group("channel"))
        else:  # x.nii.gz beside x_0000.nii.gz: two cases x, which the caller reports
            key, number = (path.parent, stem, False), 0
        groups.setdefault(key, {}).setdefault(number, []).append(path)
    cases = []
    for (folder, case_id, _), channels in groups.items():
        clash = next((files for files in channels.values() if len(files) > 1), None)
        if clash:
            names = ", ".join(p.name for p in clash)
            raise InvalidArgumentError(f"{folder}: {names} are the same channel of case {case_id!r}")
        numbers = sorted(channels)
        if numbers != list(range(len(numbers))):
            missing = min(set(range(numbers[-1] + 1)) - set(numbers))
            raise InvalidArgumentError(
                f"{folder}: case {case_id!r} has channel files {', '.join(f'_{n:04d}' for n in numbers)} but no "
                f"_{missing:04d}; channels must be numbered from _0000 without gaps"
            )
        cases.append(ImageFiles(case_id, tuple(channels[n][0] for n in numbers)))
    return sorted(cases, key=lambda case: (case.case_id, str(case.path)))


@dataclass
class FileMatch:
    """Result of :func:`match_files`: ``files`` maps each matched case id to its file; ``duplicates`` the
    case ids that several files claim (with all of them; such ids are not in ``files``); ``unmatched`` the
    files that belong to no expected case."""

    files: dict[str, Path] = field(default_factory=dict)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    unmatched: list[Path] = field(default_factory=list)


def match_files(case_ids: Iterable[str], files: Iterable[Path], aliases: Mapping[str, str] | None = None) -> FileMatch:
    """Pair files with expected cases by case key (:func:`case_key` of the file name and of each id).

    Args:
        case_ids: the expected case ids (e.g. references' keys, a manifest's ids, a submission's images).
        files: candidate files (e.g. predictions).
        aliases: other names of expected cases, ``{alias: case_id}`` (ACDC's ``patient001_frame01`` for
            ``patient001_ED``).

    Raises:
        InvalidArgumentError: two expected ids (or aliases) have the same key, so a file could not be told apart.
    """
    lookup: dict[str, str] = {}
    names = [(case_id, case_id) for case_id in case_ids] + list((aliases or {}).items())
    for name, case_id in names:
        key = case_key(name)
        if lookup.setdefault(key, case_id) != case_id:
            raise InvalidArgumentError(f"cases {lookup[key]!r} and {case_id!r} have the same case key {key!r}")
    claimed: dict[str, list[Path]] = {}
    result = FileMatch()
    for path in files:
        case_id = lookup.get(case_key(path.name))
        if case_id is None:
            result.unmatched.append(path)
        else:
            claimed.setdefault(case_id, []).append(path)
    for case_id, paths in claimed.items():
        if len(paths) == 1:
            result.files[case_id] = paths[0]
        else:
            result.duplicates[case_id] = paths
    return result
