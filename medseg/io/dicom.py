"""DICOM series: discovery, consistency checks and reading with exact geometry.

SimpleITK (GDCM underneath) parses headers and decodes pixels, including JPEG 2000 and
JPEG lossless transfer syntaxes, and applies RescaleSlope/RescaleIntercept (so CT arrives
in HU). medseg itself orders the slices along the slice normal, checks the series
(duplicated, missing or unevenly spaced slices, mixed orientations) and builds the affine
from ImagePositionPatient / ImageOrientationPatient / PixelSpacing, so a series is never
silently stretched onto a uniform grid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.errors import DicomSeriesError, VolumeReadError
from medseg.io.volume import LPS_TO_RAS, Volume

_TAGS = {
    "position": "0020|0032",
    "orientation": "0020|0037",
    "pixel_spacing": "0028|0030",
    "rows": "0028|0010",
    "columns": "0028|0011",
    "instance": "0020|0013",
    "series_uid": "0020|000e",
    "description": "0008|103e",
    "modality": "0008|0060",
    "slope": "0028|1053",
    "intercept": "0028|1052",
    "padding": "0028|0120",
    "pixel_representation": "0028|0103",
    "thickness": "0018|0050",
    "spacing_between": "0018|0088",
}


@dataclass
class DicomSlice:
    """Header facts of one DICOM file (positions in LPS+ mm, as stored)."""

    path: str
    tags: dict[str, str]
    position: np.ndarray = field(repr=False)
    row_cosine: np.ndarray = field(repr=False)
    column_cosine: np.ndarray = field(repr=False)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.column_cosine)


@dataclass
class DicomSeriesInfo:
    """One series in a folder: UID, files and what it is."""

    uid: str
    folder: str
    files: list[str]
    description: str = ""
    modality: str = ""

    def summary(self) -> str:
        what = " ".join(x for x in (self.modality, repr(self.description) if self.description else "") if x)
        return f"{self.uid} ({len(self.files)} files{', ' + what if what else ''}) in {self.folder}"


def is_dicom_file(path: str | Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _read_header(path: str) -> DicomSlice:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise VolumeReadError(f"{path}: unreadable or truncated DICOM file ({_first_line(exc)})") from None
    tags = {name: reader.GetMetaData(tag).strip() for name, tag in _TAGS.items() if reader.HasMetaDataKey(tag)}
    return _slice_from_tags(str(path), tags)


def _slice_from_tags(path: str, tags: dict[str, str]) -> DicomSlice:
    try:
        position = np.array([float(v) for v in tags["position"].split("\\")], dtype=np.float64)
        cosines = np.array([float(v) for v in tags["orientation"].split("\\")], dtype=np.float64)
    except (KeyError, ValueError):
        raise VolumeReadError(
            f"{path}: DICOM file lacks a valid ImagePositionPatient / ImageOrientationPatient, "
            "so its place in the volume is unknown"
        ) from None
    return DicomSlice(path, tags, position, cosines[:3], cosines[3:])


def find_dicom_series(folder: str | Path, recursive: bool = True) -> list[DicomSeriesInfo]:
    """List the DICOM series in ``folder`` (and, if ``recursive``, its subfolders).

    Returns an empty list when there is none. Files are listed in GDCM's order; use
    :func:`read_dicom_series` to read one with medseg's checks.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    folders = [folder]
    if recursive:
        folders += sorted(Path(root) / d for root, dirs, _ in os.walk(folder) for d in dirs)
    found = []
    warnings_were_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns for every folder without DICOM
    try:
        for current in folders:
            # GDCM parses every file of a folder for each listing; a folder holding nothing but one
            # series is listed once (its first series is all there is), others series by series
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(current)))
            if not files:
                continue
            listed = {os.path.abspath(f) for f in files}
            if all(
                os.path.abspath(p) in listed for p in current.iterdir() if p.is_file() and not p.name.startswith(".")
            ):
                first = _read_header(files[0])
                uid = first.tags.get("series_uid") or sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(current))[0]
                found.append(
                    DicomSeriesInfo(
                        uid, str(current), files, first.tags.get("description", ""), first.tags.get("modality", "")
                    )
                )
                continue
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(current)):
                files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(current), uid))
                first = _read_header(files[0])
                found.append(
                    DicomSeriesInfo(
                        uid, str(current), files, first.tags.get("description", ""), first.tags.get("modality", "")
                    )
                )
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_were_on)
    return found


def select_series(path: str | Path, series_uid: str | None = None) -> tuple[DicomSeriesInfo, list[DicomSeriesInfo]]:
    """Pick the series to read from a folder (or the series a single DICOM file belongs to).

    Returns the chosen series and every series found. Raises :class:`DicomSeriesError`
    listing every series when the choice is ambiguous, and :class:`VolumeReadError` when
    nothing readable is there.
    """
    path = Path(path)
    if path.is_file():
        uid = _read_header(str(path)).tags.get("series_uid")
        series_uid = series_uid or uid
        path = path.parent
    series = find_dicom_series(path, recursive=True)
    if not series:
        dicom_like = [p.name for p in path.iterdir() if p.is_file() and is_dicom_file(p)] if path.is_dir() else []
        detail = f"; {len(dicom_like)} files carry a DICOM preamble but none could be parsed" if dicom_like else ""
        raise VolumeReadError(f"{path}: no readable DICOM series found{detail}")
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            listing = "\n  ".join(s.summary() for s in series)
            raise DicomSeriesError(f"{path}: no series with UID {series_uid}; found:\n  {listing}")
        return chosen[0], series
    if len(series) > 1:
        listing = "\n  ".join(s.summary() for s in series)
        raise DicomSeriesError(
            f"{path}: holds {len(series)} DICOM series; choose one with series_uid= (Python; `medseg inspect`, "
            f"`convert` and `segment` take --series UID):\n  {listing}"
        )
    return series[0], series


def read_dicom_series(
    path: str | Path,
    series_uid: str | None = None,
    resample_nonuniform: bool = False,
    spacing_tolerance: float = 0.01,
) -> Volume:
    """Read a DICOM series into a :class:`Volume` (array ``[column, row, slice]``, RAS+ affine).

    Args:
        path: a folder holding the series (searched recursively), or one file of the series.
        series_uid: SeriesInstanceUID to read when the folder holds several series.
        resample_nonuniform: when slice spacing is not uniform (or slices are missing),
            linearly interpolate onto a uniform grid at the median spacing instead of raising.
            The result records ``meta["resampled_slices"] = True``.
        spacing_tolerance: relative tolerance on slice spacing (default 1 %, at least 0.01 mm).

    Slices are ordered by increasing position along the slice normal (row cosine x column
    cosine), so the third array axis follows the normal. For CT the values are in HU (the
    rescale is applied once, by GDCM); ``meta`` records slope, intercept and padding value.
    Each file is parsed once: GDCM decodes the series and keeps every slice's header, and the
    checks run on those headers before the volume is returned.

    Raises:
        DicomSeriesError: several series without a choice, duplicated or missing slices,
            non-uniform spacing (unless ``resample_nonuniform``), mixed orientations or sizes.
        VolumeReadError: unreadable or truncated files (named).
    """
    import SimpleITK as sitk

    info, every_series = select_series(path, series_uid)
    folder = info.folder
    _check_no_unreadable_files(folder, [f for s in every_series if s.folder == folder for f in s.files])

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(info.files))
    reader.MetaDataDictionaryArrayUpdateOn()  # every slice's header, parsed once with its pixels
    reader.LoadPrivateTagsOff()
    warnings_were_on = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # medseg checks the spacing itself, below
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        # name the inconsistency (sizes, orientations, a broken file) when the headers show one
        _check_consistent([_read_header(f) for f in info.files], folder)
        raise VolumeReadError(f"{folder}: could not decode the series' pixels ({_first_line(exc)})") from None
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_were_on)
    slices = [_slice_from_tags(f, _series_tags(reader, k)) for k, f in enumerate(info.files)]
    del reader  # while the reader holds the image, viewing its pixels would copy them
    _check_consistent(slices, folder)
    normal = slices[0].normal
    positions = np.array([s.position @ normal for s in slices])
    order = np.argsort(positions, kind="stable")
    slices = [slices[i] for i in order]
    positions = positions[order]
    nominal, irregular = _check_spacing(slices, positions, folder, spacing_tolerance, resample_nonuniform)

    view = sitk.GetArrayViewFromImage(image)  # [file, row, column], valid while `image` lives
    if view.ndim != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeReadError(f"{folder}: expected single-channel slices, got pixel array {view.shape}")
    in_order = np.array_equal(order, np.arange(len(order)))
    array = _compact_dtype(view if in_order else view[order])  # [slice, row, column]
    if np.shares_memory(array, view):
        array = array.copy()
    del view, image

    first, last = slices[0], slices[-1]
    row_spacing, column_spacing = (float(v) for v in first.tags["pixel_spacing"].split("\\"))
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = first.row_cosine * column_spacing  # i: along a row, one column to the next
    affine_lps[:3, 1] = first.column_cosine * row_spacing  # j: down a column, one row to the next
    if len(slices) > 1:
        step = (last.position - first.position) / (positions[-1] - positions[0])  # per mm along normal
        affine_lps[:3, 2] = step * nominal
    else:
        thickness = float(first.tags.get("spacing_between") or first.tags.get("thickness") or 1.0)
        affine_lps[:3, 2] = normal * thickness
    affine_lps[:3, 3] = first.position

    if irregular:
        array = _resample_slices(array, positions, nominal)
    # [slice, row, column] -> [column, row, slice] as a view (Fortran order): no 0.5 s copy
    array = _compact_dtype(array).transpose(2, 1, 0)
    meta = {
        "format": "dicom",
        "series_uid": info.uid,
        "n_files": len(slices),
        "modality": first.tags.get("modality", ""),
        "description": first.tags.get("description", ""),
        "rescale_slope": float(first.tags.get("slope", 1) or 1),
        "rescale_intercept": float(first.tags.get("intercept", 0) or 0),
        "rescale_applied_by": "gdcm",
        "resampled_slices": bool(irregular),
    }
    padding = _padding_value(first.tags)
    if padding is not None:
        meta["pixel_padding_value_hu"] = padding * meta["rescale_slope"] + meta["rescale_intercept"]
    return Volume(array, LPS_TO_RAS @ affine_lps, folder, meta)


def _series_tags(reader, index: int) -> dict[str, str]:
    """The tags medseg uses from one slice's header as kept by an ``ImageSeriesReader``."""
    return {
        name: reader.GetMetaData(index, tag).strip() for name, tag in _TAGS.items() if reader.HasMetaDataKey(index, tag)
    }


def _check_no_unreadable_files(folder: str, listed_files: list[str]) -> None:
    """Raise naming files that carry a DICOM preamble but that GDCM left out of every series.

    GDCM's series listing silently skips files it cannot parse (e.g. truncated ones), which
    would otherwise surface only as a mysterious missing slice.
    """
    listed = {os.path.abspath(f) for f in listed_files}
    unreadable = sorted(
        p.name for p in Path(folder).iterdir() if p.is_file() and os.path.abspath(p) not in listed and is_dicom_file(p)
    )
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise VolumeReadError(f"{folder}: unreadable or truncated DICOM file(s): {shown}")


def _check_consistent(slices: list[DicomSlice], folder: str) -> None:
    ref = slices[0]
    for s in slices[1:]:
        if (
            np.abs(s.row_cosine - ref.row_cosine).max() > 1e-4
            or np.abs(s.column_cosine - ref.column_cosine).max() > 1e-4
        ):
            raise DicomSeriesError(
                f"{folder}: slices have different orientations ({ref.path} vs {s.path}); "
                "this is not one volume (a localiser mixed in?)"
            )
        for key in ("rows", "columns", "pixel_spacing"):
            if s.tags.get(key) != ref.tags.get(key):
                raise DicomSeriesError(
                    f"{folder}: {key} differs between {ref.path} ({ref.tags.get(key)}) and {s.path} ({s.tags.get(key)})"
                )


def _check_spacing(
    slices: list[DicomSlice], positions: np.ndarray, folder: str, rel_tol: float, resample: bool
) -> tuple[float, bool]:
    """Return (nominal spacing mm, whether resampling is needed); raise on bad series."""
    if len(slices) < 2:
        return 0.0, False
    gaps = np.diff(positions)
    for k in np.flatnonzero(gaps < 1e-3):
        raise DicomSeriesError(
            f"{folder}: duplicated slice at {positions[k]:.3f} mm along the normal: "
            f"{slices[k].path} and {slices[k + 1].path}"
        )
    nominal = float(np.median(gaps))
    tol = max(0.01, rel_tol * nominal)
    off = np.flatnonzero(np.abs(gaps - nominal) > tol)
    if off.size == 0:
        return float((positions[-1] - positions[0]) / (len(positions) - 1)), False
    if resample:
        return nominal, True
    problems = []
    for k in off[:5]:
        ratio = gaps[k] / nominal
        where = (
            f"between {Path(slices[k].path).name} ({positions[k]:.3f} mm) and {Path(slices[k + 1].path).name} "
            f"({positions[k + 1]:.3f} mm)"
        )
        if abs(ratio - round(ratio)) * nominal <= tol and 2 <= round(ratio) <= 5:
            problems.append(f"{int(round(ratio)) - 1} missing slice(s) {where}")
        else:
            problems.append(f"gap of {gaps[k]:.3f} mm {where}")
    more = f" (and {off.size - 5} more)" if off.size > 5 else ""
    raise DicomSeriesError(
        f"{folder}: non-uniform slice spacing (typical {nominal:.4g} mm): "
        + "; ".join(problems)
        + more
        + ". Pass resample_nonuniform=True (Python; `medseg inspect` and `convert` take --resample-nonuniform) to "
        "interpolate onto a uniform grid."
    )


def _resample_slices(array: np.ndarray, positions: np.ndarray, spacing: float) -> np.ndarray:
    """Linearly interpolate ``array[slice, ...]`` sampled at ``positions`` onto a uniform grid."""
    n_out = int(np.floor((positions[-1] - positions[0]) / spacing + 1e-6)) + 1
    targets = positions[0] + spacing * np.arange(n_out)
    upper = np.clip(np.searchsorted(positions, targets, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    weight = ((targets - positions[lower]) / (positions[upper] - positions[lower])).astype(np.float32)
    weight = weight[:, None, None]
    return array[lower].astype(np.float32) * (1 - weight) + array[upper].astype(np.float32) * weight


def _compact_dtype(array: np.ndarray) -> np.ndarray:
    """int32 -> int16 when values fit (GDCM widens rescaled int16); float64 -> float32."""
    if array.dtype == np.int32 and array.size and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16)
    if array.dtype == np.float64:
        return array.astype(np.float32)
    return array


def _padding_value(tags: dict[str, str]) -> float | None:
    raw = tags.get("padding")
    if not raw:
        return None
    try:
        value = int(float(raw))
    except ValueError:
        return None
    if tags.get("pixel_representation", "0").strip() == "1" and value >= 32768:
        value -= 65536  # signed pixels: the tag was decoded as unsigned 16-bit
    return float(value)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
