"""What to predict: cases from a file, a folder or a manifest, split into shards.

Case ids follow the naming rule every command shares (:mod:`medseg.common.naming`): a file's name
without its volume suffix and without a trailing ``_0000`` channel suffix (``lung_001_0000.nii.gz``
-> ``lung_001``); ``lung_001_0001`` beside it is the case's second channel. Files with a role suffix
(``_gt``, ``_seg``, ``_mask``, ...) are label maps and are not predicted. A DICOM series folder's
case id is its name. The prediction of case ``X`` is written as ``X.nii.gz``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import MedsegError

log = logging.getLogger(__name__)


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

    * a volume file (NIfTI/NRRD/MHA, or a DICOM file: its series) -> its case, with the sibling
      channel files of an nnU-Net name (``<case>_0000``, ``<case>_0001``, ...);
    * a manifest (``.json``, ``.csv``, ``.yaml``) -> its cases, with every channel's image;
    * a folder holding a DICOM series directly -> one case;
    * any other folder -> every image file in it (label maps, named with a role suffix, are left out
      and counted in a log line) and every subfolder that holds a DICOM series; nnU-Net channel files
      form one case with its channels in order.

    Raises :class:`MedsegError` when nothing is found or two inputs share a case id.
    """
    from medseg.common.naming import VOLUME_SUFFIXES, group_image_files, is_label_map_name, volume_files, volume_stem

    path = Path(path).expanduser()
    if not path.exists():
        raise MedsegError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() in (".json", ".csv", ".yaml", ".yml"):
        from medseg.data.manifest import load_manifest

        cases = [InputCase(c.case_id, c.images[0], tuple(c.images[1:])) for c in load_manifest(path)]
    elif path.is_file() and path.name.lower().endswith(VOLUME_SUFFIXES):  # a channel file brings the others
        siblings = [p for p in volume_files(path.parent, recursive=False) if not is_label_map_name(p.name)]
        group = next(g for g in group_image_files(set(siblings) | {path}) if path in g.channels)
        cases = [InputCase(group.case_id, group.path, group.channels[1:])]
    elif path.is_file():  # one file of a DICOM series: the series is read
        cases = [InputCase(volume_stem(path), path)]
    elif _holds_dicom(path):
        cases = [InputCase(path.name, path)]
    else:
        files = volume_files(path, recursive=False)
        labels = [p for p in files if is_label_map_name(p.name)]
        if labels:
            log.info(
                "%s: %d label map(s) left out (named with a role suffix such as _gt or _seg, e.g. %s)",
                path,
                len(labels),
                labels[0].name,
            )
        cases = [InputCase(g.case_id, g.path, g.channels[1:]) for g in group_image_files(files)]
        cases += [
            InputCase(child.name, child)
            for child in sorted(path.iterdir())
            if child.is_dir() and not child.name.startswith(".") and _holds_dicom(child)
        ]
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
