"""lung-ct on the ct-thorax phantom (known truth), on a real chest CT (LIDC-IDRI-0001), and
``medseg segment`` output scored by ``medseg evaluate``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shared_path
from scipy import ndimage

from medseg.classical import LEFT_LUNG, RIGHT_LUNG, lung_ct
from medseg.cli.main import main
from medseg.errors import ConfigError
from medseg.io import Volume, load_volume, save_volume
from medseg.phantoms import make_ct_thorax


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def centroid_x_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """RAS+ world x (mm) of a mask's centroid: smaller is towards the patient's left."""
    centre = np.array(np.nonzero(mask), dtype=float).mean(axis=1)
    return float(affine[0, :3] @ centre + affine[0, 3])


@pytest.fixture(scope="module")
def phantom_cases():
    return {seed: make_ct_thorax(seed) for seed in (0, 1, 2)}


@pytest.mark.parametrize("seed, air", [(0, -320.0), (1, -320.0), (2, -320.0), (2, "otsu")])
def test_lung_ct_matches_the_phantom_lungs(phantom_cases, seed, air):
    """Phantom truth: label 1 left lung, 2 right lung (3 heart is not ours). Dice >= 0.95 per lung."""
    image, truth = phantom_cases[seed]
    out = lung_ct(image, air_threshold_hu=air)
    assert out.array.dtype == np.uint8 and np.array_equal(out.affine, image.affine)
    assert set(np.unique(out.array)) == {0, LEFT_LUNG, RIGHT_LUNG}
    for label in (LEFT_LUNG, RIGHT_LUNG):
        assert dice(out.array == label, truth.array == label) >= 0.95, label  # measured 0.97-0.999
    assert out.meta["segmentation"]["trachea_found"]


def test_left_and_right_come_from_the_affine_not_the_array_order(phantom_cases):
    """The same anatomy stored RAS (axes 0 and 1 reversed) and slice-axis-first gives the same lungs."""
    image, _ = phantom_cases[0]
    reference = lung_ct(image).array

    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(image.shape[:2]) - 1  # new index = n - 1 - old index along axes 0 and 1
    ras = Volume(image.array[::-1, ::-1, :].copy(), image.affine @ flip)
    assert ras.orientation == "RAS"
    assert np.array_equal(lung_ct(ras).array, reference[::-1, ::-1, :])

    permute = np.zeros((4, 4))
    permute[[2, 0, 1], [0, 1, 2]] = 1.0  # new axes (k, i, j)
    permute[3, 3] = 1.0
    slices_first = Volume(np.ascontiguousarray(image.array.transpose(2, 0, 1)), image.affine @ permute)
    assert np.array_equal(lung_ct(slices_first).array, reference.transpose(2, 0, 1))


def test_lung_ct_refuses_images_that_are_not_hounsfield_units():
    mri_like = np.random.default_rng(0).uniform(0, 800, (24, 24, 12)).astype(np.float32)
    with pytest.raises(ConfigError, match="Hounsfield"):
        lung_ct(mri_like, spacing_mm=(2, 2, 4))


def test_lung_ct_without_lungs_is_empty_and_says_so(tmp_path, caplog, capsys):
    """A water cylinder in air: no air inside the body, so no lung (and no trachea)."""
    from medseg.io import Volume, save_volume

    i, j, _ = np.indices((40, 40, 10))
    hu = np.where((i - 20) ** 2 + (j - 20) ** 2 < 15**2, 0, -1000).astype(np.int16)
    out = lung_ct(hu, spacing_mm=(2, 2, 5))
    assert not out.array.any()
    assert out.meta["segmentation"]["trachea_found"] is False
    assert out.meta["segmentation"]["lungs_missing"] == ["left", "right"]
    assert "found no left and no right lung" in caplog.text
    save_volume(Volume(hu, np.diag([2.0, 2.0, 5.0, 1.0])), tmp_path / "slab.nii.gz")
    assert main(["segment", "--method", "lung-ct", str(tmp_path / "slab.nii.gz"), str(tmp_path / "lungs.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert "lung-ct found no lung" in err and not (tmp_path / "lungs.nii.gz").exists()


@pytest.mark.slow
@pytest.mark.shared_data
def test_lung_ct_on_real_lidc_chest_ct():
    """LIDC-IDRI-0001 (LPS DICOM: array axis 0 points to the patient's left).

    Each lung one connected component of plausible size (measured 1.78 l left, 2.01 l right:
    this scan's total air-filled lung is ~3.8 l), left/right by world x, trachea excluded,
    nothing outside the body."""
    image = load_volume(shared_path("chest_ct_lidc/LIDC-IDRI-0001"))
    assert image.orientation == "LPS"
    out = lung_ct(image)
    info = out.meta["segmentation"]
    for label in (LEFT_LUNG, RIGHT_LUNG):
        mask = out.array == label
        _, pieces = ndimage.label(mask)
        assert pieces == 1, (label, pieces)
        litres = np.count_nonzero(mask) * image.voxel_volume_ml / 1000
        assert 1.5 <= litres <= 4.0, (label, litres)
    left, right = out.array == LEFT_LUNG, out.array == RIGHT_LUNG
    assert centroid_x_mm(left, image.affine) < centroid_x_mm(right, image.affine)
    # LPS: the patient's left lung lies at larger array index i than the right lung
    assert np.nonzero(left)[0].mean() > np.nonzero(right)[0].mean()
    # trachea: found, tracked to a carina, and its lumen (mid-trachea, checked by eye) is not lung
    assert info["trachea_found"] and info["carina_slice"] is not None
    assert out.array[232, 236, 110] == 0 and image.array[232, 236, 110] < -900
    # nothing outside the body: the in-plane border of every slice is background
    assert not out.array[[0, -1], :, :].any() and not out.array[:, [0, -1], :].any()
    # every lung voxel is air or enclosed by lung (vessels): the mask holds little tissue
    tissue_fraction = np.mean(image.array[out.array > 0] > -320)
    assert tissue_fraction < 0.08


@pytest.mark.shared_data
def test_lung_bases_not_bowel_gas_in_an_abdominal_ct():
    """TotalSegmentator's example abdomen CT (RAS, 3 mm) holds only the lung bases and more bowel gas
    than lung. Reference: TotalSegmentator's own lobe prediction (labels 10-14; a model output, not
    manual): our two lungs must be those bases (Dice >= 0.85; measured 0.94), not the gas."""
    image = load_volume(shared_path("totalseg_ct/example_ct.nii.gz"))
    lobes = load_volume(shared_path("totalseg_ct/example_seg_fast_force_split.nii.gz"), label=True).array
    out = lung_ct(image)
    assert dice(out.array > 0, np.isin(lobes, [10, 11, 12, 13, 14])) >= 0.85
    assert dice(out.array == LEFT_LUNG, np.isin(lobes, [10, 11])) >= 0.8
    assert dice(out.array == RIGHT_LUNG, np.isin(lobes, [12, 13, 14])) >= 0.8
    assert out.meta["segmentation"]["gas_pockets_ml"] > 200  # the bowel gas it left out


def test_segment_cli_output_is_scored_by_medseg_evaluate(tmp_path, phantom_cases, capsys):
    """medseg segment --method lung-ct, then medseg evaluate on the phantom's lung labels."""
    image, truth = phantom_cases[1]
    (tmp_path / "images").mkdir()
    (tmp_path / "refs").mkdir()
    image_path = save_volume(image, tmp_path / "images" / "thorax_001.nii.gz")
    lungs_only = truth.with_array(np.where(truth.array == 3, 0, truth.array).astype(np.uint8))
    save_volume(lungs_only, tmp_path / "refs" / "thorax_001.nii.gz", label=True)

    prediction = tmp_path / "preds" / "thorax_001.nii.gz"
    assert main(["segment", "--method", "lung-ct", str(image_path), str(prediction)]) == 0
    assert "lung_volume_ml" in capsys.readouterr().out
    written = load_volume(prediction, label=True)
    assert np.array_equal(written.affine.astype(np.float32), image.affine.astype(np.float32))

    status = main([
        "evaluate", "--pred", str(tmp_path / "preds"), "--ref", str(tmp_path / "refs"), "--out", str(tmp_path / "eval"),
        "--labels", "1,2", "--metrics", "dice,hd95", "--no-report", "--quiet",
    ])  # fmt: skip
    assert status == 0
    with open(tmp_path / "eval" / "metrics.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["metric"] == "dice" and row["region"] == "all"]
    assert {row["label"] for row in rows} == {"1", "2"}
    for row in rows:
        assert float(row["value"]) >= 0.95, row


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "otsu", "--k", "3"], "--k does not apply to --method otsu"),
        (["--method", "region-grow"], "needs seeds"),
        (["--method", "lung-ct", "--air-hu", "low"], "--air-hu must be a number"),
        (["--method", "edges", "--seed-mm", "1", "2", "3"], "do not apply"),
    ],
)
def test_segment_cli_rejects_options_of_other_methods(tmp_path, capsys, argv, message):
    image = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4))
    path = save_volume(image, tmp_path / "x.nii.gz")
    assert main(["segment", *argv, str(path), str(tmp_path / "out.nii.gz")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.nii.gz").exists()


def test_segment_cli_threshold_and_edges(tmp_path, capsys):
    values = np.zeros((8, 8, 8), np.float32)
    values[4:] = 100
    affine = np.diag([-0.7, -0.7, 2.5, 1.0])
    path = save_volume(Volume(values, affine), tmp_path / "in.nii.gz")
    assert main(["segment", "--method", "threshold", str(path), str(tmp_path / "t.nii.gz"), "--thresholds", "50"]) == 0
    labels = load_volume(tmp_path / "t.nii.gz", label=True)
    assert np.array_equal(labels.array, (values >= 50).astype(np.uint8))
    assert main(["segment", "--method", "edges", str(path), str(tmp_path / "e.nii.gz"), "--json"]) == 0
    assert '"units": "intensity per mm"' in capsys.readouterr().out
    edges = load_volume(tmp_path / "e.nii.gz", ct=False)
    assert edges.array.dtype == np.float32
    # the step of 100 over two voxels of 0.7 mm along axis 0: Sobel peak 100 / (2 * 0.7) mm
    assert edges.array.max() == pytest.approx(100 / 1.4, rel=1e-4)
