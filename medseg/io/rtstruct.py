"""DICOM RTSTRUCT import: contours rasterised onto a reference voxel grid.

An RTSTRUCT file holds, per region of interest (ROI), closed planar contours: polygons whose vertices are
patient coordinates in millimetres in DICOM's **LPS+** frame (``ContourData`` = x1, y1, z1, x2, ...). medseg's
affines map voxel indices to **RAS+** mm (see :mod:`medseg.io.volume`), so each vertex ``(x, y, z)`` becomes
``(-x, -y, z)`` and then continuous voxel indices through the inverse of the reference affine.

Rules (all in :func:`rasterise_rtstruct`):

* every contour must lie in one slice plane of the reference grid: its vertices' slice index (along the grid
  axis on which they are constant) within ``slice_tolerance`` voxels of one whole slice index that exists in the
  grid; otherwise :class:`~medseg.errors.GeometryError` names the ROI, the contour and its position in mm;
* within a slice, all contours of one ROI are filled together with the **even-odd rule**: a voxel centre is
  inside when a ray from it crosses the ROI's contour edges an odd number of times, so a contour inside another
  is a hole (and a contour inside that an island). A voxel centre exactly on a contour edge is inside on the
  edge with the smaller in-plane index and outside on the opposite edge (half-open, so two abutting contours
  never both claim a voxel). Parts of a contour outside the grid in-plane are cut off (logged as a warning);
* ROIs are written in the order given (or the file's order): where they overlap, the later one wins;
* ROI names are matched case-insensitively; an unknown name is an error that lists the names in the file.
  Non-planar contour types (``POINT``, ``OPEN_PLANAR``, ...) have no inside and are skipped with a warning.

pydicom reads the file; the rasteriser is medseg's own (a vectorised scanline fill on the reference affine).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg.errors import GeometryError, InvalidArgumentError, VolumeReadError
from medseg.io.volume import LPS_TO_RAS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoiContours:
    """One ROI of an RTSTRUCT file: its number, name, closed planar contours (each an ``(n, 3)`` array of LPS+ mm
    vertices) and the DICOM frame of reference they are in (``""`` when the file does not say)."""

    number: int
    name: str
    contours: tuple[np.ndarray, ...]
    skipped_contours: int = 0
    frame_of_reference: str = ""


def is_rtstruct(path: str | Path) -> bool:
    """True when ``path`` is a DICOM file whose Modality is ``RTSTRUCT`` (reads the header only; False for
    folders, other files and unreadable files)."""
    path = Path(path)
    if not path.is_file():
        return False
    import pydicom

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # not DICOM at all
        return False
    return str(header.get("Modality", "")).upper() == "RTSTRUCT"


def read_rtstruct(path: str | Path) -> list[RoiContours]:
    """The ROIs of an RTSTRUCT file in file order (``StructureSetROISequence``), with their closed planar
    contours in LPS+ mm. An ROI without contours has an empty ``contours`` tuple.

    Raises:
        VolumeReadError: missing or unreadable file, not an RTSTRUCT, or a contour whose ``ContourData`` is not a
            list of x, y, z triples; the message names the file.
    """
    import pydicom

    path = Path(path).expanduser()
    if not path.is_file():
        raise VolumeReadError(f"{path}: no such file")
    try:
        dataset = pydicom.dcmread(path)
    except Exception as exc:
        raise VolumeReadError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if str(dataset.get("Modality", "")).upper() != "RTSTRUCT":
        raise VolumeReadError(f"{path}: not an RTSTRUCT (Modality {dataset.get('Modality', 'missing')!r})")
    contours_by_number: dict[int, tuple[list[np.ndarray], int]] = {}
    for roi_contour in dataset.get("ROIContourSequence", []):
        polygons, skipped = [], 0
        for contour in roi_contour.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper() != "CLOSED_PLANAR":
                skipped += 1
                continue
            data = _contour_data(contour)
            if data.size == 0 or data.size % 3:
                raise VolumeReadError(
                    f"{path}: ROI number {roi_contour.ReferencedROINumber}: ContourData holds {data.size} values, "
                    "not x, y, z triples"
                )
            polygons.append(data.reshape(-1, 3))
        contours_by_number[int(roi_contour.ReferencedROINumber)] = (polygons, skipped)
    rois = []
    for roi in dataset.get("StructureSetROISequence", []):
        polygons, skipped = contours_by_number.get(int(roi.ROINumber), ([], 0))
        frame = str(roi.get("ReferencedFrameOfReferenceUID", ""))
        rois.append(RoiContours(int(roi.ROINumber), str(roi.ROIName), tuple(polygons), skipped, frame))
    if not rois:
        raise VolumeReadError(f"{path}: the RTSTRUCT defines no ROI (StructureSetROISequence is empty)")
    return rois


def _contour_data(contour) -> np.ndarray:
    """``ContourData`` as float64, parsed from the raw bytes when pydicom has not converted them yet (its
    per-value DS conversion is about 30 times slower on large structure sets)."""
    element = contour.get_item(0x30060050)
    if element is None:
        return np.zeros(0)
    raw = element.value
    if isinstance(raw, bytes):
        text = raw.decode("ascii", "replace").strip(" \x00")
        return np.array(text.split("\\"), dtype=np.float64) if text else np.zeros(0)
    return np.asarray(contour.ContourData, dtype=np.float64)


def parse_roi_values(items: list[str] | None) -> list[tuple[str, int]]:
    """``["Lung-Right=1", "GTV-1=3"]`` -> ``[("Lung-Right", 1), ("GTV-1", 3)]`` (order kept: later wins on
    overlap). Values are whole numbers 1-65535. Raises :class:`InvalidArgumentError` naming the item."""
    parsed = []
    for item in items or []:
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or not 0 < int(value) < 65536:
            raise InvalidArgumentError(f"--roi {item!r}: expected NAME=VALUE with a whole VALUE from 1 to 65535")
        parsed.append((name.strip(), int(value)))
    return parsed


def select_rois(rois: list[RoiContours], wanted: list[tuple[str, int]] | None, source: str = "RTSTRUCT"):
    """Pair ROIs with label values: ``wanted`` (name, value) pairs matched case-insensitively (every ROI of that
    name, in the order given), or, when ``wanted`` is empty, every ROI numbered 1, 2, ... in file order.

    Returns a list of ``(RoiContours, value)``. Raises :class:`InvalidArgumentError` for a name not in the file,
    listing the names that are.
    """
    if not wanted:
        return [(roi, index) for index, roi in enumerate(rois, start=1)]
    by_name: dict[str, list[RoiContours]] = {}
    for roi in rois:
        by_name.setdefault(roi.name.casefold(), []).append(roi)
    chosen = []
    for name, value in wanted:
        found = by_name.get(name.casefold())
        if not found:
            names = ", ".join(roi.name for roi in rois)
            raise InvalidArgumentError(f"{source}: no ROI named {name!r}; the file has: {names}")
        chosen += [(roi, value) for roi in found]
    return chosen


def rasterise_rtstruct(
    rois: list[tuple[RoiContours, int]],
    shape: tuple[int, int, int],
    affine: np.ndarray,
    *,
    slice_tolerance: float = 0.25,
    source: str = "RTSTRUCT",
) -> np.ndarray:
    """Label map of ``(roi, value)`` pairs on a voxel grid (see the module docstring for the rules).

    Args:
        rois: ROIs and their label values, in paint order (a later ROI overwrites an earlier one).
        shape: grid shape ``(n_i, n_j, n_k)`` in voxels.
        affine: 4 x 4 voxel-index to RAS+ mm matrix of the grid (contours are converted from LPS+).
        slice_tolerance: how far (in voxels along the slice axis) a contour may lie from a slice centre.
        source: named in error messages (the RTSTRUCT file).

    Returns:
        ``uint8`` array of ``shape`` (``uint16`` when a value exceeds 255); 0 where no ROI is. ROIs without
        contours leave no voxel (a warning is logged).

    Raises:
        GeometryError: a contour that is not in one slice plane of the grid, or whose slice is outside it.
    """
    shape = tuple(int(n) for n in shape)
    world_to_index = np.linalg.inv(np.asarray(affine, dtype=np.float64)) @ LPS_TO_RAS
    top = max((value for _, value in rois), default=0)
    labels = np.zeros(shape, dtype=np.uint8 if top < 256 else np.uint16)
    for roi, value in rois:
        if roi.skipped_contours:
            log.warning(
                "%s: ROI %r: %d contour(s) that are not CLOSED_PLANAR skipped", source, roi.name, roi.skipped_contours
            )
        if not roi.contours:
            log.warning("%s: ROI %r has no closed contours: label %d stays empty", source, roi.name, value)
            continue
        slices, clipped = _roi_slices(roi, shape, world_to_index, slice_tolerance, source)
        if clipped:
            log.warning(
                "%s: ROI %r: %d contour(s) reach outside the grid in-plane; cut at its edge", source, roi.name, clipped
            )
        for cut, mask in slices:
            labels[cut][mask] = value
    return labels


def _roi_slices(roi: RoiContours, shape, world_to_index: np.ndarray, tolerance: float, source: str):
    """One ROI as ``(slice index tuple, 2D boolean mask)`` per slice it occupies, and how many contours reached
    outside the grid in-plane."""
    by_slice: dict[tuple[int, int], list[np.ndarray]] = {}
    clipped = 0
    for number, points in enumerate(roi.contours, start=1):
        index = (world_to_index[:3, :3] @ points.T).T + world_to_index[:3, 3]
        spread = index.max(axis=0) - index.min(axis=0)
        axis = int(np.argmin(spread))
        position = float(index[:, axis].mean())
        nearest = int(round(position))
        where = f"{source}: ROI {roi.name!r}, contour {number} (z = {points[0, 2]:.2f} mm LPS)"
        if spread[axis] > 2 * tolerance or abs(position - nearest) > tolerance:
            raise GeometryError(
                f"{where} does not lie on a slice of the reference grid (slice index {position:.3f} along axis "
                f"{axis}, spread {spread[axis]:.3f} voxels); the RTSTRUCT was drawn on another scan or grid"
            )
        if not 0 <= nearest < shape[axis]:
            raise GeometryError(
                f"{where} lies on slice {nearest} along axis {axis}, outside the reference grid's slices "
                f"0..{shape[axis] - 1}; the RTSTRUCT was drawn on another (or a longer) scan"
            )
        plane = np.delete(index, axis, axis=1)
        in_plane = [n for a, n in enumerate(shape) if a != axis]
        if (plane.min(axis=0) < -0.5).any() or (plane.max(axis=0) > np.array(in_plane) - 0.5).any():
            clipped += 1
        by_slice.setdefault((axis, nearest), []).append(plane)
    slices = []
    for (axis, slice_index), polygons in by_slice.items():
        in_plane = tuple(n for a, n in enumerate(shape) if a != axis)
        cut = [slice(None)] * 3
        cut[axis] = slice_index
        slices.append((tuple(cut), even_odd_fill(polygons, in_plane)))
    return slices, clipped


def even_odd_fill(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Fill closed polygons on a 2D pixel grid with the even-odd rule.

    Args:
        polygons: ``(n, 2)`` arrays of vertex coordinates in pixel-index units ``(a, b)``; each polygon is
            closed implicitly (last vertex to first). All polygons are filled together, so overlapping parts
            cancel (holes).
        shape: ``(n_a, n_b)`` pixels.

    Returns:
        Boolean ``(n_a, n_b)`` array: True where the pixel centre ``(a, b)`` (whole numbers) is inside. Scanlines
        run along ``a`` at each whole ``b``; an edge counts on the rows ``min(b0, b1) <= b < max(b0, b1)`` and a
        centre with a crossing at or before it (``a_cross <= a``) counts that crossing. Empty input: all False.
    """
    n_a, n_b = shape
    starts = np.concatenate([p for p in polygons if len(p) >= 3] or [np.zeros((0, 2))])
    ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons if len(p) >= 3] or [np.zeros((0, 2))])
    low_b, high_b = np.minimum(starts[:, 1], ends[:, 1]), np.maximum(starts[:, 1], ends[:, 1])
    first_row, last_row = np.ceil(low_b).astype(np.int64), np.ceil(high_b).astype(np.int64) - 1  # rows b in [low, high)
    first_row, last_row = np.maximum(first_row, 0), np.minimum(last_row, n_b - 1)
    counts = last_row - first_row + 1
    keep = counts > 0
    if not keep.any():
        return np.zeros(shape, dtype=bool)
    starts, ends, first_row, counts = starts[keep], ends[keep], first_row[keep], counts[keep]
    edge = np.repeat(np.arange(len(counts)), counts)
    rows = first_row[edge] + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    a0, b0 = starts[edge, 0], starts[edge, 1]
    a1, b1 = ends[edge, 0], ends[edge, 1]
    crossing = a0 + (rows - b0) * (a1 - a0) / (b1 - b0)
    column = np.clip(np.ceil(crossing), 0, n_a).astype(np.int64)  # first pixel at or after the crossing
    toggles = np.bincount(rows * (n_a + 1) + column, minlength=n_b * (n_a + 1)).reshape(n_b, n_a + 1)
    return (np.cumsum(toggles[:, :n_a], axis=1) & 1).astype(bool).T


def reference_grid(path: str | Path, series_uid: str | None = None) -> tuple[tuple[int, int, int], np.ndarray, str]:
    """Shape, RAS+ affine and DICOM FrameOfReferenceUID (``""`` for other formats) of the scan an RTSTRUCT was
    drawn on: a NIfTI/NRRD/MetaImage header (no voxel data read) or a DICOM series (folder or one of its files;
    ``series_uid`` picks one of several)."""
    from medseg.io.headers import read_grid
    from medseg.io.loader import file_format, load_volume

    path = Path(path).expanduser()
    if file_format(path) == "dicom":
        import pydicom

        from medseg.io.dicom import select_series

        volume = load_volume(path, series_uid=series_uid, ct=False)
        series, _ = select_series(path, series_uid or volume.meta.get("series_uid"))
        header = pydicom.dcmread(series.files[0], stop_before_pixels=True, specific_tags=["FrameOfReferenceUID"])
        return volume.shape, volume.affine, str(header.get("FrameOfReferenceUID", ""))
    grid = read_grid(path)
    return grid.shape, grid.affine, ""


def convert_rtstruct(
    rtstruct: str | Path,
    reference: str | Path,
    output: str | Path,
    rois: list[tuple[str, int]] | None = None,
    *,
    series_uid: str | None = None,
) -> tuple[Path, Path, dict[str, int]]:
    """Rasterise an RTSTRUCT onto its reference scan's grid and write the label map and a JSON sidecar.

    Args:
        rtstruct: the RTSTRUCT file.
        reference: the scan the contours were drawn on (NIfTI, NRRD, MetaImage or a DICOM series).
        output: label map to write (``.nii.gz`` etc.); it gets the reference's exact shape and affine.
        rois: ``(name, value)`` pairs (see :func:`select_rois`); empty or None: every ROI numbered in file order.
        series_uid: the DICOM series of ``reference`` when its folder holds several.

    Returns:
        The label map's path, the sidecar's path (``output`` without its image suffix plus ``.json``: the ROI
        name -> value numbering, the file's ROI names and both inputs) and the numbering.
    """
    import json

    from medseg.common.naming import volume_stem
    from medseg.io.atomic import atomic_write_text
    from medseg.io.loader import save_volume
    from medseg.io.volume import Volume

    shape, affine, frame = reference_grid(reference, series_uid)
    available = read_rtstruct(rtstruct)
    chosen = select_rois(available, rois, str(rtstruct))
    other = sorted({roi.frame_of_reference for roi, _ in chosen if roi.frame_of_reference} - {frame}) if frame else []
    if other:
        raise GeometryError(
            f"{rtstruct}: its contours are in frame of reference {', '.join(other)}, but the reference series "
            f"{reference} "
            f"is in {frame}: they are different coordinate systems; use the scan the contours were drawn on"
        )
    labels = rasterise_rtstruct(chosen, shape, affine, source=str(rtstruct))
    written = save_volume(Volume(labels, affine, str(output)), output, label=True)
    numbering = {roi.name: value for roi, value in chosen}
    sidecar = Path(written).with_name(volume_stem(written) + ".json")
    document = {
        "rtstruct": str(rtstruct),
        "reference": str(reference),
        "labels": numbering,
        "rois_in_file": [roi.name for roi in available],
        "overlap": "a later ROI in 'labels' wins",
        "voxels_per_label": {
            str(value): int(np.count_nonzero(labels == value)) for value in sorted(set(numbering.values()))
        },
    }
    atomic_write_text(sidecar, json.dumps(document, indent=2) + "\n")
    return Path(written), sidecar, numbering
