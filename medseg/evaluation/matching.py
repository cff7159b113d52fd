"""Finding the cases to evaluate: prediction and reference files matched by case name.

A file's **case key** is its name without the image suffix (``.nii.gz``, ``.nii``, ``.nrrd``,
``.nhdr``, ``.mha``, ``.mhd``) and without one trailing role suffix, case-insensitively:
``_gt``, ``_seg``, ``_segmentation``, ``_label``, ``_labels``, ``_mask``, ``_pred``,
``_prediction``. So ``patient001_ED_gt.nii.gz``, ``patient001_ED_pred.nii.gz`` and
``patient001_ED.nii.gz`` all have the key ``patient001_ED``, and KiTS19's
``case_00000_segmentation.nii.gz`` matches a prediction ``case_00000.nii.gz``.
Keys that still find no partner are tried once more without a trailing nnU-Net channel suffix
``_0000`` (``case_01_0000.nii.gz`` -> ``case_01``).

Folders are searched recursively. When two reference files share a key and exactly one of them
carries a role suffix (ACDC keeps ``patient001_ED.nii.gz``, the image, beside
``patient001_ED_gt.nii.gz``), the suffixed one is the reference and the other is remembered
as the case's image (used only for the overlay figures). Any other clash is an error naming
the files. ``--ref-pattern`` / ``--pred-pattern`` (shell globs on the file name) narrow the
search.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import ConfigError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
ROLE_SUFFIXES = ("_segmentation", "_prediction", "_labels", "_label", "_mask", "_pred", "_seg", "_gt")
CHANNEL_SUFFIX = "_0000"


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


def strip_image_suffix(name: str) -> str:
    """``"x.nii.gz"`` -> ``"x"`` (any of :data:`IMAGE_SUFFIXES`, case-insensitive)."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_key(name: str) -> tuple[str, bool]:
    """Case key of a file name and whether a role suffix was removed (see the module docstring)."""
    stem = strip_image_suffix(name)
    lower = stem.lower()
    for suffix in ROLE_SUFFIXES:
        if lower.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], True
    return stem, False


def _volume_files(folder: Path, pattern: str | None) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if pattern and not fnmatch.fnmatch(path.name, pattern):
            continue
        files.append(path)
    return files


def _index_references(files: list[Path]) -> tuple[dict[str, Path], dict[str, Path]]:
    """key -> reference file, key -> image file (for ACDC-like folders)."""
    groups: dict[str, list[tuple[Path, bool]]] = {}
    for path in files:
        key, has_role = case_key(path.name)
        groups.setdefault(key, []).append((path, has_role))
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
        raise ConfigError(f"case {key!r}: several reference files match ({names}); narrow them with --ref-pattern")
    return references, images


def _index_predictions(files: list[Path]) -> dict[str, Path]:
    predictions: dict[str, Path] = {}
    for path in files:
        key, _ = case_key(path.name)
        if key in predictions:
            raise ConfigError(
                f"case {key!r}: several prediction files match ({predictions[key]}, {path}); narrow them with --pred-pattern"
            )
        predictions[key] = path
    return predictions


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
        without a reference. Raises :class:`ConfigError` for missing folders, ambiguous
        matches, or no reference at all.
    """
    pred_dir = Path(pred_dir).expanduser()
    if references is None:
        if ref_dir is None:
            raise ConfigError("give a reference folder (--ref) or a manifest (--manifest)")
        ref_dir = Path(ref_dir).expanduser()
        references, found_images = _index_references(_volume_files(ref_dir, ref_pattern))
        images = {**found_images, **(images or {})}
        if not references:
            raise ConfigError(f"{ref_dir}: no reference label maps found ({', '.join(IMAGE_SUFFIXES)} files)")
    images = images or {}
    predictions = _index_predictions(_volume_files(pred_dir, pred_pattern))

    used: set[str] = set()
    pairs: list[CasePair] = []
    unmatched_refs: list[str] = []
    for case_id, reference in sorted(references.items()):
        if case_id in predictions:
            pairs.append(CasePair(case_id, reference, predictions[case_id], images.get(case_id)))
            used.add(case_id)
        else:
            unmatched_refs.append(case_id)
    # second chance without the nnU-Net channel suffix _0000
    strip = lambda key: key[: -len(CHANNEL_SUFFIX)] if key.endswith(CHANNEL_SUFFIX) else key  # noqa: E731
    spare = {strip(k): k for k in predictions if k not in used}
    for case_id in unmatched_refs:
        key = spare.get(strip(case_id))
        if key is not None and key not in used:
            used.add(key)
            pairs.append(CasePair(strip(case_id), references[case_id], predictions[key], images.get(case_id)))
        else:
            pairs.append(CasePair(case_id, references[case_id], None, images.get(case_id)))
    pairs.sort(key=lambda p: p.case_id)
    leftovers = [path for key, path in sorted(predictions.items()) if key not in used]
    return Matching(pairs, leftovers)


def find_label_maps(folder: str | Path, pattern: str | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """Label maps of a folder by case key (searched recursively, as references are), and the images found beside
    them (an ACDC-like ``x.nii.gz`` next to ``x_gt.nii.gz``). Raises :class:`ConfigError` when there is none."""
    folder = Path(folder).expanduser()
    labels, images = _index_references(_volume_files(folder, pattern))
    if not labels:
        raise ConfigError(f"{folder}: no label maps found ({', '.join(IMAGE_SUFFIXES)} files)")
    return labels, images


def find_images(folder: str | Path, pattern: str | None = None) -> dict[str, Path]:
    """Image files of a folder (searched recursively) by case key, a trailing nnU-Net channel suffix ``_0000``
    removed (``case_01_0000.nii.gz`` -> ``case_01``). Two files with one key are an error naming both."""
    folder = Path(folder).expanduser()
    images: dict[str, Path] = {}
    for path in _volume_files(folder, pattern):
        key = case_key(path.name)[0]
        key = key[: -len(CHANNEL_SUFFIX)] if key.endswith(CHANNEL_SUFFIX) else key
        if key in images:
            raise ConfigError(f"case {key!r}: several images match ({images[key]}, {path}); narrow them with a pattern")
        images[key] = path
    if not images:
        raise ConfigError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)} files)")
    return images
