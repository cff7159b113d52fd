"""DICOM RTSTRUCT import (medseg.io.rtstruct, ``medseg convert RTSTRUCT OUT --reference SCAN``).

Synthetic RTSTRUCT files (written with pydicom) check the rules exactly: LPS -> RAS, even-odd holes, later ROI
wins, case-insensitive names, named errors. On real data: a DICOM CT series reference (voxel positions taken from
the DICOM tags, not from medseg), and the six NSCLC-Radiomics structure sets against the label maps shipped with
them and against the contours' own polygon areas.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path

from medseg.cli.main import main
from medseg.errors import GeometryError, InvalidArgumentError
from medseg.io import read_label_map
from medseg.io.rtstruct import (
    convert_rtstruct,
    even_odd_fill,
    parse_roi_values,
    rasterise_rtstruct,
    read_rtstruct,
    reference_grid,
    select_rois,
)

# an LPS-ordered grid like a CT's: voxel (i, j, k) lies at LPS (i - 10, j - 8, 2k - 5) mm
SHAPE = (20, 16, 6)
AFFINE = np.array([[-1.0, 0, 0, 10], [0, -1.0, 0, 8], [0, 0, 2.0, -5], [0, 0, 0, 1]])


def _lps_square(i0: float, i1: float, j0: float, j1: float, k: float) -> list[float]:
    """A closed square contour (LPS mm) whose corners are at voxel coordinates (i0, j0) .. (i1, j1) on slice k."""
    corners = [(i0, j0), (i1, j0), (i1, j1), (i0, j1)]
    return [value for i, j in corners for value in (i - 10.0, j - 8.0, 2.0 * k - 5.0)]


def write_rtstruct(
    path, rois: dict[str, list[list[float]]], extra_types: dict[str, str] | None = None, frame: str = ""
):
    """A minimal RTSTRUCT file: ROIs numbered in the given order, each a list of closed planar contours (in the
    frame of reference ``frame`` when given)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Modality = "RTSTRUCT"
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    structures, contours = [], []
    for number, (name, polygons) in enumerate(rois.items(), start=1):
        structures.append(Dataset())
        structures[-1].ROINumber, structures[-1].ROIName = number, name
        if frame:
            structures[-1].ReferencedFrameOfReferenceUID = frame
        roi = Dataset()
        roi.ReferencedROINumber = number
        items = []
        for polygon in polygons:
            item = Dataset()
            item.ContourGeometricType = (extra_types or {}).get(name, "CLOSED_PLANAR")
            item.NumberOfContourPoints = len(polygon) // 3
            item.ContourData = [f"{v:.4f}" for v in polygon]
            items.append(item)
        roi.ContourSequence = Sequence(items)
        contours.append(roi)
    dataset.StructureSetROISequence = Sequence(structures)
    dataset.ROIContourSequence = Sequence(contours)
    dataset.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture()
def reference(tmp_path):
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, dtype=np.int16), AFFINE), str(path))
    return path


def test_even_odd_fill_holes_islands_and_half_open_edges():
    outer = np.array([[1.5, 1.5], [8.5, 1.5], [8.5, 8.5], [1.5, 8.5]])
    hole = np.array([[3.5, 3.5], [6.5, 3.5], [6.5, 6.5], [3.5, 6.5]])
    island = np.array([[4.5, 4.5], [5.5, 4.5], [5.5, 5.5], [4.5, 5.5]])
    assert even_odd_fill([outer], (10, 10)).sum() == 49
    filled = even_odd_fill([outer, hole, island], (10, 10))
    assert filled.sum() == 49 - 9 + 1 and filled[5, 5] and not filled[4, 4] and filled[2, 2]
    # vertices on pixel centres: the lower edges are in, the upper ones out (abutting squares never overlap)
    left, right = np.array([[0, 0], [3, 0], [3, 3], [0, 3.0]]), np.array([[3, 0], [6, 0], [6, 3], [3, 3.0]])
    a, b = even_odd_fill([left], (8, 8)), even_odd_fill([right], (8, 8))
    assert a.sum() == 9 and b.sum() == 9 and not (a & b).any()
    # a polygon reaching outside the grid is cut at its edge; a degenerate one fills nothing
    assert even_odd_fill([np.array([[-5, -5], [2.5, -5], [2.5, 2.5], [-5, 2.5]])], (4, 4)).sum() == 9
    assert not even_odd_fill([np.array([[1.0, 1.0], [2.0, 2.0]])], (4, 4)).any()


def test_rasterise_lps_contours_on_the_reference_affine(tmp_path, reference):
    square = _lps_square(2.5, 7.5, 3.5, 8.5, k=2)  # voxels i 3..7, j 4..8 on slice 2
    hole = _lps_square(4.5, 5.5, 5.5, 6.5, k=2)  # voxel (5, 6)
    heart = _lps_square(6.5, 9.5, 3.5, 8.5, k=2)  # overlaps the lung at i = 7
    path = write_rtstruct(tmp_path / "rs.dcm", {"Lung": [square, hole], "Heart": [heart], "Point": [[0.0, 0.0, -1.0]]},
                          extra_types={"Point": "POINT"})  # fmt: skip
    rois = read_rtstruct(path)
    assert (
        [r.name for r in rois] == ["Lung", "Heart", "Point"]
        and rois[2].contours == ()
        and rois[2].skipped_contours == 1
    )
    labels = rasterise_rtstruct(select_rois(rois, [("lung", 1), ("HEART", 2)]), SHAPE, AFFINE)
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[3:8, 4:9, 2] = 1
    expected[5, 6, 2] = 0
    expected[7:10, 4:9, 2] = 2
    np.testing.assert_array_equal(labels, expected)
    lung_last = rasterise_rtstruct(select_rois(rois, [("Heart", 2), ("Lung", 1)]), SHAPE, AFFINE)
    assert (lung_last[7, 4:9, 2] == 1).all() and (lung_last[8:10, 4:9, 2] == 2).all()
    numbered = rasterise_rtstruct(select_rois(rois, []), SHAPE, AFFINE)  # file order: Lung 1, Heart 2, Point 3
    np.testing.assert_array_equal(numbered, expected)
    with pytest.raises(InvalidArgumentError, match="no ROI named 'Liver'; the file has: Lung, Heart, Point"):
        select_rois(rois, [("Liver", 4)])


def test_contours_off_the_grid_are_named_errors(tmp_path):
    between = write_rtstruct(tmp_path / "between.dcm", {"GTV": [_lps_square(2.5, 5.5, 2.5, 5.5, k=2.5)]})
    with pytest.raises(GeometryError, match=r"ROI 'GTV', contour 1 .* does not lie on a slice"):
        rasterise_rtstruct(select_rois(read_rtstruct(between), None), SHAPE, AFFINE, source="between.dcm")
    beyond = write_rtstruct(tmp_path / "beyond.dcm", {"GTV": [_lps_square(2.5, 5.5, 2.5, 5.5, k=9)]})
    with pytest.raises(GeometryError, match="slice 9 along axis 2, outside the reference grid's slices 0..5"):
        rasterise_rtstruct(select_rois(read_rtstruct(beyond), None), SHAPE, AFFINE)


def test_parse_roi_values():
    assert parse_roi_values(["Lung-Right=1", "a=b=2"]) == [("Lung-Right", 1), ("a=b", 2)]
    for bad in ("Lung", "Lung=0", "=3", "Lung=x"):
        with pytest.raises(InvalidArgumentError, match="NAME=VALUE"):
            parse_roi_values([bad])


def test_convert_cli_writes_label_map_and_sidecar(tmp_path, reference, capsys):
    path = write_rtstruct(tmp_path / "rs.dcm", {"Lung": [_lps_square(2.5, 7.5, 3.5, 8.5, k=2)], "Cord": []})
    out = tmp_path / "out" / "labels.nii.gz"
    assert main(["convert", str(path), str(out), "--reference", str(reference)]) == 0
    written = read_label_map(out)
    np.testing.assert_allclose(written.affine, AFFINE)
    assert written.shape == SHAPE and int((np.asarray(written.array) == 1).sum()) == 25
    sidecar = json.loads((tmp_path / "out" / "labels.json").read_text(encoding="utf-8"))
    assert sidecar["labels"] == {"Lung": 1, "Cord": 2} and sidecar["rois_in_file"] == ["Lung", "Cord"]
    assert "no closed contours" in capsys.readouterr().err  # Cord is empty: said, not silent
    assert main(["convert", str(path), str(out), "--reference", str(reference), "--roi", "lung=3"]) == 0
    assert int((np.asarray(read_label_map(out).array) == 3).sum()) == 25
    assert main(["convert", str(path), str(out), "--reference", str(reference), "--roi", "Liver=1"]) == 1
    assert "no ROI named 'Liver'; the file has: Lung, Cord" in capsys.readouterr().err
    assert main(["convert", str(path), str(out)]) == 1
    assert "needs --reference" in capsys.readouterr().err


def test_dicom_series_reference_positions_from_the_tags(tmp_path):
    """A contour drawn around columns 100-109 and rows 200-204 of the middle slice of a real CT series, in LPS mm
    computed from that slice's own ImagePositionPatient / PixelSpacing: medseg's array is [column, row, slice]."""
    import pydicom

    series = shared_path("ct_3slice_dcmqi/segmentations/ct-3slice")
    middle = pydicom.dcmread(series / "02.dcm", stop_before_pixels=True)
    origin = np.array(middle.ImagePositionPatient, dtype=float)
    row_dir, col_dir = (
        np.array(middle.ImageOrientationPatient[:3], float),
        np.array(middle.ImageOrientationPatient[3:], float),
    )
    row_spacing, col_spacing = (float(v) for v in middle.PixelSpacing)

    def lps(column: float, row: float) -> np.ndarray:
        return origin + column * col_spacing * row_dir + row * row_spacing * col_dir

    corners = [lps(99.5, 199.5), lps(109.5, 199.5), lps(109.5, 204.5), lps(99.5, 204.5)]
    box = list(np.concatenate(corners))
    path = write_rtstruct(tmp_path / "rs.dcm", {"Box": [box]}, frame=str(middle.FrameOfReferenceUID))
    written, _, _ = convert_rtstruct(path, series, tmp_path / "box.nii.gz")
    labels = np.asarray(read_label_map(written).array)
    expected = np.zeros(labels.shape, dtype=np.uint8)
    expected[100:110, 200:205, 1] = 1  # the middle of three slices, whichever way they are stacked
    np.testing.assert_array_equal(labels, expected)
    elsewhere = write_rtstruct(tmp_path / "other.dcm", {"Box": [box]}, frame="1.2.826.0.1.3680043.8.498.1")
    with pytest.raises(
        GeometryError, match=r"frame of reference 1\.2\.826\.0\.1\.3680043\.8\.498\.1, but the reference series"
    ):
        convert_rtstruct(elsewhere, series, tmp_path / "other.nii.gz")


def _polygon_volume_ml(roi, slice_mm: float) -> float:
    """The volume the contours describe: per slice, the shoelace area (mm^2) of each contour, subtracted when it
    lies inside an odd number of the slice's other contours (a hole: these lungs have many, around vessels) and
    added otherwise; times the slice thickness. Nesting is found with matplotlib's point-in-polygon test."""
    from matplotlib.path import Path as PolygonPath

    by_slice: dict[float, list[np.ndarray]] = {}
    for polygon in roi.contours:
        by_slice.setdefault(round(float(polygon[0, 2]), 2), []).append(polygon[:, :2])
    area = 0.0
    for polygons in by_slice.values():
        for n, p in enumerate(polygons):
            depth = sum(PolygonPath(q).contains_point(p[0]) for m, q in enumerate(polygons) if m != n)
            shoelace = 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
            area += -shoelace if depth % 2 else shoelace
    return area * slice_mm / 1000


def _shared_maps_rasteriser(polygons, shape) -> np.ndarray:
    """How the shared label maps were made (reproduced to within a few voxels): vertices truncated to whole pixel
    indices, then filled including every pixel the contour passes through."""
    mask = even_odd_fill([np.floor(p) for p in polygons], shape)
    for polygon in polygons:
        polygon = np.floor(polygon)
        ends = np.roll(polygon, -1, axis=0)
        steps = np.maximum(np.ceil(np.abs(ends - polygon).max(axis=1) * 8).astype(int), 1)
        t = np.concatenate([np.arange(n) / n for n in steps])
        edge = np.repeat(np.arange(len(polygon)), steps)
        points = np.rint(polygon[edge] + (ends[edge] - polygon[edge]) * t[:, None]).astype(int)
        inside = (points >= 0).all(axis=1) & (points[:, 0] < shape[0]) & (points[:, 1] < shape[1])
        mask[points[inside, 0], points[inside, 1]] = True
    return mask


@pytest.mark.parametrize("case", [f"LUNG1-00{n}" for n in range(1, 7)])
def test_nsclc_lungs_against_the_shared_label_maps(case, monkeypatch):
    folder = shared_path(f"nsclc_lung_ct/{case}")
    shape, affine, _ = reference_grid(folder / "ct.nii.gz")
    rois = read_rtstruct(folder / "rtstruct.dcm")
    numbering = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"]
    order = [(name, value) for name, value in numbering.items() if value in (1, 2, 3)]  # lungs, then GTV wins
    labels = rasterise_rtstruct(select_rois(rois, order), shape, affine)
    shared = np.asarray(read_label_map(folder / "labels.nii.gz").array)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    for value, name in ((1, "Lung-Right"), (2, "Lung-Left")):
        ours, theirs = labels == value, shared == value
        dice = 2 * np.count_nonzero(ours & theirs) / (np.count_nonzero(ours) + np.count_nonzero(theirs))
        assert dice >= 0.975, f"{case} {name}: Dice {dice:.4f} against the shared label map"
        # the volume the contours describe, GTV-free: the lung alone, rasterised without the GTV painted over it
        alone = rasterise_rtstruct(select_rois(rois, [(name, 1)]), shape, affine)
        polygons_ml = _polygon_volume_ml(next(r for r in rois if r.name == name), abs(affine[2, 2]))
        assert np.count_nonzero(alone) * voxel_ml == pytest.approx(polygons_ml, rel=0.005), f"{case} {name}"
    if case == "LUNG1-002":  # the shared maps' own rasteriser on medseg's geometry reproduces them
        import medseg.io.rtstruct as rtstruct

        monkeypatch.setattr(rtstruct, "even_odd_fill", _shared_maps_rasteriser)
        emulated = rasterise_rtstruct(select_rois(rois, order), shape, affine)
        for value in (1, 2):
            ours, theirs = emulated == value, shared == value
            assert 2 * np.count_nonzero(ours & theirs) / (np.count_nonzero(ours) + np.count_nonzero(theirs)) >= 0.99
