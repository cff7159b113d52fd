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
    case_id: str
    path: Path


def discover_inputs(path: str | Path) -> list[InputCase]:
    """Cases to predict under ``path``, sorted by case id.

    * a volume file (NIfTI/NRRD/MHA, or a DICOM file: its series) -> one case;
    * a manifest (``.json``, ``.csv``, ``.yaml``) -> its cases' first-channel images;
    * a folder holding a DICOM series directly -> one case;
    * any other folder -> every volume file in it (only channel ``_0000`` of multi-channel
      nnU-Net names) and every subfolder that holds a DICOM series.

    Raises :class:`MedsegError` when nothing is found or two inputs share a case id.
    """
    from medseg.io import case_id_from_path, file_format, strip_channel_suffix

    path = Path(path).expanduser()
    if not path.exists():
        raise MedsegError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() in (".json", ".csv", ".yaml", ".yml"):
        from medseg.data.manifest import load_manifest

        cases = [InputCase(c.case_id, c.image) for c in load_manifest(path)]
    elif path.is_file():
        cases = [InputCase(strip_channel_suffix(case_id_from_path(path)), path)]
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
            case_id = case_id_from_path(child)
            if kind != "dicom" and case_id[-5:-4] == "_" and case_id[-4:].isdigit() and not case_id.endswith("_0000"):
                continue  # further channels of a multi-channel case
            if kind == "dicom":
                continue  # loose DICOM files: the folder itself is the case
            cases.append(InputCase(strip_channel_suffix(case_id), child))
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


def _holds_dicom(folder: Path) -> bool:
    from medseg.io.dicom import is_dicom_file

    return folder.is_dir() and any(is_dicom_file(p) for p in folder.iterdir() if p.is_file())
