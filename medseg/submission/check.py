"""Checking a submission folder or zip against the images it answers.

Every problem is one line naming the case (or file) and what is wrong. Checks:

* every expected case (one per image, see :mod:`medseg.submission.cases`) is present, and
  there is no extra case or file (hidden files such as ``.DS_Store`` and folders wrapped
  around a zip's content count as extra);
* names match the format (e.g. ``patientNNN_ED.nii.gz`` for ``acdc``);
* per-case volumes: stored as uint8 without intensity scaling, ``.nii.gz`` really gzip
  compressed, shape and affine equal to the matching image's within ``atol_mm`` (default
  1e-3 mm on the origin and on each axis vector times the array extent, i.e. every voxel
  centre within 1e-3 mm; :func:`medseg.io.grid_mismatch`), label values within the allowed set;
* ``rle-csv``: header, ``<case>_slice_<k>`` names, one row per slice (and class), valid
  runs inside the image (which fixes the 2D shape; RLE carries no affine);
* ``grand-challenge``: ``metrics.json`` layout and that it covers exactly the submitted cases;
* a zip made by medseg: every file's SHA-256 equals the manifest's (a mismatch fails the file's case);
* emptiness: a case that is all background is a warning (a failure for ``acdc``, where every
  case shows the heart); all cases empty is a failure;
* labels never predicted: when the allowed labels are known (``--labels``, a dataset.json, and
  always for ``acdc``), a foreground label that is allowed but absent from every case is one
  submission-level warning naming the labels (with their names from the dataset.json or the
  format), e.g. a model that never predicts the myocardium. See :func:`never_predicted_labels`
  for when it applies.
"""

from __future__ import annotations

import csv
import json
import lzma
import tempfile
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from medseg.common.naming import case_key
from medseg.common.progress import progress_bar
from medseg.errors import InvalidArgumentError, MedsegError
from medseg.io import FileGrid, grid_mismatch, load_volume, orientation_code, read_grid
from medseg.submission.cases import ImageCase, discover_images
from medseg.submission.errors import SubmissionError
from medseg.submission.formats import (
    MANIFEST_NAME,
    METRICS_JSON_NAME,
    RLE_CSV_NAME,
    SubmissionFormat,
    format_label_names,
    get_format,
    label_names,
    parse_allowed_labels,
)
from medseg.submission.metrics_json import metrics_json_problems
from medseg.submission.package import files_under, manifest_problems
from medseg.submission.rle import parse_slice_image_id, rle_decode

#: Default tolerance (mm) on the origin and on each axis vector times the extent.
DEFAULT_ATOL_MM = 1e-3
_MAX_ROW_PROBLEMS = 5


@dataclass
class CheckProblem:
    """One problem: the case it concerns (``None`` for the submission as a whole), the message, the severity."""

    case: str | None
    message: str
    severity: str = "error"  # or "warning"


@dataclass
class CheckReport:
    """Result of :func:`check_submission`: expected cases and every problem found."""

    format: str
    target: str
    cases: list[str]
    problems: list[CheckProblem] = field(default_factory=list)
    #: why the container (zip) could not be read at all; then no case was checked
    unreadable: str | None = None

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return self.unreadable is None and not any(p.severity == "error" for p in self.problems)

    def add(self, case: str | None, message: str, severity: str = "error") -> None:
        """Record a problem of ``case`` (``None``: the whole submission)."""
        self.problems.append(CheckProblem(case, message, severity))

    def errors(self, case: str | None = None) -> list[CheckProblem]:
        """Errors for one case (``case=None``: the submission-level ones)."""
        return [p for p in self.problems if p.case == case and p.severity == "error"]

    def failed_cases(self) -> list[str]:
        """Expected cases with at least one error, in case order (``[]`` when all pass; every case when
        the container could not be read)."""
        if self.unreadable is not None:
            return list(self.cases)
        return [c for c in self.cases if self.errors(c)]

    def to_dict(self) -> dict:
        """Machine-readable report (``medseg submit check --json``): ``ok``, the format, the target, every
        case with ``passed`` and its problems, the submission-level problems, and ``unreadable``."""

        def problems(case):
            return [{"message": p.message, "severity": p.severity} for p in self.problems if p.case == case]

        failed = set(self.failed_cases())
        return {
            "ok": self.ok,
            "format": self.format,
            "target": self.target,
            "unreadable": self.unreadable,
            "cases": [{"case": c, "passed": c not in failed, "problems": problems(c)} for c in self.cases],
            "submission_problems": problems(None),
        }

    def lines(self) -> list[str]:
        """The report: a header, ``PASS case`` or one ``FAIL``/``WARN`` line per problem, a summary.
        An unreadable container gives no per-case line: only why it failed and the summary."""
        out = [f"{self.format} submission {self.target}: {len(self.cases)} expected case(s)"]
        if self.unreadable is not None:
            return out + [
                f"FAIL {self.unreadable}",
                f"FAIL: the submission could not be read; 0/{len(self.cases)} cases checked",
            ]
        by_case = defaultdict(list)
        for problem in self.problems:
            by_case[problem.case].append(problem)
        for case in self.cases:
            if not by_case.get(case):
                out.append(f"PASS {case}")
            for problem in by_case.get(case, []):
                out.append(f"{'FAIL' if problem.severity == 'error' else 'WARN'} {case}: {problem.message}")
        for problem in by_case.get(None, []):
            out.append(f"{'FAIL' if problem.severity == 'error' else 'WARN'} {problem.message}")
        n_errors = sum(p.severity == "error" for p in self.problems)
        n_warnings = len(self.problems) - n_errors
        n_passed = len(self.cases) - len(self.failed_cases())
        overall = sum(p.severity == "error" and p.case is None for p in self.problems)
        out.append(
            f"{'PASS' if self.ok else 'FAIL'}: {n_passed}/{len(self.cases)} cases passed, "
            f"{n_errors} problem(s){f' ({overall} with the submission as a whole)' if overall else ''}, "
            f"{n_warnings} warning(s)"
        )
        return out


def check_submission(
    fmt: str | SubmissionFormat,
    target: str | Path,
    images_dir: str | Path,
    *,
    allowed_labels: str | Path | frozenset[int] | None = None,
    atol_mm: float = DEFAULT_ATOL_MM,
    progress: bool = False,
) -> CheckReport:
    """Check a submission folder or ``.zip`` against the images in ``images_dir``.

    Args:
        fmt: format name (``msd``, ``acdc``, ``rle-csv``, ``grand-challenge``) or object.
        target: the submission folder or zip.
        images_dir: the images the submission answers (defines the expected cases and grids).
        allowed_labels: allowed label values (``"0,1,2"``, ``"0-3"``, a dataset.json path or
            a set); ``acdc`` always allows 0..3 only; ``None``: any uint8 value.
        atol_mm: grid tolerance in mm (see the module docstring).
        progress: a progress bar (stderr) over the expected cases as they are checked (none for rle-csv).

    Returns:
        A :class:`CheckReport`; ``report.ok`` is False when anything failed.

    Raises:
        SubmissionError: the target does not exist or the images cannot be listed.
    """
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    allowed = effective_allowed_labels(fmt, allowed_labels)
    names = label_names(fmt, allowed_labels)
    target = Path(target).expanduser()
    expected = discover_images(images_dir, fmt)
    report = CheckReport(fmt.name, str(target), list(expected))
    if target.is_file():
        with tempfile.TemporaryDirectory(prefix="medseg-check-") as folder:
            if _extract_zip(target, Path(folder), report):
                present = _check_folder(
                    fmt, Path(folder), expected, allowed, atol_mm, report, in_zip=True, progress=progress
                )
                _warn_never_predicted(report, allowed, names, present)
                _check_manifest(fmt, Path(folder), report)
        return report
    if not target.is_dir():
        raise SubmissionError(f"{target}: no such submission folder or zip")
    present = _check_folder(fmt, target, expected, allowed, atol_mm, report, in_zip=False, progress=progress)
    _warn_never_predicted(report, allowed, names, present)
    return report


def effective_allowed_labels(fmt: SubmissionFormat, spec: object) -> frozenset[int] | None:
    """The label values a submission may hold: the user's label spec (plus 0), the format's, or ``None`` (any uint8).

    Raises :class:`~medseg.errors.InvalidArgumentError` when the spec allows values the format does not."""
    user = parse_allowed_labels(spec, format_label_names(fmt))
    if fmt.allowed_labels is None:
        return user
    if user is not None and not user <= fmt.allowed_labels:
        raise InvalidArgumentError(
            f"--labels {sorted(user)} is not within the {fmt.name} labels {sorted(fmt.allowed_labels)}"
        )
    return user or fmt.allowed_labels


# -- zip ----------------------------------------------------------------------------------
#: what zipfile raises for a container it cannot decode: not a zip, truncated, corrupt deflate or LZMA data, an
#: unsupported compression method or zip version, an encrypted member
_ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
)


def _extract_zip(path: Path, folder: Path, report: CheckReport) -> bool:
    """Extract a submission zip safely; report unsafe names and a wrapping folder. False if unreadable."""
    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_READ_ERRORS as exc:
        report.unreadable = f"{path.name}: not a readable zip file ({exc})"
        return False
    with archive:
        try:
            broken = archive.testzip()
        except _ZIP_READ_ERRORS as exc:
            report.unreadable = f"{path.name}: not a readable zip file ({exc})"
            return False
        if broken:
            report.unreadable = f"{path.name}: member {broken} is corrupt (CRC mismatch)"
            return False
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        for name in names:
            pure = PurePosixPath(name)
            if pure.is_absolute() or ".." in pure.parts or "\\" in name:
                report.add(None, f"{name}: unsafe path in the zip (absolute, '..' or backslash); not extracted")
                continue
            archive.extract(name, folder)
    tops = {PurePosixPath(n).parts[0] for n in names if not n.startswith("__MACOSX")}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names if not n.startswith("__MACOSX")):
        report.add(None, f"{path.name}: every file is inside the folder {tops.pop()}/; files must be at the zip's root")
    return True


def _check_manifest(fmt: SubmissionFormat, folder: Path, report: CheckReport) -> None:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        report.add(
            None,
            f"no {MANIFEST_NAME} in the zip (not made by medseg submit --zip); file hashes not verified",
            "warning",
        )
        return
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        report.add(None, f"{MANIFEST_NAME}: not valid JSON ({exc})")
        return
    for problem in manifest_problems(folder, manifest, fmt.name):
        report.add(_case_of_file(fmt, problem.relpath, report), problem.message)


def _case_of_file(fmt: SubmissionFormat, relpath: str | None, report: CheckReport) -> str | None:
    """The expected case a submission file answers (so its problems fail that case), else ``None``."""
    case_id = fmt.case_from_relpath(relpath) if relpath is not None else None
    return case_id if case_id in report.cases else None


# -- folder -------------------------------------------------------------------------------
def _check_folder(
    fmt: SubmissionFormat,
    folder: Path,
    expected: dict[str, ImageCase],
    allowed: frozenset[int] | None,
    atol_mm: float,
    report: CheckReport,
    in_zip: bool,
    progress: bool = False,
) -> dict[str, set[int]]:
    """Check every file of the submission; return the label values found per readable case."""
    files = files_under(folder)
    found: dict[str, str] = {}
    for rel in files:
        if rel in fmt.fixed_files or (in_zip and rel == MANIFEST_NAME):
            continue
        case_id = fmt.case_from_relpath(rel)
        if case_id is None:
            report.add(None, f"{rel}: extra file, not part of the {fmt.name} format{_did_you_mean(fmt, rel, expected)}")
        elif case_id not in expected:
            name_problem = fmt.case_name_problem(case_id)
            what = name_problem or f"extra case {case_id!r} (no image with this case id)"
            report.add(None, f"{rel}: {what}{_did_you_mean(fmt, rel, expected)}")
        else:
            found[case_id] = rel
    for fixed in fmt.fixed_files:
        if fixed not in files:
            report.add(None, f"{fixed}: missing (a {fmt.name} submission needs it)")
    if fmt.name == "rle-csv":
        if RLE_CSV_NAME in files:
            return _check_rle_csv(folder / RLE_CSV_NAME, expected, allowed, report)
        return {}
    present_by_case: dict[str, set[int]] = {}
    for case_id, case in progress_bar(expected.items(), total=len(expected), desc="check", enabled=progress):
        if case_id not in found:
            report.add(case_id, f"missing: expected {fmt.volume_relpath(case_id)}")
            continue
        present = _check_volume(fmt, folder / found[case_id], found[case_id], case, allowed, atol_mm, report)
        if present is not None:
            present_by_case[case_id] = present
    if found and len(present_by_case) == len(found) and not any(v > 0 for p in present_by_case.values() for v in p):
        report.add(None, f"all {len(found)} submitted case(s) are empty (all background)")
    if METRICS_JSON_NAME in fmt.fixed_files and METRICS_JSON_NAME in files:
        try:
            content = json.loads((folder / METRICS_JSON_NAME).read_text(encoding="utf-8"))
        except ValueError as exc:
            report.add(None, f"{METRICS_JSON_NAME}: not valid JSON ({exc})")
        else:
            for line in metrics_json_problems(content, list(expected)):
                report.add(None, line)
    return present_by_case


def _did_you_mean(fmt: SubmissionFormat, rel: str, expected: dict[str, ImageCase]) -> str:
    """`` (expected X instead?)`` when ``rel`` has the case key of an expected case (the naming rule of
    :mod:`medseg.common.naming`, case-insensitive) but the wrong suffix, folder or role suffix."""
    if fmt.volume_suffix is None:
        return ""
    key = case_key(rel.rpartition("/")[2]).lower()
    for case_id in expected:
        if case_key(case_id).lower() == key:
            return f" (expected {fmt.volume_relpath(case_id)} instead?)"
    return ""


def _check_volume(
    fmt: SubmissionFormat,
    path: Path,
    rel: str,
    case: ImageCase,
    allowed: frozenset[int] | None,
    atol_mm: float,
    report: CheckReport,
) -> set[int] | None:
    """Check one case's label volume; return the label values it holds (``None``: not readable)."""
    case_id = case.case_id
    if rel.endswith(".gz") and not _is_gzip(path):
        report.add(case_id, f"{rel}: named .gz but not gzip-compressed")
        return None
    try:
        grid = read_grid(path)
        image_grid = read_grid(case.image_path)
    except MedsegError as exc:
        report.add(case_id, str(exc))
        return None
    if grid.stored_dtype != np.uint8 or grid.scaled:
        scaling = " with intensity scaling (scl_slope/scl_inter)" if grid.scaled else ""
        report.add(case_id, f"{rel}: stored as {grid.stored_dtype}{scaling}; expected uint8 labels")
    problem = grid_mismatch(
        grid.affine, grid.shape, image_grid.affine, image_grid.shape, atol_mm, ("submission", "image")
    )
    if problem:
        report.add(
            case_id,
            f"{rel}: voxel grid differs from the image {case.image_path.name}: "
            f"{problem}{'' if 'orientation' in problem else _flip_hint(grid, image_grid)}",
        )
    try:
        labels = load_volume(path, label=True).array
    except MedsegError as exc:
        report.add(case_id, str(exc))
        return None
    counts = np.bincount(labels.ravel()) if labels.size else np.zeros(1, np.int64)
    present = np.flatnonzero(counts)
    if allowed is not None:
        bad = [int(v) for v in present if int(v) not in allowed]
        if bad:
            report.add(case_id, f"{rel}: label values {bad} not allowed (allowed: {_ranges(sorted(allowed))})")
    is_empty = not np.any(present > 0)
    if is_empty:
        report.add(
            case_id, f"{rel}: all background (empty prediction)", "error" if fmt.require_foreground else "warning"
        )
    elif fmt.require_foreground and fmt.allowed_labels:
        absent = sorted(set(fmt.allowed_labels) - {0} - {int(v) for v in present})
        if absent:
            report.add(case_id, f"{rel}: labels {absent} absent (every {fmt.name} structure is expected)", "warning")
    return {int(v) for v in present}


def never_predicted_labels(allowed: frozenset[int] | None, present_by_case: dict[str, set[int]]) -> list[int]:
    """Allowed foreground labels (> 0) found in none of the cases, sorted; ``[]`` when the check does not apply.

    ``present_by_case`` maps each readable case to the label values it holds. The check
    applies only when

    * the allowed labels are known (``allowed`` is not ``None``): without them nothing says
      which labels a model should predict;
    * at least two cases were read: one case lacking a structure is common (a lesion label
      in a case without lesions; ``acdc`` already warns per case), but a label missing from
      every case of a test set usually means a model that never predicts it, or a wrong
      ``--label-map``;
    * some case holds foreground: when every case is empty that is already a failure.

    Pure Python set arithmetic; no input (``{}``) gives ``[]``.
    """
    if allowed is None or len(present_by_case) < 2:
        return []
    found = set().union(*present_by_case.values())
    if not found - {0}:
        return []
    return sorted(allowed - {0} - found)


def _warn_never_predicted(
    report: CheckReport, allowed: frozenset[int] | None, names: dict[int, str], present_by_case: dict[str, set[int]]
) -> None:
    """Add the submission-level warning of :func:`never_predicted_labels`, naming the labels."""
    absent = never_predicted_labels(allowed, present_by_case)
    if not absent:
        return
    shown = _label_list(absent, names)
    readable = " readable" if len(present_by_case) < len(report.cases) else ""
    report.add(
        None,
        f"label(s) {shown} allowed but absent from every one of the {len(present_by_case)}{readable} cases: "
        "a model that never predicts them (or a wrong --label-map)?",
        "warning",
    )


def _label_list(values: list[int], names: dict[int, str]) -> str:
    """``"1 (liver), 2 (tumour)"`` with names; without, runs of three or more as ranges (``"1, 2, 4-255"``)."""
    if any(v in names for v in values):
        return ", ".join(f"{v} ({names[v]})" if v in names else str(v) for v in values)
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ", ".join(map(str, run)) for run in runs)


def _flip_hint(grid: FileGrid, image_grid: FileGrid) -> str:
    if grid.shape != image_grid.shape and sorted(grid.shape) != sorted(image_grid.shape):
        return ""
    ours, theirs = orientation_code(grid.affine), orientation_code(image_grid.affine)
    if ours != theirs:
        return f" (axes flipped or swapped: orientation {ours} vs the image's {theirs})"
    return ""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _ranges(values: list[int]) -> str:
    parts, start = [], None
    for index, value in enumerate(values):
        if start is None:
            start = value
        if index + 1 == len(values) or values[index + 1] != value + 1:
            parts.append(f"{start}" if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


# -- rle-csv ------------------------------------------------------------------------------
def _check_rle_csv(
    path: Path, expected: dict[str, ImageCase], allowed: frozenset[int] | None, report: CheckReport
) -> dict[str, set[int]]:
    """Check ``submission.csv``; return the classes with some foreground per case (per-class CSV only, else ``{}``)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        report.add(None, f"{RLE_CSV_NAME}: unreadable ({exc})")
        return {}
    header = [h.strip() for h in rows[0]] if rows else []
    if header not in (["ImageId", "EncodedPixels"], ["ImageId", "ClassId", "EncodedPixels"]):
        report.add(
            None,
            f"{RLE_CSV_NAME}: header {','.join(header) or '(none)'} should be ImageId,EncodedPixels or "
            "ImageId,ClassId,EncodedPixels",
        )
        return {}
    per_class = len(header) == 3
    grids: dict[str, FileGrid] = {}
    seen: dict[str, dict[tuple[int, int], str]] = defaultdict(dict)
    row_problems: dict[str | None, list[str]] = defaultdict(list)
    extra_cases: dict[str, int] = defaultdict(int)
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            row_problems[None].append(f"{RLE_CSV_NAME} line {line_number}: {len(row)} fields, expected {len(header)}")
            continue
        image_id, encoded = row[0].strip(), row[-1]
        parsed = parse_slice_image_id(image_id)
        if parsed is None:
            row_problems[None].append(
                f"{RLE_CSV_NAME} line {line_number}: ImageId {image_id!r} is not named <case>_slice_<k:03d>"
            )
            continue
        case_id, k = parsed
        if case_id not in expected:
            extra_cases[case_id] += 1
            continue
        label = 1
        if per_class:
            text = row[1].strip()
            if not text.isdigit() or int(text) == 0 or (allowed is not None and int(text) not in allowed):
                what = f"allowed: {_ranges(sorted(allowed - {0}))}" if allowed else "classes are labels >= 1"
                row_problems[case_id].append(f"line {line_number}: ClassId {text!r} not allowed ({what})")
                continue
            label = int(text)
        if case_id not in grids:
            try:
                grids[case_id] = read_grid(expected[case_id].image_path)
            except MedsegError as exc:
                report.add(case_id, str(exc))
                grids[case_id] = None  # type: ignore[assignment]
        grid = grids[case_id]
        if grid is None:
            continue
        if k >= grid.shape[2]:
            row_problems[case_id].append(f"line {line_number}: {image_id} is beyond the image's {grid.shape[2]} slices")
            continue
        if (k, label) in seen[case_id]:
            row_problems[case_id].append(
                f"line {line_number}: {image_id}{' class ' + str(label) if per_class else ''} appears twice"
            )
            continue
        try:
            rle_decode(encoded, grid.shape[:2])
        except ValueError as exc:
            row_problems[case_id].append(f"line {line_number}: {image_id}: invalid run-length encoding: {exc}")
            continue
        seen[case_id][(k, label)] = encoded.strip()
    for case_id, count in sorted(extra_cases.items()):
        report.add(None, f"{RLE_CSV_NAME}: extra case {case_id!r} ({count} rows; no image with this case id)")
    for case_id, lines in row_problems.items():
        for line in lines[:_MAX_ROW_PROBLEMS]:
            report.add(case_id, line)
        if len(lines) > _MAX_ROW_PROBLEMS:
            report.add(case_id, f"... and {len(lines) - _MAX_ROW_PROBLEMS} more such rows")
    classes = sorted({label for entries in seen.values() for (_, label) in entries}) if per_class else [1]
    empty_cases = 0
    for case_id in expected:
        grid = grids.get(case_id)
        entries = seen.get(case_id, {})
        if case_id not in grids:
            report.add(case_id, f"missing: no rows named {case_id}_slice_<k> in {RLE_CSV_NAME}")
            continue
        if grid is None:
            continue
        missing = [(k, c) for k in range(grid.shape[2]) for c in classes if (k, c) not in entries]
        if missing:
            shown = ", ".join(f"{k:03d}" + (f"/class {c}" if per_class else "") for k, c in missing[:8])
            report.add(
                case_id,
                f"missing {len(missing)} of {grid.shape[2] * len(classes)} rows "
                f"(slice{'/class' if per_class else ''} {shown}{', ...' if len(missing) > 8 else ''})",
            )
        if entries and not any(entries.values()):
            empty_cases += 1
            report.add(case_id, "all slices empty (empty prediction)", "warning")
    if seen and empty_cases == len(seen):
        report.add(None, f"all {empty_cases} submitted case(s) are empty (all background)")
    if not per_class:  # one binary class: which label it stands for is not recorded
        return {}
    return {
        case_id: {0} | {label for (_, label), encoded in entries.items() if encoded}
        for case_id, entries in seen.items()
        if grids.get(case_id) is not None
    }
