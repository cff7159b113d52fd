"""Finding the cases of a submission (images, predictions) and putting predictions on the image grid.

Grids are read from file headers with :func:`medseg.io.read_grid`.

Case ids
--------
* An image's case id is its file name without the suffix (``.nii.gz``, ``.nii``, ``.nrrd``,
  ``.nhdr``, ``.mha``, ``.mhd``) and without the nnU-Net channel suffix: ``case_01_0000``
  becomes ``case_01``; ``case_01_0001`` (another channel of a case that has ``_0000``) is
  skipped, since the channels share a grid. Files whose id ends in ``_gt`` (ground truth) and
  hidden files are never images. Folders are searched recursively.
* ``acdc``: images are ``patientNNN_ED`` / ``patientNNN_ES``; an ACDC original
  ``patientNNN_frameXX`` is used when the ``Info.cfg`` beside it names frame XX as ED or ES
  (then a prediction may be named either way). Other files (``_4d``, other frames) are skipped.
* A prediction belongs to the image whose case id (or ACDC frame name) equals its own id,
  after removing at most one of ``_0000``, ``_pred``, ``_prediction``, ``_seg``, ``_label``,
  ``_gt``. ``pattern`` (CLI ``--pred-glob``) selects which files in the folder are predictions.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.cardiac_phases import acdc_frame_phase
from medseg.io import FileGrid, Volume, case_id_from_path, grid_mismatch
from medseg.io.loader import ITK_SUFFIXES, NIFTI_SUFFIXES
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import SubmissionFormat

VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
PREDICTION_SUFFIXES = ("_0000", "_pred", "_prediction", "_seg", "_label", "_gt")
_CHANNEL = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")
_ACDC_PHASE = re.compile(r"patient\d{3}_(ED|ES)")
_ACDC_FRAME = re.compile(r"(?P<patient>patient\d{3})_frame(?P<frame>\d+)")


@dataclass
class ImageCase:
    """One expected case: its submission case id, the image that defines its grid, other names."""

    case_id: str
    image_path: Path
    aliases: tuple[str, ...] = ()


@dataclass
class PredictionMatch:
    """Predictions matched to expected cases, and the problems found while matching."""

    files: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def volume_files(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Volume files (NIfTI, NRRD, MetaImage) under ``folder`` (recursive), sorted; hidden ones skipped.

    ``pattern`` is an ``fnmatch`` pattern on the file name. An empty folder gives ``[]``.
    """
    folder = Path(folder).expanduser()
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(VOLUME_SUFFIXES):
                continue
            if fnmatch.fnmatch(name, pattern):
                found.append(Path(root) / name)
    return sorted(found)


def discover_images(images_dir: str | Path, fmt: SubmissionFormat) -> dict[str, ImageCase]:
    """Expected cases of a submission, from the images in ``images_dir`` (see the module docstring).

    Returns ``{case_id: ImageCase}`` sorted by case id.

    Raises:
        SubmissionError: the folder is missing, holds no image, or two images give one case id.
    """
    images_dir = Path(images_dir).expanduser()
    if not images_dir.is_dir():
        raise SubmissionError(f"{images_dir}: images folder not found")
    paths = volume_files(images_dir)
    ids = {path: case_id_from_path(path) for path in paths}
    all_ids = set(ids.values())
    cases: dict[str, ImageCase] = {}
    problems: list[str] = []
    for path, raw_id in ids.items():
        case = _image_case(path, raw_id, all_ids, fmt)
        if case is None:
            continue
        if case.case_id in cases:
            problems.append(
                f"{case.case_id}: two images give this case id: {cases[case.case_id].image_path} and {path}"
            )
            continue
        cases[case.case_id] = case
    if problems:
        raise SubmissionError(f"{images_dir}: ambiguous images", problems)
    if not cases:
        what = "patientNNN_ED / patientNNN_ES images" if fmt.name == "acdc" else "image volumes"
        raise SubmissionError(f"{images_dir}: no {what} found (searched recursively for {', '.join(VOLUME_SUFFIXES)})")
    return dict(sorted(cases.items()))


def _image_case(path: Path, raw_id: str, all_ids: set[str], fmt: SubmissionFormat) -> ImageCase | None:
    if raw_id.endswith("_gt"):
        return None
    case_id = raw_id
    channel = _CHANNEL.fullmatch(raw_id)
    if channel:
        if channel.group("channel") == "0000":
            case_id = channel.group("case")
        elif channel.group("case") + "_0000" in all_ids:
            return None  # another channel of a multi-channel case
    aliases = (raw_id,) if raw_id != case_id else ()
    if fmt.name != "acdc":
        return ImageCase(case_id, path, aliases)
    if _ACDC_PHASE.fullmatch(case_id):
        return ImageCase(case_id, path, aliases)
    frame = _ACDC_FRAME.fullmatch(case_id)
    if frame:
        phase = acdc_frame_phase(path.parent / "Info.cfg", int(frame.group("frame")))
        if phase:
            return ImageCase(f"{frame.group('patient')}_{phase}", path, tuple(dict.fromkeys(aliases + (case_id,))))
    return None


def match_predictions(pred_dir: str | Path, cases: dict[str, ImageCase], pattern: str = "*") -> PredictionMatch:
    """Match the prediction files in ``pred_dir`` (recursive) to the expected cases.

    Every expected case needs exactly one prediction, and every prediction an expected case;
    each violation is one line in ``problems`` (missing case, duplicate, unmatched file).

    Raises:
        SubmissionError: ``pred_dir`` is not a folder or holds no volume matching ``pattern``.
    """
    pred_dir = Path(pred_dir).expanduser()
    if not pred_dir.is_dir():
        raise SubmissionError(f"{pred_dir}: predictions folder not found")
    paths = volume_files(pred_dir, pattern)
    if not paths:
        raise SubmissionError(f"{pred_dir}: no prediction volumes matching {pattern!r} found")
    by_name = {case.case_id: case.case_id for case in cases.values()}
    by_name.update({alias: case.case_id for case in cases.values() for alias in case.aliases})
    result = PredictionMatch()
    for path in paths:
        case_id = _prediction_case(case_id_from_path(path), by_name)
        if case_id is None:
            result.problems.append(f"{path.name}: prediction matches no image case id (extra case?)")
        elif case_id in result.files:
            result.problems.append(f"{case_id}: two predictions: {result.files[case_id]} and {path}")
        else:
            result.files[case_id] = path
    for case_id, case in cases.items():
        if case_id not in result.files:
            result.problems.append(f"{case_id}: missing prediction (image {case.image_path.name})")
    result.files = dict(sorted(result.files.items()))
    return result


def _prediction_case(raw_id: str, by_name: dict[str, str]) -> str | None:
    if raw_id in by_name:
        return by_name[raw_id]
    for suffix in PREDICTION_SUFFIXES:
        if raw_id.endswith(suffix) and raw_id[: -len(suffix)] in by_name:
            return by_name[raw_id[: -len(suffix)]]
    return None


def align_to_grid(volume: Volume, grid: FileGrid, atol_mm: float = 1e-3) -> tuple[np.ndarray, str | None]:
    """Put a prediction's voxels on the image's grid without interpolation.

    When the prediction's grid already matches (:func:`medseg.io.grid_mismatch` within
    ``atol_mm``: shape equal, origin and each axis vector times the extent within ``atol_mm``
    mm), the array is returned as is. When it holds the same voxel centres in another axis
    order or direction (e.g. saved as LPS instead of RAS, or transposed), its axes are
    permuted and flipped to the image's order with nibabel's orientation tools (exact, no
    resampling) and a note says so.

    Returns:
        ``(array on the image grid, note or None)``.

    Raises:
        GeometryError: the grids differ in any other way (spacing, origin, shape, oblique);
            the message says how.
    """
    import nibabel as nib
    from nibabel import orientations

    from medseg.errors import GeometryError

    problem = grid_mismatch(volume.affine, volume.shape, grid.affine, grid.shape, atol_mm, ("prediction", "image"))
    if problem is None:
        return volume.array, None
    transform = orientations.ornt_transform(orientations.io_orientation(volume.affine), orientations.io_orientation(grid.affine))
    if not np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        array = orientations.apply_orientation(volume.array, transform)
        affine = volume.affine @ orientations.inv_ornt_aff(transform, volume.shape)
        if grid_mismatch(affine, array.shape, grid.affine, grid.shape, atol_mm) is None:
            before, after = nib.aff2axcodes(volume.affine), nib.aff2axcodes(grid.affine)
            note = f"reoriented from {''.join(before)} {volume.shape} to the image's {''.join(after)} {tuple(grid.shape)}"
            return np.ascontiguousarray(array), note
    raise GeometryError(f"{volume.name}: not on the image's voxel grid: {problem}")
