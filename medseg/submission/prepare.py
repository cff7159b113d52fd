"""Preparing a submission from a folder of predictions.

For each expected case (one per image): read the prediction (:func:`medseg.io.load_volume`,
``label=True``), put it on the image's voxel grid (copying the image's affine when within the
tolerance, or permuting/flipping axes exactly when the prediction was saved in another
orientation; anything else is an error), remap labels, convert to uint8 and write the
format's file(s). The output folder is built under a temporary name and renamed into place
only when every case was written; then it is checked with :func:`check_submission` (whose
warnings, e.g. an allowed label absent from every case, are reported but do not fail it), and
the zip (with manifest) is written only when that check passes.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.common.progress import progress_bar
from medseg.errors import MedsegError
from medseg.evaluation.metrics_table import read_metrics_csv
from medseg.io import FileGrid, Volume, atomic_directory, load_volume, read_grid, save_volume
from medseg.submission.cases import ImageCase, align_to_grid, discover_images, match_predictions
from medseg.submission.check import DEFAULT_ATOL_MM, CheckReport, check_submission, effective_allowed_labels
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import METRICS_JSON_NAME, RLE_CSV_NAME, SubmissionFormat, get_format
from medseg.submission.labels import parse_label_map, remap_labels
from medseg.submission.metrics_json import write_metrics_json
from medseg.submission.package import check_output_folder, write_submission_zip
from medseg.submission.rle import slice_image_id, volume_rle_rows

log = logging.getLogger(__name__)


@dataclass
class PreparedCase:
    """One written case: where it came from, what was written, the labels it holds, notes."""

    case_id: str
    prediction: Path
    image: Path
    output: str
    labels: list[int]
    notes: list[str] = field(default_factory=list)


@dataclass
class PreparedSubmission:
    """Result of :func:`prepare_submission`."""

    format: str
    out_dir: Path
    cases: list[PreparedCase]
    check: CheckReport | None = None
    zip_path: Path | None = None

    @property
    def ok(self) -> bool:
        """True when the written submission passed its check."""
        return self.check is None or self.check.ok


def prepare_submission(
    fmt: str | SubmissionFormat,
    pred_dir: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    label_map: str | Path | dict | None = None,
    allowed_labels: str | Path | frozenset[int] | None = None,
    rle_per_class: bool = False,
    metrics_csv: str | Path | None = None,
    pred_pattern: str | None = None,
    atol_mm: float = DEFAULT_ATOL_MM,
    overwrite: bool = False,
    zip_path: str | Path | None = None,
    command: str | None = None,
    progress: bool = False,
) -> PreparedSubmission:
    """Write a challenge submission from predictions, check it, and optionally zip it.

    Args:
        fmt: ``msd`` (``nnunet``), ``acdc``, ``rle-csv`` or ``grand-challenge`` (``gc``).
        pred_dir: folder of predicted label maps (searched recursively), named by case id.
        images_dir: the images the predictions answer: they define the expected cases and
            the voxel grid each output must have.
        out_dir: submission folder to create (must be missing or empty unless ``overwrite``).
        label_map: training label -> challenge label (``"1:2,2:1"``, YAML/JSON path or dict).
        allowed_labels: allowed challenge labels after remapping (``"0-3"``, dataset.json...).
        rle_per_class: ``rle-csv`` only: one row per slice and class (``ImageId,ClassId,
            EncodedPixels``; classes = ``allowed_labels`` minus 0, else every label found);
            otherwise one binary class (a prediction with several labels is an error).
        metrics_csv: ``grand-challenge`` only: an evaluation run's ``metrics.csv`` (or its
            folder); default ``pred_dir/metrics.csv``.
        pred_pattern: shell pattern on the file name selecting prediction files (e.g. ``"*_pred.nii.gz"``;
            ``None``: every volume file).
        atol_mm: grid tolerance in mm (origin, and axis vectors times the extent).
        overwrite: replace a non-empty ``out_dir``.
        zip_path: also write this zip (with ``manifest.json``) when the check passes.
        command: the command line recorded in the manifest.
        progress: progress bars (stderr) while writing and while checking.

    Returns:
        A :class:`PreparedSubmission` with the written cases and the check report.

    Raises:
        SubmissionError: missing, extra or ambiguous predictions, unreadable files,
            predictions not on the image's grid, labels outside the allowed set or above 255;
            every problem is listed and nothing is written.
    """
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    mapping = parse_label_map(label_map)
    allowed = effective_allowed_labels(fmt, allowed_labels)
    out_dir = Path(out_dir).expanduser()
    check_output_folder(out_dir, overwrite)
    for name, folder in (("images", images_dir), ("predictions", pred_dir)):
        if out_dir.resolve().is_relative_to(Path(folder).expanduser().resolve()):
            raise SubmissionError(f"{out_dir}: the output folder must not lie inside the {name} folder {folder}")
    if zip_path is not None:
        zip_path = Path(zip_path).expanduser()
        if zip_path.resolve().is_relative_to(out_dir.resolve()):
            raise SubmissionError(f"{zip_path}: the zip must not lie inside the submission folder {out_dir}")
        if zip_path.exists() and not overwrite:
            raise SubmissionError(f"{zip_path}: exists; pass --overwrite (overwrite=True) to replace it")
    metrics_rows = None
    if fmt.name == "grand-challenge":
        metrics_rows = read_metrics_csv(_metrics_csv_path(metrics_csv, pred_dir))
    elif metrics_csv is not None:
        raise SubmissionError(f"--metrics is only used by the grand-challenge format, not {fmt.name}")
    if rle_per_class and fmt.name != "rle-csv":
        raise SubmissionError(f"--rle-per-class is only used by the rle-csv format, not {fmt.name}")

    cases = discover_images(images_dir, fmt)
    match = match_predictions(pred_dir, cases, pred_pattern)
    problems = list(match.problems)
    problems += [f"{c}: {p}" for c in cases if (p := fmt.case_name_problem(c))]
    if problems:
        raise SubmissionError(f"cannot prepare the {fmt.name} submission: {len(problems)} problem(s)", problems)

    prepared: list[PreparedCase] = []
    rle_rows: dict[str, list[tuple]] = {}
    with atomic_directory(out_dir, overwrite) as tmp_dir:
        for case_id, pred_path in progress_bar(
            match.files.items(), total=len(match.files), desc="write", enabled=progress
        ):
            try:
                labels, case, grid = _prepared_labels(cases[case_id], pred_path, mapping, allowed, atol_mm)
            except MedsegError as exc:
                problems.append(f"{case_id}: {str(exc).splitlines()[0]}")
                continue
            if fmt.name == "rle-csv":
                found = [v for v in case.labels if v]
                if not rle_per_class and len(found) > 1:
                    problems.append(
                        f"{case_id}: labels {found} found, but binary rle-csv encodes one class; "
                        "use --rle-per-class or merge labels with --label-map (e.g. 2:1,3:1)"
                    )
                    continue
                rle_rows[case_id] = volume_rle_rows(case_id, labels, found if rle_per_class else None)
                case.output = RLE_CSV_NAME
            else:
                case.output = fmt.volume_relpath(case_id)
                save_volume(Volume(labels, grid.affine), tmp_dir / case.output, label=True)
            prepared.append(case)
        if problems:
            raise SubmissionError(f"cannot prepare the {fmt.name} submission: {len(problems)} problem(s)", problems)
        if fmt.name == "rle-csv":
            classes = _rle_classes(prepared, allowed) if rle_per_class else None
            _write_rle_csv(tmp_dir / RLE_CSV_NAME, rle_rows, {c.case_id: c for c in prepared}, classes)
        if metrics_rows is not None:
            write_metrics_json(metrics_rows, tmp_dir / METRICS_JSON_NAME)

        # Checked before it is moved into place: an interruption leaves the earlier folder (and zip)
        # as they were, never an unchecked folder under the submission's name. The user's label spec,
        # not ``allowed``: a dataset.json also gives the label names the check's messages use.
        result = PreparedSubmission(fmt.name, out_dir, prepared)
        result.check = check_submission(
            fmt, tmp_dir, images_dir, allowed_labels=allowed_labels, atol_mm=atol_mm, progress=progress
        )
        result.check.target = str(out_dir)
        if zip_path is not None and result.check.ok:
            result.zip_path = write_submission_zip(
                tmp_dir,
                zip_path,
                fmt.name,
                command or _api_command(fmt, pred_dir, images_dir, out_dir),
                list(match.files),
            )
        elif zip_path is not None and zip_path.exists():  # an earlier zip must not stand beside a failing folder
            zip_path.unlink()
            log.warning("removed the earlier %s: the new submission failed its check", zip_path)
    return result


def _prepared_labels(
    case: ImageCase, pred_path: Path, mapping: dict[int, int], allowed: frozenset[int] | None, atol_mm: float
) -> tuple[np.ndarray, PreparedCase, FileGrid]:
    """Read, align, remap and convert one prediction to uint8; raise MedsegError naming the problem."""
    prediction = load_volume(pred_path, label=True)
    grid = read_grid(case.image_path)
    array, note = align_to_grid(prediction, grid, atol_mm)
    notes = [note] if note else []
    if mapping:
        array = remap_labels(array, mapping)
        notes.append("labels remapped " + ",".join(f"{a}:{b}" for a, b in sorted(mapping.items())))
    counts = np.bincount(array.ravel()) if array.size else np.zeros(1, np.int64)
    present = [int(v) for v in np.flatnonzero(counts)]
    if present and present[-1] > 255:
        raise SubmissionError(
            f"{pred_path.name}: label values up to {present[-1]} do not fit in uint8; remap them with --label-map"
        )
    if allowed is not None and (bad := [v for v in present if v not in allowed]):
        raise SubmissionError(
            f"{pred_path.name}: label values {bad} are not allowed (allowed {sorted(allowed)}); "
            "fix them with --label-map (e.g. 4:0 to drop label 4)"
        )
    stored_dtype = read_grid(pred_path).stored_dtype
    if stored_dtype != np.uint8:
        notes.append(f"converted {stored_dtype} to uint8")
    labels = np.ascontiguousarray(array, dtype=np.uint8)
    return labels, PreparedCase(case.case_id, pred_path, case.image_path, "", present, notes), grid


def _rle_classes(prepared: list[PreparedCase], allowed: frozenset[int] | None) -> list[int]:
    if allowed is not None:
        return sorted(allowed - {0})
    return sorted({v for case in prepared for v in case.labels if v})


def _write_rle_csv(
    path: Path, rows: dict[str, list[tuple]], cases: dict[str, PreparedCase], classes: list[int] | None
) -> None:
    """Write ``ImageId,EncodedPixels`` or, with ``classes``, ``ImageId,ClassId,EncodedPixels`` (every slice x class)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        if classes is None:
            writer.writerow(["ImageId", "EncodedPixels"])
            for case_id in sorted(rows):
                writer.writerows(rows[case_id])
            return
        writer.writerow(["ImageId", "ClassId", "EncodedPixels"])
        for case_id in sorted(rows):
            encoded = {(image_id, label): rle for image_id, label, rle in rows[case_id]}
            n_slices = len({image_id for image_id, _, _ in rows[case_id]}) or _n_slices(cases[case_id])
            for k in range(n_slices):
                image_id = slice_image_id(case_id, k)
                writer.writerows((image_id, label, encoded.get((image_id, label), "")) for label in classes)


def _n_slices(case: PreparedCase) -> int:
    return read_grid(case.image).shape[2]


def _metrics_csv_path(metrics_csv: str | Path | None, pred_dir: str | Path) -> Path:
    path = Path(metrics_csv).expanduser() if metrics_csv is not None else Path(pred_dir).expanduser() / "metrics.csv"
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise SubmissionError(
            f"{path}: no metrics.csv; the grand-challenge format needs an evaluation run's metrics "
            "(pass --metrics EVAL_OUT/metrics.csv, as written by medseg evaluate)"
        )
    return path


def _api_command(fmt: SubmissionFormat, pred_dir, images_dir, out_dir) -> str:
    return (
        f"medseg.submission.prepare_submission({fmt.name!r}, {str(pred_dir)!r}, {str(images_dir)!r}, {str(out_dir)!r})"
    )
