"""medseg.io on real scans: geometry and HU checked against SimpleITK, error paths, round trips,
and the fast readers (read_grid, read_label_map) checked against load_volume."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import shared_path

from medseg.errors import DicomSeriesError, GeometryError, VolumeReadError
from medseg.io import (
    Volume,
    check_same_grid,
    find_dicom_series,
    load_image_and_label,
    load_volume,
    looks_like_hu,
    read_grid,
    read_label_map,
    save_volume,
)
from medseg.io.volume import affine_from_itk

LIDC = "chest_ct_lidc/LIDC-IDRI-0001"
J2K = "totalseg_ct/example_ct_dicom_j2k"
THREE_SLICE = "ct_3slice_dcmqi/segmentations/ct-3slice"


def sitk_reference(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's own reading: array as [x, y, z] and the RAS+ affine from its LPS geometry."""
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        uid = reader.GetGDCMSeriesIDs(str(path))[0]
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), uid))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = affine_from_itk(
        np.array(image.GetSpacing()), np.array(image.GetOrigin()), np.array(image.GetDirection()).reshape(3, 3)
    )
    return array, affine


@pytest.fixture(scope="module")
def lidc() -> Volume:
    return load_volume(shared_path(LIDC))


# -- DICOM on real series ------------------------------------------------------------------
def test_lidc_geometry_and_hounsfield(lidc):
    assert lidc.shape == (512, 512, 133)
    np.testing.assert_allclose(lidc.spacing_mm, [0.703125, 0.703125, 2.5], atol=1e-6)
    assert lidc.orientation == "LPS"  # DICOM axes: columns to patient left, rows to posterior
    assert lidc.meta["modality"] == "CT" and lidc.meta["rescale_intercept"] == -1024
    middle = lidc.array[:, :, 66]
    assert abs(np.median(middle[240:270, 15:35]) - (-1000)) < 30  # air in front of the chest
    for lung_box in (middle[100:160, 220:300], middle[350:410, 220:300]):  # right and left lung
        assert -920 < np.median(lung_box) < -780
    assert lidc.array.min() == -1024  # out-of-field padding (-2048 HU) mapped to air
    assert lidc.meta["hu"]["padding_voxels"] > 0


def test_relative_folder_path(monkeypatch):
    folder = shared_path(THREE_SLICE)
    monkeypatch.chdir(folder.parent.parent)
    assert load_volume(Path("segmentations") / folder.name).shape == (512, 512, 3)


def test_lidc_matches_simpleitk(lidc):
    reference, affine = sitk_reference(shared_path(LIDC))
    np.testing.assert_allclose(lidc.affine, affine, atol=1e-6)
    inside = reference >= -1024
    np.testing.assert_array_equal(lidc.array[inside], reference[inside])  # HU applied exactly once
    assert np.all(lidc.array[~inside] == -1024)
    # z of the first slice is the most inferior position: slices ordered along the normal
    assert lidc.origin_mm[2] == pytest.approx(-340.0)


def test_jpeg2000_series_matches_simpleitk():
    path = shared_path(J2K)
    volume = load_volume(path)
    reference, affine = sitk_reference(path)
    assert volume.shape == (512, 512, 20)
    np.testing.assert_allclose(volume.spacing_mm, [0.9765625, 0.9765625, 2.0], atol=1e-6)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(volume.array, reference)
    assert volume.array.min() == -1024 and volume.array.max() == 1839


def test_padding_value_mapped_to_air_and_nrrd_mask_on_same_grid():
    ct = load_volume(shared_path(THREE_SLICE))
    reference, _ = sitk_reference(shared_path(THREE_SLICE))
    assert reference.min() == -3024 and ct.array.min() == -1024
    assert ct.meta["pixel_padding_value_hu"] == -3024
    heart = load_volume(shared_path("ct_3slice_dcmqi/segmentations/heart_seg.nrrd"), label=True)
    check_same_grid(ct, heart)  # NRRD label drawn on this DICOM grid: same voxels, same mm
    assert set(np.unique(heart.array)) == {0, 3}


def test_uneven_series_is_refused_then_resampled():
    path = shared_path("tiny_ct_dicom_uneven")
    with pytest.raises(DicomSeriesError, match="non-uniform slice spacing"):
        load_volume(path)
    volume = load_volume(path, resample_nonuniform=True)
    assert volume.meta["resampled_slices"] is True
    assert volume.spacing_mm[2] == pytest.approx(1.25, abs=1e-3)
    assert volume.shape == (16, 16, 165)  # (105.52 - -99.48) / 1.25 + 1
    last_slice_z = (volume.affine @ [0, 0, volume.shape[2] - 1, 1])[2]
    assert last_slice_z == pytest.approx(105.52, abs=1e-3)


@pytest.fixture()
def lidc_copy(tmp_path) -> Path:
    """12 consecutive slices of the LIDC series (file names are not in position order)."""
    (series,) = find_dicom_series(shared_path(LIDC))
    target = tmp_path / "series"
    target.mkdir()
    for f in series.files[60:72]:
        shutil.copy(f, target / Path(f).name)
    return target


def test_missing_slice_named(lidc_copy):
    (series,) = find_dicom_series(lidc_copy)
    Path(series.files[5]).unlink()
    with pytest.raises(DicomSeriesError, match="1 missing slice"):
        load_volume(lidc_copy)


def test_duplicated_slice_named(lidc_copy):
    original = Path(find_dicom_series(lidc_copy)[0].files[3])
    shutil.copy(original, lidc_copy / "copy.dcm")
    with pytest.raises(DicomSeriesError, match="duplicated slice") as info:
        load_volume(lidc_copy)
    assert "copy.dcm" in str(info.value) and original.name in str(info.value)


def test_truncated_dicom_named(lidc_copy):
    victim = Path(find_dicom_series(lidc_copy)[0].files[4])
    victim.write_bytes(victim.read_bytes()[:2000])
    with pytest.raises(VolumeReadError, match=f"truncated DICOM file.*{victim.name}"):
        load_volume(lidc_copy)


def _rewrite_slice(path: Path, orientation: str | None = None, halve: bool = False) -> None:
    """Write one slice of a series again with another orientation or half its rows and columns
    (public tags and UIDs kept, so it stays in the series)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    image = reader.Execute()
    if halve:
        image = image[::2, ::2]
    for key in reader.GetMetaDataKeys():
        if int(key.split("|")[0], 16) % 2 == 0 and not key.startswith(("0028|", "7fe0|")):
            image.SetMetaData(key, reader.GetMetaData(key))
    if orientation is not None:
        image.SetMetaData("0020|0037", orientation)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(image)


def test_mixed_orientation_and_size_named(lidc_copy):
    """Headers are parsed once, with the pixels; a slice that does not fit the volume is still
    named, whether GDCM decodes the series (other orientation) or fails on it (other size)."""
    files = find_dicom_series(lidc_copy)[0].files
    _rewrite_slice(Path(files[4]), orientation="1\\0\\0\\0\\0\\-1")
    with pytest.raises(DicomSeriesError, match="different orientations"):
        load_volume(lidc_copy)
    shutil.copy(files[3], files[4])  # restore a good slice 4 (duplicated position) ...
    _rewrite_slice(Path(files[4]), halve=True)  # ... then halve it
    with pytest.raises(DicomSeriesError, match=f"rows differs.*{Path(files[4]).name}"):
        load_volume(lidc_copy)


def test_series_listing_matches_gdcm_and_one_folder_with_two_series_is_refused(lidc_copy):
    """A folder holding only one series is listed from GDCM's first listing (one parse of the
    folder fewer): same UID and files as GDCM's per-UID listing. A second series in the same
    folder (or any other file) takes the full listing, so it is never read as one volume."""
    (series,) = find_dicom_series(lidc_copy)
    assert series.uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(lidc_copy))
    assert series.files == list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(lidc_copy), series.uid))
    for f in find_dicom_series(shared_path(J2K))[0].files:
        shutil.copy(f, lidc_copy / f"j2k_{Path(f).name}")
    assert len(find_dicom_series(lidc_copy)) == 2
    with pytest.raises(DicomSeriesError, match="holds 2 DICOM series"):
        load_volume(lidc_copy)


def test_several_series_listed_and_selectable(tmp_path):
    for name in (LIDC, J2K):
        shutil.copytree(shared_path(name), tmp_path / Path(name).name)
    with pytest.raises(DicomSeriesError, match="holds 2 DICOM series") as info:
        load_volume(tmp_path)
    series = find_dicom_series(tmp_path)
    assert {s.uid for s in series} == {s.uid for s in series if s.uid in str(info.value)}
    j2k_uid = next(s.uid for s in series if len(s.files) == 20)
    assert load_volume(tmp_path, series_uid=j2k_uid).shape == (512, 512, 20)


# -- NIfTI / NRRD against SimpleITK --------------------------------------------------------
@pytest.mark.parametrize(
    "relative",
    [
        "kits19_labels/case_00003_segmentation.nii.gz",  # IPL orientation
        "sunnybrook_lv/SCD0000101_phase07_image.nii.gz",  # oblique short axis
        "totalseg_ct/example_mr_sm.nii.gz",  # LPS
        "ct_3slice_dcmqi/paramaps/pm-example.nrrd",
    ],
)
def test_files_match_simpleitk(relative):
    path = shared_path(relative)
    volume = load_volume(path, ct=False)
    reference, affine = sitk_reference(path)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(volume.array, reference)


def test_sunnybrook_is_oblique_mr_not_hu():
    volume = load_volume(shared_path("sunnybrook_lv/SCD0000101_phase07_image.nii.gz"))
    assert volume.meta["kind"] == "image" and not looks_like_hu(volume.array)
    direction = np.abs(volume.direction)
    assert np.abs(direction - np.round(direction)).max() > 0.05  # oblique


# -- HU handling ---------------------------------------------------------------------------
def _write_scaled_ct(path: Path, stored: np.ndarray, slope: float, inter: float) -> None:
    image = nib.Nifti1Image(stored, np.diag([0.8, 0.8, 2.5, 1.0]))
    image.header.set_data_dtype(stored.dtype)
    image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))


def test_nifti_scaling_applied_exactly_once(tmp_path):
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 2000, size=(20, 20, 6)).astype(np.uint16)
    stored[:5] = 24  # air: 24 - 1024 = -1000 HU
    _write_scaled_ct(tmp_path / "ct.nii.gz", stored, 1.0, -1024.0)
    volume = load_volume(tmp_path / "ct.nii.gz")
    assert volume.meta["kind"] == "ct"
    np.testing.assert_array_equal(volume.array, stored.astype(np.int32) - 1024)
    assert volume.array.dtype == np.int16
    clipped = load_volume(tmp_path / "ct.nii.gz", clip_hu=(-200, 300))
    assert clipped.array.min() == -200 and clipped.array.max() == 300


def test_raw_ct_without_intercept_is_detected(tmp_path):
    stored = np.full((20, 20, 6), 24, np.int16)
    stored[5:15, 5:15] = 1064  # soft tissue +40 HU if the intercept were applied
    _write_scaled_ct(tmp_path / "raw.nii.gz", stored, 1.0, 0.0)
    assert load_volume(tmp_path / "raw.nii.gz").meta["kind"] == "image"  # not mistaken for HU
    with pytest.raises(VolumeReadError, match="raw.nii.gz: values do not look like Hounsfield units"):
        load_volume(tmp_path / "raw.nii.gz", ct=True)


def test_padding_in_nifti_ct_mapped_to_air(tmp_path):
    hu = np.full((10, 10, 4), -1000, np.int16)
    hu[:2] = -3024
    hu[4:6, 4:6] = 50
    save_volume(Volume(hu, np.eye(4)), tmp_path / "ct.nii.gz")
    volume = load_volume(tmp_path / "ct.nii.gz")
    assert volume.array.min() == -1024 and volume.meta["hu"]["padding_voxels"] == 80
    assert load_volume(tmp_path / "ct.nii.gz", ct=False).array.min() == -3024


# -- writing and round trips ---------------------------------------------------------------
def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(23.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.7, 0.9, 3.0])
    affine[:3, 3] = [-120.25, 33.5, -87.75]
    return affine


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_geometry_round_trip(tmp_path, suffix):
    labels = np.random.default_rng(1).integers(0, 4, size=(9, 8, 7)).astype(np.uint8)
    original = Volume(labels, _oblique_affine())
    path = save_volume(original, tmp_path / f"label{suffix}", label=True)
    again = load_volume(path, label=True)
    assert again.array.dtype == np.uint8
    np.testing.assert_array_equal(again.array, labels)
    np.testing.assert_allclose(again.affine, original.affine, atol=1e-5)
    # and a second round trip is bit-exact
    again2 = load_volume(save_volume(again, tmp_path / f"again{suffix}", label=True), label=True)
    np.testing.assert_array_equal(again2.affine, again.affine)


def test_dicom_to_nifti_keeps_geometry(tmp_path):
    volume = load_volume(shared_path(J2K))
    again = load_volume(save_volume(volume, tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(again.affine, volume.affine, atol=1e-5)
    np.testing.assert_array_equal(again.array, volume.array)
    assert again.orientation == "LPS"


def test_large_label_values_written_as_uint16(tmp_path):
    labels = np.zeros((4, 4, 4), np.int32)
    labels[0, 0, 0] = 300
    again = load_volume(save_volume(Volume(labels, np.eye(4)), tmp_path / "l.nii.gz", label=True), label=True)
    assert again.array.dtype == np.uint16 and again.array.max() == 300


def test_non_integer_labels_refused(tmp_path):
    with pytest.raises(VolumeReadError, match="non-integer"):
        save_volume(Volume(np.full((3, 3, 3), 0.5, np.float32), np.eye(4)), tmp_path / "l.nii.gz", label=True)


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    path = save_volume(Volume(np.zeros((2, 2, 2), np.uint8), np.eye(4)), tmp_path / "l.nii.gz", label=True)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_default_file_mode_is_what_open_and_mkdir_give(tmp_path, monkeypatch):
    import os

    import medseg.io.atomic as atomic
    from medseg.io import default_file_mode

    umask = os.umask(0o027)
    try:
        (tmp_path / "plain.txt").write_text("x", encoding="utf-8")
        (tmp_path / "plain_dir").mkdir()
        from_proc = default_file_mode(), default_file_mode(folder=True)

        def no_proc(*args, **kwargs):
            raise OSError("no /proc here (injected)")

        monkeypatch.setattr(atomic, "open", no_proc, raising=False)  # the os.umask fallback
        fallback = default_file_mode(), default_file_mode(folder=True)
        umask_after = os.umask(0o027)
    finally:
        os.umask(umask)
    assert from_proc == fallback == (0o640, 0o750)
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "plain_dir").stat().st_mode & 0o777 == 0o750
    assert umask_after == 0o027  # the fallback restored the umask


def test_atomic_path_renames_into_place_with_the_usual_mode(tmp_path):
    import os

    from medseg.io import atomic_path

    target = tmp_path / "new" / "seg.nii.gz"
    umask = os.umask(0o027)  # neither the common 022 nor mkstemp's 077
    try:
        with atomic_path(target, suffix=".nii.gz") as tmp:
            assert tmp.parent == target.parent and tmp.name.endswith(".nii.gz") and tmp.exists()
            assert not target.exists()  # nothing visible at the target until the block ends
            tmp.write_bytes(b"new")
        with atomic_path(tmp_path / "kept.txt", mode=0o600) as tmp:
            tmp.write_text("private", encoding="utf-8")
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "kept.txt").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept.txt", "new", "seg.nii.gz"]  # no temporaries


def test_atomic_path_failure_leaves_the_target_untouched(tmp_path):
    from medseg.io import atomic_path

    target = tmp_path / "metrics.csv"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o600)
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written", encoding="utf-8")
            raise RuntimeError("writer failed")
    assert target.read_text(encoding="utf-8") == "old" and target.stat().st_mode & 0o777 == 0o600
    assert list(tmp_path.iterdir()) == [target]  # the temporary is gone


def test_atomic_write_leaves_no_partial_file(tmp_path):
    with pytest.raises(Exception):  # noqa: B017 - whatever nibabel raises, nothing may be left behind
        save_volume(Volume(np.zeros((3, 3, 3), dtype=object), np.eye(4)), tmp_path / "bad.nii.gz")
    assert list(tmp_path.iterdir()) == []


# -- error paths ---------------------------------------------------------------------------
def test_4d_needs_a_frame(tmp_path):
    data = np.arange(4 * 4 * 3 * 2, dtype=np.int16).reshape(4, 4, 3, 2)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "cine.nii.gz"))
    with pytest.raises(VolumeReadError, match=r"cine.nii.gz: is 4D with shape \(4, 4, 3, 2\).*frame"):
        load_volume(tmp_path / "cine.nii.gz")
    np.testing.assert_array_equal(load_volume(tmp_path / "cine.nii.gz", frame=1, ct=False).array, data[..., 1])


def test_truncated_gzip_named(tmp_path):
    save_volume(
        Volume(np.random.default_rng(2).normal(size=(40, 40, 40)).astype(np.float32), np.eye(4)), tmp_path / "x.nii.gz"
    )
    raw = (tmp_path / "x.nii.gz").read_bytes()
    (tmp_path / "x.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VolumeReadError, match="x.nii.gz: unreadable or truncated NIfTI"):
        load_volume(tmp_path / "x.nii.gz")


def test_not_gzip_named(tmp_path):
    (tmp_path / "y.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all") + b"junk")
    with pytest.raises(VolumeReadError, match="y.nii.gz"):
        load_volume(tmp_path / "y.nii.gz")


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(VolumeReadError, match="unsupported file type"):
        load_volume(tmp_path / "notes.txt")
    with pytest.raises(VolumeReadError, match="no such file"):
        load_volume(tmp_path / "absent.nii.gz")
    with pytest.raises(VolumeReadError, match="no readable DICOM series"):
        load_volume(tmp_path)


def test_image_label_mismatch(tmp_path):
    image = Volume(np.zeros((6, 6, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    save_volume(image, tmp_path / "img.nii.gz")
    shifted = np.diag([1.0, 1.0, 2.0, 1.0])
    shifted[2, 3] = 2.0
    save_volume(Volume(np.zeros((6, 6, 4), np.uint8), shifted), tmp_path / "lab.nii.gz", label=True)
    save_volume(
        Volume(np.zeros((6, 6, 5), np.uint8), np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "lab2.nii.gz", label=True
    )
    with pytest.raises(GeometryError, match="img.nii.gz and .*lab.nii.gz .*origin"):
        load_image_and_label(tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz")
    with pytest.raises(GeometryError, match=r"shape: image \(6, 6, 4\), label \(6, 6, 5\)"):
        load_image_and_label(tmp_path / "img.nii.gz", tmp_path / "lab2.nii.gz")


# -- fast readers: read_grid (header only) and read_label_map, against load_volume -----------
@pytest.mark.shared_data
@pytest.mark.parametrize(
    "relative",
    [
        "kits19_labels/case_00061_segmentation.nii.gz",
        "msd_prostate_labels/prostate_00.nii.gz",
        "acdc_subset/patient001/patient001_ED_gt.nii.gz",
        "ct_3slice_dcmqi/segmentations/heart_seg.nrrd",  # not NIfTI: through load_volume
    ],
)
def test_read_label_map_equals_load_volume(relative):
    path = shared_path(relative)
    fast, reference = read_label_map(path), load_volume(path, label=True)
    assert np.array_equal(fast.array, reference.array) and fast.array.dtype == reference.array.dtype
    assert np.array_equal(fast.affine, reference.affine)


def test_read_label_map_handles_scaling_4d_singletons_and_rejects_bad_files(tmp_path):
    affine = np.diag([0.8, 0.8, 4.0, 1.0])
    array = np.zeros((5, 6, 7, 1), np.int16)
    array[1:3, 1:3, 1:3, 0] = 3
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "x.nii.gz")
    volume = read_label_map(tmp_path / "x.nii.gz")
    assert volume.shape == (5, 6, 7) and volume.array.dtype == np.uint8 and volume.array.max() == 3
    scaled = nib.Nifti1Image(array.astype(np.int16), affine)
    scaled.header.set_slope_inter(2.0, 0.0)
    nib.save(scaled, tmp_path / "scaled.nii")
    assert read_label_map(tmp_path / "scaled.nii").array.max() == 6
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "x.nii.gz").read_bytes()[:60])
    with pytest.raises(VolumeReadError, match="cut.nii.gz"):
        read_label_map(tmp_path / "cut.nii.gz")
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 0.5, np.float32), affine), tmp_path / "image.nii.gz")
    with pytest.raises(VolumeReadError, match="non-integer"):
        read_label_map(tmp_path / "image.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.uint8), affine), tmp_path / "frames.nii.gz")
    with pytest.raises(VolumeReadError, match=r"frames.nii.gz: label map has shape \(3, 3, 3, 2\)"):
        read_label_map(tmp_path / "frames.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(VolumeReadError, match="empty.nii.gz: unreadable or truncated NIfTI"):
        read_label_map(tmp_path / "empty.nii.gz")
    with pytest.raises(VolumeReadError, match="absent.nii.gz: no such file or folder"):
        read_label_map(tmp_path / "absent.nii.gz")


def _assert_grid_matches_load_volume(path: Path) -> None:
    grid, volume = read_grid(path), load_volume(path, ct=False)
    assert grid.shape == volume.shape, path.name
    np.testing.assert_array_equal(grid.affine, volume.affine, err_msg=path.name)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "relative",
    [
        "kits19_labels/case_00003_segmentation.nii.gz",  # IPL orientation
        "sunnybrook_lv/SCD0000101_phase07_image.nii.gz",  # oblique short axis
        "totalseg_ct/example_mr_sm.nii.gz",  # LPS
        "ct_3slice_dcmqi/segmentations/heart_seg.nrrd",
        "ct_3slice_dcmqi/paramaps/pm-example.nrrd",
        THREE_SLICE,  # a DICOM folder: read_grid falls back to load_volume
    ],
)
def test_read_grid_equals_load_volume_on_real_files(relative):
    path = shared_path(relative)
    _assert_grid_matches_load_volume(path)
    grid = read_grid(path)
    if relative.endswith(".nii.gz"):
        assert str(grid.stored_dtype) == load_volume(path, ct=False).meta["on_disk_dtype"]
    elif relative.endswith(".nrrd"):
        assert grid.stored_dtype == sitk.GetArrayViewFromImage(sitk.ReadImage(str(path))).dtype
    assert grid.scaled is False


@pytest.mark.parametrize("kind", ["ct", "mri"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_read_grid_equals_load_volume_on_phantoms(tmp_path, kind, suffix):
    from medseg.phantoms import make_cardiac_mri, make_ct_thorax

    make = make_ct_thorax if kind == "ct" else make_cardiac_mri  # LPS grid / oblique grid
    image, label = make(5, shape=(32, 36, 12))
    for volume, is_label in ((image, False), (label, True)):
        path = save_volume(volume, tmp_path / f"{kind}_{'label' if is_label else 'image'}{suffix}", label=is_label)
        _assert_grid_matches_load_volume(path)
        grid = read_grid(path)
        np.testing.assert_allclose(grid.affine, volume.affine, atol=1e-5)  # float32 on disk
        assert grid.stored_dtype == (np.uint8 if is_label else np.int16)


def test_read_grid_reads_only_the_header(tmp_path):
    path = save_volume(Volume(np.zeros((20, 20, 20), np.int16), _oblique_affine()), tmp_path / "x.nii")
    expected = read_grid(path)
    path.write_bytes(path.read_bytes()[:400])  # header kept, voxel data cut
    with pytest.raises(VolumeReadError, match="x.nii"):
        load_volume(path)
    grid = read_grid(path)
    assert grid.shape == (20, 20, 20) and grid.stored_dtype == np.int16
    np.testing.assert_array_equal(grid.affine, expected.affine)


def test_read_grid_scaling_2d_4d_and_bad_files(tmp_path):
    _write_scaled_ct(tmp_path / "ct.nii.gz", np.zeros((4, 4, 2), np.uint16), 1.0, -1024.0)
    grid = read_grid(tmp_path / "ct.nii.gz")
    assert grid.scaled is True and grid.stored_dtype == np.uint16
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3, 2), np.int16), np.eye(4)), str(tmp_path / "cine.nii.gz"))
    assert read_grid(tmp_path / "cine.nii.gz").shape == (4, 5, 3)  # first three axes
    flat = sitk.GetImageFromArray(np.zeros((6, 7), np.uint8))  # SimpleITK order [y, x]
    flat.SetSpacing((0.5, 0.75))
    flat.SetOrigin((10.0, -4.0))
    sitk.WriteImage(flat, str(tmp_path / "flat.mha"))
    assert read_grid(tmp_path / "flat.mha").shape == (7, 6, 1)
    _assert_grid_matches_load_volume(tmp_path / "flat.mha")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True), str(tmp_path / "rgb.mha"))
    with pytest.raises(VolumeReadError, match="rgb.mha: has 3 components per voxel"):
        read_grid(tmp_path / "rgb.mha")
    for name in ("empty.nii.gz", "empty.nrrd"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(VolumeReadError, match=f"{name}: unreadable header"):
            read_grid(tmp_path / name)


def test_read_grid_names_a_missing_file_like_load_volume(tmp_path):
    for name in ("absent.nii.gz", "absent.mha", "absent_dicom_folder"):
        path = tmp_path / name
        with pytest.raises(VolumeReadError) as from_load_volume:
            load_volume(path)
        with pytest.raises(VolumeReadError) as from_read_grid:
            read_grid(path)
        assert str(from_read_grid.value) == str(from_load_volume.value) == f"{path}: no such file or folder"


def test_read_grid_expands_home_like_load_volume(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("x.nii.gz", "x.mha"):  # nibabel expands "~" itself, SimpleITK does not
        save_volume(Volume(np.zeros((3, 4, 5), np.uint8), _oblique_affine()), tmp_path / name, label=True)
        grid = read_grid(f"~/{name}")
        assert grid.shape == load_volume(f"~/{name}", label=True).shape == (3, 4, 5)
    with pytest.raises(VolumeReadError) as missing:
        read_grid("~/absent.nii.gz")
    assert str(missing.value) == f"{tmp_path / 'absent.nii.gz'}: no such file or folder"


@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_detached_header_formats_name_their_data_file_and_move_as_a_pair(tmp_path, suffix):
    """A header + data pair: the header names the data file beside it (not a temporary), re-saving
    leaves no stray files, and the pair still loads after being copied elsewhere."""
    import shutil

    volume = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([0.5, 0.7, 2.0, 1.0]))
    target = tmp_path / "out" / f"x{suffix}"
    save_volume(volume, target)
    save_volume(volume.with_array(volume.array + 1), target)
    files = sorted(p.name for p in target.parent.iterdir())
    assert len(files) == 2 and not any(name.startswith(".tmp") for name in files), files
    header = target.read_text(errors="replace")
    data_name = next(name for name in files if name != target.name)
    assert data_name in header and ".tmp" not in header
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in files:
        shutil.copy(target.parent / name, moved / name)
    np.testing.assert_array_equal(load_volume(moved / target.name).array, volume.array + 1)
