"""Tests for medseg.phantoms (synthetic chest CT and cardiac MRI) and ``medseg phantom``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseg.errors import ConfigError
from medseg.io import check_same_grid, load_volume
from medseg.phantoms import (
    PHANTOM_KINDS,
    case_ids,
    case_seed,
    labels_for,
    make_cardiac_mri,
    make_ct_thorax,
    write_phantom_dataset,
)

CT_SEEDS = (0, 7, 12)
MR_SEEDS = (0, 5, 11)


@pytest.fixture(scope="module")
def ct_cases():
    return {seed: make_ct_thorax(seed) for seed in CT_SEEDS}


@pytest.fixture(scope="module")
def mr_cases():
    return {seed: make_cardiac_mri(seed) for seed in MR_SEEDS}


def world_centroid(volume, mask: np.ndarray) -> np.ndarray:
    """RAS+ world position (mm) of the centroid of ``mask`` through the volume's affine."""
    index = np.argwhere(mask).mean(axis=0)
    return volume.affine[:3, :3] @ index + volume.affine[:3, 3]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


# -- determinism ------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [make_ct_thorax, make_cardiac_mri])
def test_same_seed_same_arrays_different_seed_different(make):
    image_a, label_a = make(3)
    image_b, label_b = make(3)
    assert np.array_equal(image_a.array, image_b.array)
    assert np.array_equal(label_a.array, label_b.array)
    assert np.array_equal(image_a.affine, image_b.affine)
    assert image_a.meta == image_b.meta
    image_c, label_c = make(4)
    assert not np.array_equal(image_a.array, image_c.array)
    assert not np.array_equal(label_a.array, label_c.array)


def test_case_seeds_are_stable_and_distinct():
    seeds = [case_seed(0, i) for i in range(50)]
    assert seeds == [case_seed(0, i) for i in range(50)]
    assert len(set(seeds)) == 50
    assert case_seed(1, 0) != case_seed(0, 0)
    assert case_ids("ct-thorax", 3) == ["thorax_000", "thorax_001", "thorax_002"]
    assert case_ids("cardiac-mri", 1) == ["cardiac_000"]
    assert case_ids("ct-thorax", 0) == []


# -- chest CT ---------------------------------------------------------------------------------
def test_ct_types_grid_and_orientation(ct_cases):
    for image, label in ct_cases.values():
        assert image.array.dtype == np.int16 and label.array.dtype == np.uint8
        assert image.shape == label.shape == (96, 96, 40)
        assert np.array_equal(image.affine, label.affine)
        assert image.orientation == "LPS"
        spacing = image.spacing_mm
        assert 3.0 <= spacing[0] == spacing[1] <= 4.0 and 5.0 <= spacing[2] <= 6.0
        assert set(np.unique(label.array)) == {0, 1, 2, 3}
        assert image.array.min() >= -1024 and image.meta["modality"] == "CT"


def test_ct_left_lung_is_on_the_patients_left(ct_cases):
    """RAS+: the left lung's world x is smaller than the right lung's, also at the extreme rolls."""
    cases = list(ct_cases.values()) + [make_ct_thorax(1, rotation_deg=8.0), make_ct_thorax(2, rotation_deg=-8.0)]
    for _image, label in cases:
        left = world_centroid(label, label.array == 1)
        right = world_centroid(label, label.array == 2)
        assert left[0] < right[0] - 60
        # on the LPS grid the left lung has the larger index along axis 0
        assert np.argwhere(label.array == 1)[:, 0].mean() > np.argwhere(label.array == 2)[:, 0].mean()


def test_ct_hounsfield_units(ct_cases):
    for image, label in ct_cases.values():
        hu = image.array.astype(np.float64)
        for lung in (1, 2):
            assert -900 <= hu[label.array == lung].mean() <= -800
        corner = hu[:6, :6, :]  # anterior-right corner of the field of view: air
        assert abs(corner.mean() + 1000) < 15
        heart_hu = hu[label.array == 3].mean()
        assert 0 <= heart_hu <= 90
        assert hu.max() > 400  # bone


def test_ct_heart_between_the_lungs_anterior_and_low(ct_cases):
    for _image, label in ct_cases.values():
        left, right, heart = (world_centroid(label, label.array == value) for value in (1, 2, 3))
        assert left[0] < heart[0] < right[0]
        assert heart[0] < (left[0] + right[0]) / 2  # slightly to the left
        assert heart[1] > max(left[1], right[1])  # anterior of the lungs
        lung_slices = np.flatnonzero((label.array == 1).any(axis=(0, 1)) | (label.array == 2).any(axis=(0, 1)))
        middle_k = (lung_slices[0] + lung_slices[-1]) / 2
        assert np.argwhere(label.array == 3)[:, 2].mean() < middle_k  # lower half


def test_ct_lungs_taper_towards_the_apex(ct_cases):
    """Left-right width per slice: full width is reached in the lower half, the apex is narrow."""
    for _image, label in ct_cases.values():
        for lung in (1, 2):
            mask = label.array == lung
            area = mask.sum(axis=(0, 1))
            present = np.flatnonzero(area)
            columns = mask.any(axis=1)  # (i, k): which i each slice covers
            width = np.array(
                [np.ptp(np.flatnonzero(columns[:, k])) + 1 if area[k] else 0 for k in range(mask.shape[2])]
            )
            assert int(np.argmax(width)) < (present[0] + present[-1]) / 2  # wide at the base (axis 2 is Superior)
            assert width[present[-1]] < 0.5 * width.max() and area[present[-1]] < 0.3 * area.max()  # narrow apex


def test_ct_a_threshold_alone_does_not_solve_it(ct_cases):
    for image, label in ct_cases.values():
        hu = image.array
        low = hu < -500
        assert dice(low, label.array == 1) < 0.9
        # even air enclosed by the body (not touching the border) mixes both lungs and airways
        components, _ = ndimage.label(low)
        border = np.unique(np.concatenate([components[[0, -1]].ravel(), components[:, [0, -1]].ravel()]))
        enclosed = low & ~np.isin(components, border)
        assert dice(enclosed, label.array == 1) < 0.9
        # the heart shares soft-tissue HU with muscle, vessels and liver
        assert dice((hu > 0) & (hu < 150), label.array == 3) < 0.6


def test_ct_options_and_errors():
    image, label = make_ct_thorax(
        0, shape=(48, 48, 20), spacing_mm=(7.0, 7.0, 10.0), noise_hu=0, table=False, rotation_deg=0
    )
    assert image.shape == (48, 48, 20) and np.allclose(image.spacing_mm, (7, 7, 10))
    assert set(np.unique(label.array)) == {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="unknown option"):
        make_ct_thorax(0, colour="blue")
    with pytest.raises(ConfigError, match="seed"):
        make_ct_thorax(-1)
    with pytest.raises(ConfigError, match="spacing_mm"):
        make_ct_thorax(0, spacing_mm=(1.0, 0.0, 1.0))


# -- cardiac MRI ------------------------------------------------------------------------------
def test_mr_types_spacing_and_oblique_affine(mr_cases):
    for image, label in mr_cases.values():
        assert image.array.dtype == np.int16 and label.array.dtype == np.uint8
        assert image.array.min() >= 0
        assert np.array_equal(image.affine, label.affine)
        assert image.shape[:2] == (128, 128) and 8 <= image.shape[2] <= 12
        spacing = image.spacing_mm
        assert 1.4 <= spacing[0] <= 1.6 and abs(spacing[0] - spacing[1]) < 1e-9 and 8.0 <= spacing[2] <= 10.0
        assert set(np.unique(label.array)) == {0, 1, 2, 3}
        direction = image.direction
        assert np.allclose(direction.T @ direction, np.eye(3), atol=1e-9)
        assert np.abs(direction[:, 2]).max() < 0.9  # slice normal tens of degrees off every scanner axis
        assert np.abs(direction).max(axis=0).min() < 0.95


def test_mr_base_wider_than_apex_and_rv_gone_at_the_apex(mr_cases):
    for image, label in mr_cases.values():
        lv = np.isin(label.array, (2, 3)).sum(axis=(0, 1))
        rv = (label.array == 1).sum(axis=(0, 1))
        myocardium_slices = np.flatnonzero((label.array == 2).any(axis=(0, 1)))
        apex = int(myocardium_slices[-1])
        assert image.meta["phantom"]["apex_slice"] == apex and image.meta["phantom"]["base_slice"] == 0
        assert lv[0] > 3 * lv[apex]
        assert int(np.argmax(lv)) <= 2  # widest at the base
        assert rv[0] > 0 and rv[apex] == 0
        assert int(np.argmax(rv)) <= 2  # the RV too is largest near the base


def test_mr_lv_is_a_ring_around_the_cavity(mr_cases):
    for _image, label in mr_cases.values():
        for k in range(3, 6):
            cavity = label.array[:, :, k] == 3
            myocardium = label.array[:, :, k] == 2
            if not cavity.any():
                continue
            touching = ndimage.binary_dilation(cavity) & ~cavity
            assert np.all(myocardium[touching])  # the cavity touches only myocardium


def test_mr_intensities_and_threshold(mr_cases):
    for image, label in mr_cases.values():
        signal = image.array.astype(np.float64)
        lv_blood = signal[label.array == 3].mean()
        rv_blood = signal[label.array == 1].mean()
        myocardium = signal[label.array == 2].mean()
        assert abs(lv_blood - rv_blood) < 0.2 * lv_blood  # the two blood pools look alike
        assert myocardium < 0.6 * lv_blood  # dark myocardium, bright blood
        best = max(dice(signal > np.percentile(signal, q), label.array == 3) for q in range(80, 100))
        assert best < 0.9


def test_mr_options_and_errors():
    image, label = make_cardiac_mri(1, shape=(64, 64, 8), noise_fraction=0.0, misregistration_mm=0.0)
    assert image.shape == (64, 64, 8) and 2.8 < image.spacing_mm[0] < 3.2
    with pytest.raises(ConfigError, match="shape"):
        make_cardiac_mri(0, shape=(64, 64))


# -- datasets and the CLI ---------------------------------------------------------------------
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_json_and_identical_bytes(tmp_path):
    first = write_phantom_dataset("ct-thorax", 2, 5, tmp_path / "a", progress=False)
    second = write_phantom_dataset("ct-thorax", 2, 5, tmp_path / "b", progress=False)
    files_a, files_b = _files(first.parent), _files(second.parent)
    assert sorted(files_a) == [
        "dataset.json",
        "imagesTr/thorax_000_0000.nii.gz",
        "imagesTr/thorax_001_0000.nii.gz",
        "labelsTr/thorax_000.nii.gz",
        "labelsTr/thorax_001.nii.gz",
    ]
    assert files_a == files_b  # same seed, same bytes
    for name, data in files_a.items():
        if name.endswith(".gz"):
            assert data[4:8] == b"\0\0\0\0" and not data[3] & 0x08  # gzip mtime 0, no file name
            gzip.decompress(data)

    spec = json.loads(first.read_text(encoding="utf-8"))
    assert spec["channel_names"] == {"0": "CT"}
    assert spec["labels"] == {"background": 0, "left_lung": 1, "right_lung": 2, "heart": 3} == labels_for("ct-thorax")
    assert spec["numTraining"] == 2 and spec["file_ending"] == ".nii.gz"
    assert spec["name"] and spec["description"]
    assert spec["training"] == [
        {"image": f"./imagesTr/thorax_00{i}_0000.nii.gz", "label": f"./labelsTr/thorax_00{i}.nii.gz"} for i in range(2)
    ]
    for index, entry in enumerate(spec["training"]):
        image = load_volume(first.parent / entry["image"])
        label = load_volume(first.parent / entry["label"], label=True)
        check_same_grid(image, label)
        expected_image, expected_label = make_ct_thorax(case_seed(5, index))
        assert np.array_equal(image.array, expected_image.array)
        assert np.array_equal(label.array, expected_label.array)
        assert np.allclose(image.affine, expected_image.affine, atol=1e-4)
        assert image.orientation == "LPS" and image.meta["kind"] == "ct"

    different = write_phantom_dataset("ct-thorax", 1, 6, tmp_path / "c", progress=False)
    assert (different.parent / "imagesTr/thorax_000_0000.nii.gz").read_bytes() != files_a[
        "imagesTr/thorax_000_0000.nii.gz"
    ]


def test_cardiac_dataset_and_rewriting_a_folder(tmp_path):
    out = tmp_path / "cardiac"
    write_phantom_dataset("cardiac-mri", 3, 1, out, progress=False)
    dataset_json = write_phantom_dataset("cardiac-mri", 2, 1, out, progress=False)
    spec = json.loads(dataset_json.read_text(encoding="utf-8"))
    assert spec["channel_names"] == {"0": "MRI"} and spec["numTraining"] == 2
    assert spec["labels"] == {"background": 0, "rv_cavity": 1, "lv_myocardium": 2, "lv_cavity": 3}
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "cardiac_000_0000.nii.gz",
        "cardiac_001_0000.nii.gz",
    ]
    for entry in spec["training"]:
        image = load_volume(out / entry["image"])
        label = load_volume(out / entry["label"], label=True)
        check_same_grid(image, label)
        assert image.meta["kind"] == "image" and set(np.unique(label.array)) == {0, 1, 2, 3}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "dataset.json").write_text('{"name": "someone else"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not written by medseg phantom"):
        write_phantom_dataset("cardiac-mri", 1, 0, foreign, progress=False)
    with pytest.raises(ConfigError, match="unknown phantom kind"):
        write_phantom_dataset("brain-mri", 1, 0, tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="at least 1"):
        write_phantom_dataset("ct-thorax", 0, 0, tmp_path / "x", progress=False)


def test_cli_writes_the_dataset(tmp_path, capsys):
    from medseg.cli.main import main

    out = tmp_path / "cli"
    assert main(["phantom", "--kind", "cardiac-mri", "--n", "2", "--seed", "4", "--out", str(out), "--quiet"]) == 0
    assert "dataset.json" in capsys.readouterr().out
    spec = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert spec["numTraining"] == 2
    assert all((out / entry["image"]).is_file() and (out / entry["label"]).is_file() for entry in spec["training"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--kind", "brain-mri"], "invalid choice"),
        (["--kind", "ct-thorax", "--n", "0"], "at least 1"),
        (["--kind", "ct-thorax", "--seed", "-3"], "non-negative"),
    ],
)
def test_cli_usage_errors(tmp_path, capsys, argv, message):
    from medseg.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["phantom", *argv, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_cli_kinds_match_the_api_and_labels():
    from medseg.cli.phantom import KINDS

    assert KINDS == PHANTOM_KINDS
    assert labels_for("cardiac-mri")["lv_cavity"] == 3
    with pytest.raises(ConfigError):
        labels_for("nope")


def test_gzip_header_rewrite_keeps_the_file_permissions(tmp_path):
    from medseg.phantoms.dataset import make_gzip_deterministic

    path = tmp_path / "x.nii.gz"
    with open(path, "wb") as raw, gzip.GzipFile(filename="x.nii", mode="wb", fileobj=raw, mtime=12345) as zipped:
        zipped.write(b"payload")
    path.chmod(0o640)  # neither mkstemp's 0600 nor the default 0644 under umask 022
    make_gzip_deterministic(path)
    data = path.read_bytes()
    assert data[4:8] == b"\0\0\0\0" and not data[3] & 0x08 and gzip.decompress(data) == b"payload"
    assert path.stat().st_mode & 0o777 == 0o640
