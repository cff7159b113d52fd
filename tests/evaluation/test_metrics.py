"""Definitions of the evaluation metrics on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from medseg.errors import GeometryError, InvalidArgumentError
from medseg.evaluation import bounding_box, evaluate_case, surface_distances, surface_mask
from medseg.evaluation import surfaces as surfaces_module
from medseg.evaluation.metrics import ALL_METRICS
from medseg.evaluation.surfaces import label_boxes, union_box


def _case(reference, prediction, spacing=(1.0, 1.0, 1.0), **options):
    return evaluate_case(np.asarray(reference, np.uint8), np.asarray(prediction, np.uint8), spacing, **options)


# -- surfaces and distances -----------------------------------------------------------------------


def _scipy_surface(mask: np.ndarray, axes=None) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    if axes is not None:  # face neighbours along the given axes only
        structure = np.zeros((3,) * mask.ndim, bool)
        centre = (1,) * mask.ndim
        structure[centre] = True
        for axis in axes:
            for step in (0, 2):
                index = list(centre)
                index[axis] = step
                structure[tuple(index)] = True
    return mask ^ ndimage.binary_erosion(mask, structure=structure, border_value=0)


@pytest.mark.parametrize("seed", range(4))
def test_surface_mask_is_mask_xor_face_erosion_with_background_outside(seed):
    rng = np.random.default_rng(seed)
    mask = ndimage.binary_opening(rng.random((14, 11, 9)) < 0.6)
    mask[:, :, 0] |= rng.random((14, 11)) < 0.5  # structures touching the array border
    assert np.array_equal(surface_mask(mask), _scipy_surface(mask))
    assert np.array_equal(surface_mask(mask, axes=(0, 1)), _scipy_surface(mask, axes=(0, 1)))


def test_surface_of_a_full_array_is_its_outer_shell():
    mask = np.ones((4, 5, 6), bool)
    surface = surface_mask(mask)
    assert surface.sum() == mask.size - 2 * 3 * 4  # everything but the 2 x 3 x 4 interior
    assert not surface_mask(np.zeros((3, 3, 3), bool)).any()


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.7, 0.7), (0.5, 1.3, 2.9)])
def test_directed_distances_equal_exact_distance_transform(spacing):
    rng = np.random.default_rng(1)
    a = ndimage.binary_dilation(rng.random((30, 26, 22)) < 0.003, iterations=3)
    b = ndimage.binary_dilation(rng.random((30, 26, 22)) < 0.003, iterations=2)
    result = surface_distances(a, b, np.array(spacing))
    sa, sb = _scipy_surface(a), _scipy_surface(b)
    expected_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    expected_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    np.testing.assert_allclose(result.ref_to_pred_mm, expected_ab, rtol=1e-12)
    np.testing.assert_allclose(result.pred_to_ref_mm, expected_ba, rtol=1e-12)


def test_far_points_go_through_the_exact_fallbacks(monkeypatch):
    a = np.zeros((40, 40, 40), bool)
    b = np.zeros_like(a)
    a[2:6, 2:6, 2:6] = True
    b[30:37, 25:33, 31:35] = True  # far beyond the offset ball
    expected = ndimage.distance_transform_edt(~_scipy_surface(b), sampling=(1.0, 2.0, 0.5))[_scipy_surface(a)]
    brute = surface_distances(a, b, np.array([1.0, 2.0, 0.5])).ref_to_pred_mm
    monkeypatch.setattr(surfaces_module, "BRUTE_FORCE_PAIRS", 0)  # force the KD-tree
    tree = surface_distances(a, b, np.array([1.0, 2.0, 0.5])).ref_to_pred_mm
    np.testing.assert_allclose(brute, expected, rtol=1e-12)
    np.testing.assert_allclose(tree, expected, rtol=1e-12)


def test_bounding_box_c_and_fortran_order():
    array = np.zeros((7, 9, 11), np.uint8)
    array[2:5, 3, 4:10] = 2
    expected = (slice(2, 5), slice(3, 4), slice(4, 10))
    assert bounding_box(array) == expected
    assert bounding_box(np.asfortranarray(array)) == expected
    assert bounding_box(array.astype(bool)) == expected
    assert bounding_box(np.zeros((3, 3, 3))) is None


def _find_objects_box(mask: np.ndarray):
    found = ndimage.find_objects((np.asarray(mask) != 0).astype(np.uint8))
    return found[0] if found else None


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int16, np.uint16, np.int32, np.float32])
@pytest.mark.parametrize("shape", [(300, 7, 9), (40, 16, 32), (5, 1, 1)])
def test_bounding_box_equals_find_objects_across_dtypes_and_blocks(dtype, shape):
    """The blocked one-read box (slab maxima + OR projection) agrees with scipy for every dtype,
    with and without the 64-bit word view, negative values, and boxes spanning several blocks."""
    rng = np.random.default_rng(sum(shape))
    for trial in range(4):
        array = np.zeros(shape, dtype=dtype)
        points = rng.integers(0, shape, size=(trial + 1, 3))
        for point in points:
            array[tuple(point)] = -1 if np.issubdtype(dtype, np.signedinteger) and trial % 2 else 1
        for layout in (array, np.asfortranarray(array), array[::-1, :, ::2]):
            assert bounding_box(layout) == _find_objects_box(layout)
    assert bounding_box(np.zeros(shape, dtype=dtype)) is None


def _label_boxes_reference(label_map):
    """Per label, the plain way: a comparison, scipy's box and a count."""
    values = [int(v) for v in np.unique(label_map) if v != 0]
    return {v: (_find_objects_box(label_map == v), int(np.count_nonzero(label_map == v))) for v in values}


@pytest.mark.parametrize("top", [1, 3, 16, 17, 40])
def test_label_boxes_equal_per_label_boxes(top):
    rng = np.random.default_rng(top)
    label_map = np.zeros((23, 19, 31), np.uint8)
    for value in rng.choice(np.arange(1, top + 1), size=min(top, 6), replace=False):
        start = rng.integers(0, 15, 3)
        label_map[tuple(slice(s, s + int(rng.integers(1, 8))) for s in start)] = value
    assert label_boxes(label_map) == _label_boxes_reference(label_map)
    assert label_boxes(np.asfortranarray(label_map)) == _label_boxes_reference(label_map)
    signed = label_map.astype(np.int16)
    signed[0, 0, 0] = -3
    assert label_boxes(signed) == _label_boxes_reference(signed)
    large = label_map.astype(np.int32)
    large[1, 1, 1] = 70_000  # beyond a histogram's reach: one comparison per distinct value
    assert label_boxes(large) == _label_boxes_reference(large)
    assert label_boxes(np.zeros((3, 4, 5), np.uint16)) == {}


def test_one_pass_label_index_matches_per_label_evaluation_on_real_kits_maps():
    """On a real KiTS19 map (kidney 1, tumour 2) and a perturbed copy: the one-pass index gives
    scipy's box and count for every label, and scoring both labels in one call equals scoring
    each label on its own binary maps."""
    from conftest import shared_path

    from medseg.io import read_label_map

    volume = read_label_map(shared_path("kits19_labels/case_00061_segmentation.nii.gz"))
    reference = np.asarray(volume.array)
    prediction = reference.copy()
    prediction[ndimage.binary_dilation(reference == 1) & (reference == 0)] = 1
    prediction[np.roll(reference == 2, 3, axis=1) & (prediction == 0)] = 2
    for label_map in (reference, prediction):
        box = bounding_box(label_map)
        shifted = {
            v: (tuple(slice(s.start + b.start, s.stop + b.start) for s, b in zip(found, box)), n)
            for v, (found, n) in label_boxes(label_map[box]).items()
        }
        assert shifted == _label_boxes_reference(label_map)
    spacing = volume.spacing_mm
    together = evaluate_case(reference, prediction, spacing, metrics="dice,hd,hd95,asd,nsd,volume_ref_ml", regions=True)
    assert together.labels_present == [1, 2]
    assert together.foreground_box == union_box(bounding_box(reference), bounding_box(prediction))
    for value in (1, 2):
        alone = evaluate_case(
            (reference == value).astype(np.uint8), (prediction == value).astype(np.uint8), spacing,
            metrics="dice,hd,hd95,asd,nsd,volume_ref_ml", regions=True,
        )  # fmt: skip
        mine = [r for r in together.rows if r["label"] == str(value)]
        assert [(r["region"], r["metric"], r["flag"]) for r in mine] == [
            (r["region"], r["metric"], r["flag"]) for r in alone.rows
        ]
        np.testing.assert_array_equal([r["value"] for r in mine], [r["value"] for r in alone.rows])
    only_tumour = evaluate_case(reference, prediction, spacing, labels=[2], metrics="hd95")
    # label 1 is in the reference too: a structure left out on purpose, not an undeclared prediction
    assert only_tumour.labels_present == [2] and only_tumour.undeclared_prediction_values == []
    prediction[prediction == 1] = 7
    stray = evaluate_case(reference, prediction, spacing, labels=[2], metrics="hd95")
    assert stray.undeclared_prediction_values == [7]


# -- distance metrics with known answers ------------------------------------------------------------


def test_single_voxels_anisotropic_distance():
    ref = np.zeros((3, 3, 3))
    pred = np.zeros((3, 3, 3))
    ref[0, 0, 0], pred[1, 1, 1] = 1, 1
    result = _case(ref, pred, (1.0, 2.0, 3.0))
    d = math.sqrt(1 + 4 + 9)
    for metric in ("hd", "hd95", "asd"):
        assert result.value(1, metric) == pytest.approx(d, rel=1e-12)
    assert result.value(1, "dice") == 0.0
    assert result.value(1, "nsd") == 0.0


def test_identical_one_voxel_structure():
    ref = np.zeros((4, 4, 4))
    ref[3, 3, 3] = 1  # touching the corner of the array
    result = _case(ref, ref)
    assert result.value(1, "dice") == 1.0
    assert result.value(1, "hd") == 0.0 and result.value(1, "asd") == 0.0 and result.value(1, "nsd") == 1.0
    assert all(row["flag"] == "" for row in result.rows)


def test_asd_is_pooled_and_hd95_is_max_of_directed_percentiles():
    ref = np.zeros((1, 1, 8))
    pred = np.zeros((1, 1, 8))
    ref[0, 0, 0] = 1
    pred[0, 0, 3:5] = 1  # surface of B: 2 voxels at 3 and 4 mm
    result = _case(ref, pred, nsd_tolerance_mm=3.0)
    assert result.value(1, "asd") == pytest.approx((3 + 3 + 4) / 3)  # not (3 + 3.5) / 2
    assert result.value(1, "hd") == 4.0
    assert result.value(1, "hd95") == pytest.approx(3.95)  # percentile 95 of [3, 4], linear
    assert result.value(1, "nsd") == pytest.approx(2 / 3)


def test_shifted_cube_anisotropic():
    ref = np.zeros((30, 20, 20))
    ref[10:20, 5:15, 5:15] = 1
    pred = np.roll(ref, 2, axis=0)
    result = _case(ref, pred, (2.0, 1.0, 1.0))
    assert result.value(1, "hd") == pytest.approx(4.0)  # 2 voxels of 2 mm
    assert result.value(1, "dice") == pytest.approx(2 * 8 / 20)
    assert result.value(1, "rvd") == 0.0


def test_sphere_against_its_dilation():
    grid = np.indices((41, 41, 41)) - 20
    radius = np.sqrt((grid**2).sum(axis=0))
    ref = (radius <= 10).astype(np.uint8)
    pred = (radius <= 12).astype(np.uint8)
    result = _case(ref, pred, (0.5, 0.5, 0.5))
    assert result.value(1, "dice") == pytest.approx(2 * ref.sum() / (ref.sum() + pred.sum()))
    # every surface point of one sphere is about 2 voxels (1 mm) from the other surface
    assert 0.7 < result.value(1, "asd") < 1.3
    assert result.value(1, "hd") == pytest.approx(max(result.value(1, "hd95"), result.value(1, "hd")))
    assert result.value(1, "rvd") == pytest.approx((pred.sum() - ref.sum()) / ref.sum())


def test_overlap_metrics_from_counts():
    ref = np.zeros((10, 10, 10))
    pred = np.zeros((10, 10, 10))
    ref[0:4, 0:5, 0:5] = 1  # 100 voxels
    pred[2:6, 0:5, 0:5] = 1  # 100 voxels, 50 shared
    result = _case(ref, pred, (1.0, 1.0, 2.0))
    assert result.value(1, "dice") == pytest.approx(0.5)
    assert result.value(1, "jaccard") == pytest.approx(50 / 150)
    assert result.value(1, "voe") == pytest.approx(1 - 50 / 150)
    assert result.value(1, "sensitivity") == pytest.approx(0.5)
    assert result.value(1, "precision") == pytest.approx(0.5)
    assert result.value(1, "specificity") == pytest.approx((1000 - 150) / (1000 - 100))
    assert result.value(1, "volume_ref_ml") == pytest.approx(100 * 2 / 1000)
    pred[6:8, 0:5, 0:5] = 1  # over-segmentation: rvd positive
    assert _case(ref, pred).value(1, "rvd") == pytest.approx(0.5)


def test_label_names_multiple_labels_and_metric_selection():
    ref = np.zeros((6, 6, 6))
    ref[1:3, 1:3, 1:3], ref[4, 4, 4] = 1, 2
    result = _case(ref, ref, labels={1: "kidney", 2: "tumour"}, metrics="dice,hd")
    assert {(r["label"], r["metric"]) for r in result.rows} == {
        (n, m) for n in ("kidney", "tumour") for m in ("dice", "hd")
    }
    assert result.labels_present == [1, 2]
    with pytest.raises(InvalidArgumentError):
        _case(ref, ref, metrics="dice,hausdorff")


# -- empty masks -------------------------------------------------------------------------------


def test_both_empty_conventions_are_flagged():
    empty = np.zeros((5, 5, 5))
    result = _case(empty, empty, labels=[1])
    expected = {"dice": 1, "jaccard": 1, "voe": 0, "rvd": 0, "hd": 0, "hd95": 0, "asd": 0, "nsd": 1, "volume_ref_ml": 0}
    for metric, value in expected.items():
        assert result.value(1, metric) == value
    assert result.flag(1, "dice") == "both_empty"
    assert result.flag(1, "volume_ref_ml") == ""


@pytest.mark.parametrize("policy", ["worst", "nan"])
def test_one_empty_mask_gives_worst_case_or_nan_and_flags(policy):
    ref = np.zeros((10, 20, 30))
    pred = np.zeros((10, 20, 30))
    pred[2:4, 2:4, 2:4] = 1
    spacing = (2.0, 1.0, 0.5)
    result = _case(ref, pred, spacing, empty_policy=policy)
    diagonal = math.sqrt(20**2 + 20**2 + 15**2)
    assert result.value(1, "dice") == 0.0 and result.value(1, "voe") == 1.0
    assert math.isnan(result.value(1, "rvd")) and result.flag(1, "rvd") == "ref_empty"
    for metric in ("hd", "hd95", "asd"):
        value = result.value(1, metric)
        assert math.isnan(value) if policy == "nan" else value == pytest.approx(diagonal)
        assert result.flag(1, metric) == "ref_empty"
    assert result.value(1, "nsd") == 0.0
    swapped = _case(pred, ref, spacing, worst_distance_mm=99.0)
    assert swapped.flag(1, "hd") == "pred_empty" and swapped.value(1, "hd") == 99.0
    assert swapped.value(1, "rvd") == -1.0


def test_requested_label_absent_from_both_is_both_empty():
    ref = np.zeros((5, 5, 5))
    ref[1, 1, 1] = 1
    result = _case(ref, ref, labels=[1, 3])
    assert result.value(3, "dice") == 1.0 and result.flag(3, "dice") == "both_empty"


# -- input handling ---------------------------------------------------------------------------------


def test_fortran_order_and_2d_inputs_give_the_same_values():
    rng = np.random.default_rng(3)
    ref = ndimage.binary_dilation(rng.random((20, 18, 9)) < 0.01, iterations=2).astype(np.uint8)
    pred = ndimage.binary_dilation(rng.random((20, 18, 9)) < 0.01, iterations=2).astype(np.uint8)
    c_order = _case(ref, pred, (0.8, 0.9, 3.0), regions=True)
    f_order = _case(np.asfortranarray(ref), np.asfortranarray(pred), (0.8, 0.9, 3.0), regions=True)
    assert [(r["region"], r["metric"], r["flag"]) for r in c_order.rows] == [
        (r["region"], r["metric"], r["flag"]) for r in f_order.rows
    ]
    np.testing.assert_allclose([r["value"] for r in c_order.rows], [r["value"] for r in f_order.rows], rtol=1e-12)
    assert c_order.regions == f_order.regions
    assert c_order.foreground_box == f_order.foreground_box == union_box(bounding_box(ref), bounding_box(pred))
    flat = _case(ref[:, :, 4], pred[:, :, 4], (0.8, 0.9))
    slicewise = _case(ref[:, :, 4:5], pred[:, :, 4:5], (0.8, 0.9, 3.0), region_mode="slicewise")
    assert flat.foreground_box == union_box(bounding_box(ref[:, :, 4]), bounding_box(pred[:, :, 4]))
    for metric in ("dice", "hd", "hd95", "asd"):
        if ref[:, :, 4].any() and pred[:, :, 4].any():
            assert flat.value(1, metric) == pytest.approx(slicewise.value(1, metric))


def test_shape_mismatch_and_bad_options_raise():
    with pytest.raises(GeometryError):
        _case(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))
    with pytest.raises(InvalidArgumentError):
        _case(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), empty_policy="zero")
    with pytest.raises(InvalidArgumentError):
        _case(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)), spacing=(1.0, 0.0, 1.0))


def test_rows_follow_metric_order():
    ref = np.zeros((4, 4, 4))
    ref[1:3, 1:3, 1:3] = 1
    result = _case(ref, ref)
    assert [r["metric"] for r in result.rows] == list(ALL_METRICS)
    frame = result.to_frame()
    assert list(frame.columns) == ["label", "region", "metric", "value", "flag"]
