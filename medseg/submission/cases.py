"""Finding the cases of a submission (images, predictions) and putting predictions on the image grid.

Grids are read from file headers with :func:`medseg.io.read_grid`.

Case ids
--------
* Case ids follow the naming rule every command shares (:mod:`medseg.common.naming`): an image's
  case id is its file name without the volume suffix and without the nnU-Net channel suffix
  ``_0000`` (``case_01_0000`` becomes ``case_01``); ``case_01_0001`` beside it is another channel
  of that case and not a case of its own (the channels share a grid). Files with a role suffix
  (``_gt``, ``_seg``, ``_mask``, ...) are label maps, never images; hidden files and folders are
  skipped. Folders are searched recursively.
* ``acdc``: images are ``patientNNN_ED`` / ``patientNNN_ES``; an ACDC original
  ``patientNNN_frameXX`` is used when the ``Info.cfg`` beside it names frame XX as ED or ES
  (then a prediction may be named either way). Other files (``_4d``, other frames) are skipped.
* A prediction belongs to the image whose case key equals its own (the name without volume suffix,
  one role suffix such as ``_pred`` or ``_mask``, and ``_0000``), or to an ACDC image by its frame
  name. ``pattern`` (CLI ``--pred-pattern``) selects which files in the folder are predictions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.common.cardiac_phases import acdc_frame_phase
from medseg.common.naming import VOLUME_SUFFIXES, group_image_files, match_files, volume_files
from medseg.io import FileGrid, Volume, grid_mismatch
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import SubmissionFormat

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


def discover_images(images_dir: str | Path, fmt: SubmissionFormat) -> dict[str, ImageCase]:
    """Expected cases of a submission, from the images in ``images_dir`` (see the module docstring).

    Returns ``{case_id: ImageCase}`` sorted by case id.

    Raises:
        SubmissionError: the folder is missing, holds no image, or two images give one case id.
    """
    images_dir = Path(images_dir).expanduser()
    if not images_dir.is_dir():
        raise SubmissionError(f"{images_dir}: images folder not found")
    cases: dict[str, ImageCase] = {}
    problems: list[str] = []
    for image in group_image_files(volume_files(images_dir)):
        case = _image_case(image.path, image.case_id, fmt)
        if case is None:
            continue
        if case.case_id in cases:
            problems.append(
                f"{case.case_id}: two images give this case id: {cases[case.case_id].image_path} and {image.path}"
            )
            continue
        cases[case.case_id] = case
    if problems:
        raise SubmissionError(f"{images_dir}: ambiguous images", problems)
    if not cases:
        what = "patientNNN_ED / patientNNN_ES images" if fmt.name == "acdc" else "image volumes"
        raise SubmissionError(f"{images_dir}: no {what} found (searched recursively for {', '.join(VOLUME_SUFFIXES)})")
    return dict(sorted(cases.items()))


def _image_case(path: Path, case_id: str, fmt: SubmissionFormat) -> ImageCase | None:
    if fmt.name != "acdc" or _ACDC_PHASE.fullmatch(case_id):
        return ImageCase(case_id, path)
    frame = _ACDC_FRAME.fullmatch(case_id)
    if frame:
        phase = acdc_frame_phase(path.parent / "Info.cfg", int(frame.group("frame")))
        if phase:
            return ImageCase(f"{frame.group('patient')}_{phase}", path, (case_id,))
    return None


def match_predictions(pred_dir: str | Path, cases: dict[str, ImageCase], pattern: str | None = None) -> PredictionMatch:
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
        raise SubmissionError(f"{pred_dir}: no prediction volumes matching {pattern or '*'!r} found")
    aliases = {alias: case.case_id for case in cases.values() for alias in case.aliases}
    found = match_files(cases, paths, aliases)
    result = PredictionMatch(dict(sorted(found.files.items())))
    for path in found.unmatched:
        result.problems.append(f"{path.name}: prediction matches no image case id (extra case?)")
    for case_id, duplicates in sorted(found.duplicates.items()):
        result.problems.append(f"{case_id}: several predictions: {', '.join(map(str, duplicates))}")
    for case_id, case in cases.items():
        if case_id not in found.files and case_id not in found.duplicates:
            result.problems.append(f"{case_id}: missing prediction (image {case.image_path.name})")
    return result


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
    transform = orientations.ornt_transform(
        orientations.io_orientation(volume.affine), orientations.io_orientation(grid.affine)
    )
    if not np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        array = orientations.apply_orientation(volume.array, transform)
        affine = volume.affine @ orientations.inv_ornt_aff(transform, volume.shape)
        if grid_mismatch(affine, array.shape, grid.affine, grid.shape, atol_mm) is None:
            before, after = nib.aff2axcodes(volume.affine), nib.aff2axcodes(grid.affine)
            note = (
                f"reoriented from {''.join(before)} {volume.shape} to the image's {''.join(after)} {tuple(grid.shape)}"
            )
            return np.ascontiguousarray(array), note
    raise GeometryError(f"{volume.name}: not on the image's voxel grid: {problem}")
