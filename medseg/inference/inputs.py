"""What to predict: cases from a file, a folder or a manifest, split into shards.

Case ids: a file's name without its image suffix and without a trailing ``_0000`` channel
suffix (``lung_001_0000.nii.gz`` -> ``lung_001``); a DICOM series folder's name. The
prediction of case ``X`` is written as ``X.nii.gz``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import MedsegError


@dataclass(frozen=True)
class InputCase:
    """One scan to predict: ``path`` is its (first) channel, ``more_channels`` the others in order."""

    case_id: str
    path: Path
    more_channels: tuple[Path, ...] = ()

    @property
    def channels(self) -> tuple[Path, ...]:
        """Every channel's file, in channel order."""
        return (self.path, *self.more_channels)


def discover_inputs(path: str | Path) -> list[InputCase]:
    """Cases to predict under ``path``, sorted by case id.

    * a volume file (NIfTI/NRRD/MHA, or a DICOM file: its series) -> one case;
    * a manifest (``.json``, ``.csv``, ``.yaml``) -> its cases, with every channel's image;
    * a folder holding a DICOM series directly -> one case;
    * any other folder -> every volume file in it and every subfolder that holds a DICOM
      series; nnU-Net channel files ``<case>_0000``, ``<case>_0001``, ... form one case with
      its channels in that order.

    Raises :class:`MedsegError` when nothing is found or two inputs share a case id.
    """
    from medseg.io import case_id_from_path, file_format, strip_channel_suffix

    path = Path(path).expanduser()
    if not path.exists():
        raise MedsegError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() in (".json", ".csv", ".yaml", ".yml"):
        from medseg.data.manifest import load_manifest

        cases = [InputCase(c.case_id, c.images[0], tuple(c.images[1:])) for c in load_manifest(path)]
    elif path.is_file():  # channel 0 of an nnU-Net name brings its sibling channels
        case_id = case_id_from_path(path)
        cases = [InputCase(strip_channel_suffix(case_id), path, _more_channels(path, case_id))]
    elif _holds_dicom(path):
        cases = [InputCase(path.name, path)]
    else:
        cases = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if _holds_dicom(child):
                    cases.append(InputCase(child.name, child))
                continue
            try:
                kind = file_format(child)
            except MedsegError:
                continue  # not an image (notes, json, ...)
            if kind == "dicom":
                continue  # loose DICOM files: the folder itself is the case
            case_id = case_id_from_path(child)
            if _channel_number(case_id) not in (None, 0) and _first_channel(child, case_id).is_file():
                continue  # a further channel: gathered with its _0000 file
            cases.append(InputCase(strip_channel_suffix(case_id), child, _more_channels(child, case_id)))
    if not cases:
        raise MedsegError(f"{path}: no volumes to predict (NIfTI, NRRD, MHA files or DICOM series folders)")
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise MedsegError(f"case id {case.case_id!r} is used by both {seen[case.case_id]} and {case.path}")
        seen[case.case_id] = case.path
    return sorted(cases, key=lambda c: c.case_id)


def shard(cases: list[InputCase], num_shards: int, shard_id: int) -> list[InputCase]:
    """The cases of shard ``shard_id`` (0-based) out of ``num_shards``.

    Assignment hashes the case id, so it needs no coordination between machines, does not
    depend on the order or number of other cases, and every case lands in exactly one shard.
    """
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise MedsegError(f"--shard-id must be in 0..{num_shards - 1} for --num-shards {num_shards}, got {shard_id}")
    return [c for c in cases if _shard_of(c.case_id, num_shards) == shard_id]


def _shard_of(case_id: str, num_shards: int) -> int:
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "big") % num_shards


def _channel_number(case_id: str) -> int | None:
    """``3`` for ``lung_001_0003``; ``None`` without an nnU-Net channel suffix."""
    suffix = case_id[-5:]
    return int(suffix[1:]) if suffix[:1] == "_" and suffix[1:].isdigit() else None


def _channel_file(path: Path, case_id: str, channel: int) -> Path:
    """``path``'s sibling for another channel: ``lung_001_0003.nii.gz`` -> ``lung_001_000<channel>.nii.gz``."""
    return path.with_name(f"{case_id[:-4]}{channel:04d}{path.name[len(case_id):]}")


def _first_channel(path: Path, case_id: str) -> Path:
    return _channel_file(path, case_id, 0)


def _more_channels(first: Path, case_id: str) -> tuple[Path, ...]:
    """Files ``<case>_0001``, ``<case>_0002``, ... beside ``first`` (``<case>_0000``), in order, until one is missing."""
    if _channel_number(case_id) != 0:
        return ()
    found: list[Path] = []
    while (candidate := _channel_file(first, case_id, len(found) + 1)).is_file():
        found.append(candidate)
    return tuple(found)


def _holds_dicom(folder: Path) -> bool:
    from medseg.io.dicom import is_dicom_file

    return folder.is_dir() and any(is_dicom_file(p) for p in folder.iterdir() if p.is_file())
