"""Finding the cases to evaluate: prediction and reference files matched by case key.

Files are paired by the naming rule of :mod:`medseg.common.naming`, which every command shares: a
file's case key is its name without the volume suffix, one role suffix (``_gt``, ``_seg``,
``_segmentation``, ``_label``, ``_labels``, ``_mask``, ``_pred``, ``_prediction``) and a trailing
nnU-Net channel suffix ``_0000``. So ``patient001_ED_gt.nii.gz``, ``patient001_ED_pred.nii.gz`` and
``patient001_ED.nii.gz`` all have the key ``patient001_ED``, and KiTS19's
``case_00000_segmentation.nii.gz`` matches a prediction ``case_00000.nii.gz``.

Folders are searched recursively (hidden files and folders skipped). When two reference files share a
key and exactly one of them carries a role suffix (ACDC keeps ``patient001_ED.nii.gz``, the image,
beside ``patient001_ED_gt.nii.gz``), the suffixed one is the reference and the other is remembered as
the case's image (used only for the overlay figures). Any other clash is an error naming the files.
``ref_pattern`` / ``pred_pattern`` (CLI ``--ref-pattern`` / ``--pred-pattern``, shell patterns on the
file name) narrow the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medseg.common.naming import VOLUME_SUFFIXES, match_files, parse_case_name, volume_files
from medseg.errors import InvalidArgumentError


@dataclass(frozen=True)
class CasePair:
    """One case to evaluate: its id, the reference and prediction files (prediction may be
    missing: ``None``), and an image to draw overlays on (optional)."""

    case_id: str
    reference: Path
    prediction: Path | None
    image: Path | None = None


@dataclass
class Matching:
    """Result of :func:`match_cases`: the pairs (sorted by case id) and the leftovers."""

    pairs: list[CasePair]
    unmatched_predictions: list[Path]

    @property
    def missing_predictions(self) -> list[CasePair]:
        return [p for p in self.pairs if p.prediction is None]


def _volume_files(folder: Path, pattern: str | None, what: str) -> list[Path]:
    if not folder.is_dir():
        raise InvalidArgumentError(f"{folder}: {what} folder not found")
    return volume_files(folder, pattern)


def _index_references(files: list[Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """key -> reference file, key -> image file (for ACDC-like folders)."""
    groups: dict[str, list[tuple[Path, bool]]] = {}
    for path in files:
        name = parse_case_name(path.name)
        groups.setdefault(name.case_id, []).append((path, name.role is not None))
    references, images = {}, {}
    for key, entries in groups.items():
        if len(entries) == 1:
            references[key] = entries[0][0]
            continue
        labelled = [p for p, role in entries if role]
        plain = [p for p, role in entries if not role]
        if len(labelled) == 1 and len(plain) == 1:
            references[key], images[key] = labelled[0], plain[0]
            continue
        names = ", ".join(str(p) for p, _ in entries)
        raise InvalidArgumentError(
            f"case {key!r}: several reference files match ({names}); narrow them with --ref-pattern"
        )
    return references, images


def match_cases(
    pred_dir: str | Path,
    ref_dir: str | Path | None = None,
    *,
    references: dict[str, Path] | None = None,
    images: dict[str, Path] | None = None,
    ref_pattern: str | None = None,
    pred_pattern: str | None = None,
) -> Matching:
    """Pair prediction files with reference files by case key (see the module docstring).

    Args:
        pred_dir: folder of predicted label maps (searched recursively).
        ref_dir: folder of reference label maps; or give ``references`` instead
            (``{case_id: path}``, e.g. from a dataset manifest) with optional ``images``.
        ref_pattern, pred_pattern: optional shell globs the file names must match.

    Returns:
        A :class:`Matching`: one :class:`CasePair` per reference (``prediction=None`` when no
        prediction matched: reported as a failed case by the batch run) and the predictions
        without a reference. Raises :class:`~medseg.errors.InvalidArgumentError` for missing
        folders, ambiguous matches, or no reference at all.
    """
    pred_dir = Path(pred_dir).expanduser()
    if references is None:
        if ref_dir is None:
            raise InvalidArgumentError("give a reference folder (--ref) or a manifest (--manifest)")
        ref_dir = Path(ref_dir).expanduser()
        references, found_images = _index_references(_volume_files(ref_dir, ref_pattern, "reference"))
        images = {**found_images, **(images or {})}
        if not references:
            raise InvalidArgumentError(f"{ref_dir}: no reference label maps found ({', '.join(VOLUME_SUFFIXES)} files)")
    images = images or {}
    found = match_files(references, _volume_files(pred_dir, pred_pattern, "prediction"))
    if found.duplicates:
        case_id, paths = next(iter(sorted(found.duplicates.items())))
        raise InvalidArgumentError(
            f"case {case_id!r}: several prediction files match ({', '.join(map(str, paths))}); "
            "narrow them with --pred-pattern"
        )
    pairs = [
        CasePair(case_id, reference, found.files.get(case_id), images.get(case_id))
        for case_id, reference in sorted(references.items())
    ]
    return Matching(pairs, found.unmatched)


def find_label_maps(folder: str | Path, pattern: str | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """Label maps of a folder by case key (searched recursively, as references are), and the images found beside
    them (an ACDC-like ``x.nii.gz`` next to ``x_gt.nii.gz``). Raises :class:`InvalidArgumentError` when there is
    none."""
    folder = Path(folder).expanduser()
    labels, images = _index_references(_volume_files(folder, pattern, "label map"))
    if not labels:
        raise InvalidArgumentError(f"{folder}: no label maps found ({', '.join(VOLUME_SUFFIXES)} files)")
    return labels, images


def find_images(folder: str | Path, pattern: str | None = None) -> dict[str, Path]:
    """Image files of a folder (searched recursively) by case key (:mod:`medseg.common.naming`:
    ``case_01_0000.nii.gz`` -> ``case_01``); files with a role suffix (label maps) are left out. Two files with
    one key are an error naming both."""
    folder = Path(folder).expanduser()
    images: dict[str, Path] = {}
    for path in _volume_files(folder, pattern, "image"):
        name = parse_case_name(path.name)
        if name.role is not None:
            continue
        if name.case_id in images:
            raise InvalidArgumentError(
                f"case {name.case_id!r}: several images match ({images[name.case_id]}, {path}); narrow them with a "
                "pattern"
            )
        images[name.case_id] = path
    if not images:
        raise InvalidArgumentError(f"{folder}: no images found ({', '.join(VOLUME_SUFFIXES)} files)")
    return images
