"""Preprocessing transforms on real scans: orientation, spacing, HU windows, and exact inversion
of a preprocessed label map back onto the original (non-RAS / oblique) grid."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from medseg.data.restore import (
    final_shape,
    original_affine,
    restore_labels_from_probabilities,
    restore_to_original,
    restore_volume,
)
from medseg.data.transforms import preprocess_case
from medseg.io import Volume, load_volume, orientation_code

pytestmark = pytest.mark.shared_data

SUNNYBROOK = "sunnybrook_lv/SCD0000101_phase07_{}.nii.gz"
KITS = "kits19_labels/case_00061_segmentation.nii.gz"  # 29 x 512 x 512, IPL, 5 mm slices
LIDC = "chest_ct_lidc/LIDC-IDRI-0001"


def _dice_per_class(a: np.ndarray, b: np.ndarray) -> dict[int, float]:
    out = {}
    for value in np.unique(np.concatenate([np.unique(a), np.unique(b)])):
        if value == 0:
            continue
        x, y = a == value, b == value
        out[int(value)] = 2.0 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y))
    return out


def _spacing(affine) -> np.ndarray:
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


@pytest.fixture(scope="module")
def lidc() -> Volume:
    return load_volume(shared_path(LIDC))


def test_lidc_dicom_goes_to_ras_at_the_target_spacing_with_a_hu_window(lidc):
    assert lidc.orientation == "LPS"
    pre = {
        "target_spacing_mm": [1.5, 1.5, 1.5],
        "crop": "none",
        "normalization": [{"scheme": "window", "clip": [-1000, 400]}],
    }
    sample = preprocess_case(lidc, pre)
    affine = np.asarray(sample["meta"]["affine"])
    assert orientation_code(affine) == "RAS"
    assert np.all(np.diag(affine)[:3] > 0)
    np.testing.assert_allclose(_spacing(affine), 1.5, atol=0.01)
    # the grid covers the same extent: 512 x 0.703 mm = 360 mm -> 240 voxels, 133 x 2.5 mm -> 222
    assert sample["image"].shape == (1, 240, 240, 222)
    image = sample["image"][0]
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
    # world position of the scan centre is unchanged by reorientation + resampling
    centre_in = lidc.affine @ np.array([*(np.array(lidc.shape) - 1) / 2, 1.0])
    centre_out = affine @ np.array([*(np.array(image.shape) - 1) / 2, 1.0])
    np.testing.assert_allclose(centre_in, centre_out, atol=1e-6)
    # HU window: outside air (-1024 HU) maps to 0, bone (> 400 HU) to 1
    assert image[0, 0, 0] == 0.0
    assert np.isclose(image.max(), 1.0)
    steps = [s["step"] for s in sample["meta"]["steps"]]
    assert steps == ["load", "orientation", "crop", "resample", "normalize"]
    assert sample["meta"]["steps"][1]["flips"] == [True, True, False]


def test_lidc_label_map_is_restored_onto_the_lps_grid(lidc):
    hu = lidc.array
    label = np.zeros(lidc.shape, np.uint8)
    label[(hu < -400) & (hu > -990)] = 1  # lungs and airways (and some air outside the body)
    label[hu > 300] = 2  # bone
    inside = np.zeros(lidc.shape, bool)
    inside[120:400, 110:380, :] = True  # keep the outside air unlabelled
    label[~inside] = 0
    label_volume = Volume(label, lidc.affine, "lidc-threshold-label")
    pre = {"target_spacing_mm": [1.5, 1.5, 1.5], "normalization": [{"scheme": "window", "clip": [-1000, 400]}]}
    sample = preprocess_case(lidc, pre, label=label_volume)
    assert sample["label"].dtype == np.uint8 and set(np.unique(sample["label"])) == {0, 1, 2}
    crop = sample["meta"]["steps"][2]
    assert crop["bbox"] != [[0, n] for n in crop["shape_in"]]  # the body crop removed air
    restored = restore_volume(sample["label"], sample["meta"], label_interpolation="linear")
    assert restored.shape == lidc.shape
    np.testing.assert_allclose(restored.affine, lidc.affine)
    dice = _dice_per_class(label, restored.array)
    assert dice[1] > 0.93 and dice[2] > 0.75  # thin bone cortex suffers most from 2x downsampling


def test_lidc_same_spacing_round_trip_is_exact(lidc):
    label = (lidc.array > 300).astype(np.uint8)
    pre = {"target_spacing_mm": [float(s) for s in lidc.spacing_mm], "normalization": [{"scheme": "none"}]}
    sample = preprocess_case(lidc, pre, label=Volume(label, lidc.affine))
    np.testing.assert_array_equal(restore_to_original(sample["label"], sample["meta"]), label)


@pytest.mark.parametrize(
    "target, exact, min_dice",
    [
        ("native", True, 1.0),
        ((1.0, 10.0, 1.0), False, 0.99),  # upsampled in-plane
        ((2.0, 10.0, 2.0), False, 0.95),  # downsampled in-plane
    ],
)
def test_sunnybrook_oblique_label_round_trip(target, exact, min_dice):
    image = shared_path(SUNNYBROOK.format("image"))
    label_path = shared_path(SUNNYBROOK.format("label"))
    original = load_volume(label_path, label=True)
    assert original.orientation not in ("RAS", "LPS")  # oblique short axis (IRP-like)
    native = [1.3671875, 10.0, 1.3671875]  # the native spacing in RAS axis order
    pre = {"target_spacing_mm": native if target == "native" else list(target), "normalization": [{"scheme": "zscore"}]}
    sample = preprocess_case(image, pre, label=label_path)
    assert orientation_code(np.asarray(sample["meta"]["affine"])) == "RAS"
    restored = restore_to_original(sample["label"], sample["meta"])
    assert restored.shape == original.shape and restored.dtype == original.array.dtype
    np.testing.assert_allclose(original_affine(sample["meta"]), original.affine)
    if exact:
        np.testing.assert_array_equal(restored, original.array)
    assert min(_dice_per_class(original.array, restored).values()) >= min_dice


def test_probabilities_are_restored_with_background_outside_the_crop():
    image = shared_path(SUNNYBROOK.format("image"))
    label_path = shared_path(SUNNYBROOK.format("label"))
    original = load_volume(label_path, label=True)
    pre = {"target_spacing_mm": [1.5, 10.0, 1.5], "normalization": [{"scheme": "zscore"}], "crop": "nonzero"}
    sample = preprocess_case(image, pre, label=label_path)
    label = sample["label"][0]
    probabilities = np.stack([(label == c).astype(np.float32) for c in range(3)])
    assert probabilities.shape[1:] == final_shape(sample["meta"])
    restored = restore_to_original(probabilities, sample["meta"])
    assert restored.shape == (3, *original.shape) and restored.dtype == np.float32
    np.testing.assert_allclose(restored.sum(0), 1.0, atol=1e-5)
    assert min(_dice_per_class(original.array, restored.argmax(0)).values()) > 0.95
    # channel by channel (bounded memory) gives the same arg-max
    labels = restore_labels_from_probabilities(probabilities, sample["meta"])
    assert labels.dtype == np.uint8 and labels.shape == original.shape
    assert np.mean(labels == restored.argmax(0)) > 0.9999  # ties may break differently


def test_kits_ipl_label_with_anisotropic_slices_round_trip():
    path = shared_path(KITS)
    original = load_volume(path, label=True)
    assert original.orientation == "IPL"
    # the label map is its own "image" here (KiTS ships labels only); crop to the kidneys
    base = {"normalization": [{"scheme": "none"}], "crop": "nonzero", "crop_margin_voxels": 8}
    native = [float(s) for s in original.spacing_mm[::-1]]  # IPL -> RAS reverses the axes
    same = preprocess_case(path, {**base, "target_spacing_mm": native}, label=path)
    np.testing.assert_array_equal(restore_to_original(same["label"], same["meta"]), original.array)
    finer = preprocess_case(path, {**base, "target_spacing_mm": [native[0], native[1], 2.5]}, label=path)
    resample = finer["meta"]["steps"][3]
    assert resample["separate_z_axis"] == 2  # 5 mm slices vs 0.98 mm in-plane
    assert set(np.unique(finer["label"])) == set(np.unique(original.array))
    restored = restore_to_original(finer["label"], finer["meta"])
    np.testing.assert_array_equal(restored, original.array)  # nearest up then back is exact
    coarser = preprocess_case(path, {**base, "target_spacing_mm": [1.6, 1.6, 5.0]}, label=path)
    restored = restore_to_original(coarser["label"], coarser["meta"], label_interpolation="linear")
    assert restored.shape == original.shape
    assert min(_dice_per_class(original.array, restored).values()) > 0.9


def test_restoring_a_cropped_reoriented_prediction_holds_one_full_size_array():
    """Uncropping writes straight into the file's axis order, so undoing the orientation is free."""
    import tracemalloc

    affine = np.array([[0, 0, -2.0, 50], [-1.5, 0, 0, 20], [0, 1.2, 0, -30], [0, 0, 0, 1]])  # permuted and flipped
    image = np.zeros((60, 50, 40), np.float32)
    image[10:50, 5:45, 8:30] = np.random.default_rng(0).random((40, 40, 22)) + 1.0
    mask = np.zeros(image.shape, np.uint8)
    mask[20:40, 10:30, 10:25] = 1
    pre = {"target_spacing_mm": [2.0, 1.5, 1.2], "normalization": [{"scheme": "zscore"}], "crop": "nonzero"}
    sample = preprocess_case(Volume(image, affine), pre, label=Volume(mask, affine))
    names = [step["step"] for step in sample["meta"]["steps"]]
    assert "orientation" in names and "crop" in names and "resample" in names
    label = sample["label"][0]
    probabilities = (label == 1).astype(np.float32)[None]  # native spacing: the resample step is a no-op
    tracemalloc.start()
    restored = restore_to_original(probabilities, sample["meta"], outside_value=0.0)
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(restored[0], mask)
    assert restored.flags.c_contiguous
    assert peak_bytes < 1.5 * restored.nbytes  # one full-size array, not a second copy to undo the orientation


def test_labels_from_probabilities_leave_the_input_alone_and_keep_each_class():
    """With nothing to undo (RAS, native spacing, a chain without a crop step) the restored class is
    a view of the input: the running maximum must not write into it."""
    image = np.random.default_rng(1).random((6, 5, 4)).astype(np.float32) + 1.0
    pre = {"target_spacing_mm": [1.0, 1.0, 1.0], "normalization": [{"scheme": "none"}], "crop": "none"}
    sample = preprocess_case(Volume(image, np.eye(4)), pre)
    steps = [step for step in sample["meta"]["steps"] if step["step"] != "crop"]
    probabilities = np.random.default_rng(2).random((3, 6, 5, 4)).astype(np.float32)
    assert np.may_share_memory(restore_to_original(probabilities[:1], steps), probabilities)
    before = probabilities.copy()
    kept: dict = {}
    labels = restore_labels_from_probabilities(probabilities, steps, keep_probabilities=kept)
    np.testing.assert_array_equal(probabilities, before)
    np.testing.assert_array_equal(labels, before.argmax(0))
    assert sorted(kept) == [0, 1, 2] and kept[1].dtype == np.float16


def test_each_recorded_step_is_undone_by_its_own_transform():
    """The contract: a transform's ``inverse`` undoes exactly the record its forward step wrote."""
    from medseg.data.transforms import INVERSES, InverseContext
    from medseg.errors import GeometryError

    affine = np.array([[0, 0, -2.0, 50], [-1.5, 0, 0, 20], [0, 1.2, 0, -30], [0, 0, 0, 1]])  # permuted and flipped
    image = np.zeros((30, 25, 20), np.float32)
    image[5:25, 3:20, 4:15] = 1.0 + np.random.default_rng(3).random((20, 17, 11))
    mask = np.zeros(image.shape, np.uint8)
    mask[8:20, 5:15, 6:12] = 2
    pre = {"target_spacing_mm": [2.0, 1.5, 1.2], "normalization": [{"scheme": "zscore"}], "crop": "nonzero"}
    sample = preprocess_case(Volume(image, affine), pre, label=Volume(mask, affine), pad_to=(32, 32, 32))
    steps = sample["meta"]["steps"]
    assert [step["step"] for step in steps] == ["load", "orientation", "crop", "resample", "normalize", "pad"]
    undo = list(reversed(steps))
    array = sample["label"]
    for position, step in enumerate(undo):
        transform = INVERSES[step["step"]]
        assert transform.STEP == step["step"]
        array = transform.inverse(array, step, InverseContext("label", "nearest", [0.0], undo[position + 1 :]))
    np.testing.assert_array_equal(array[0], mask)  # native spacing: exact, voxel for voxel
    np.testing.assert_array_equal(restore_to_original(sample["label"], sample["meta"]), mask)
    with pytest.raises(GeometryError, match="unknown step 'warp'"):
        restore_to_original(sample["label"], [*steps, {"step": "warp"}])
