"""Base / middle / apex regions: splitting, axis and base choice, volumetric and slice-wise modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.errors import InvalidArgumentError
from medseg.evaluation import choose_region_axis, evaluate_case, split_regions


def _counts(first: int, last: int, length: int = 30, widths=None) -> np.ndarray:
    counts = np.zeros(length, int)
    counts[first : last + 1] = widths if widths is not None else 5
    return counts


@pytest.mark.parametrize(
    "n, sizes",
    [(9, (3, 3, 3)), (10, (3, 4, 3)), (11, (4, 3, 4)), (3, (1, 1, 1)), (2, (1, 0, 1)), (1, (0, 1, 0))],
)
def test_split_sizes_differ_by_at_most_one(n, sizes):
    split = split_regions(_counts(5, 5 + n - 1), base_at="first")
    start_middle, stop_middle = split.ranges["middle"]
    assert split.ranges["base"] == (0, 5 + sizes[0])  # extended to the array's start
    assert stop_middle - start_middle == sizes[1]
    assert split.ranges["apex"] == (5 + sizes[0] + sizes[1], 30)  # extended to the array's end
    assert (split.reference_first, split.reference_last) == (5, 5 + n - 1)


def test_base_auto_is_the_wider_end_and_can_be_forced():
    narrowing = _counts(2, 10, widths=np.arange(9, 0, -1) * 10)  # wide at low indices
    assert split_regions(narrowing).base_end == "first"
    widening = _counts(2, 10, widths=np.arange(1, 10) * 10)
    split = split_regions(widening)
    assert split.base_end == "last" and split.base_rule == "auto"
    assert split.ranges["base"] == (8, 30) and split.ranges["apex"] == (0, 5)
    forced = split_regions(widening, base_at="first")
    assert forced.base_end == "first" and forced.base_rule == "first"
    assert split_regions(_counts(2, 10)).base_rule == "auto (tie)"
    assert split_regions(np.zeros(10)) is None
    with pytest.raises(InvalidArgumentError):
        split_regions(widening, base_at="top")


def test_region_axis_auto_override_and_isotropic_superior_axis():
    assert choose_region_axis(np.array([1.5, 1.5, 10.0])) == 2
    assert choose_region_axis(np.array([5.0, 0.7, 0.7])) == 0
    assert choose_region_axis(np.array([1.0, 1.0, 1.0]), region_axis="1") == 1
    # isotropic: the axis closest to superior-inferior, here array axis 1
    affine = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    assert choose_region_axis(np.array([1.0, 1.0, 1.0]), affine) == 1
    assert choose_region_axis(np.array([1.0, 1.0, 1.0])) == 2  # no affine: the last axis
    with pytest.raises(InvalidArgumentError):
        choose_region_axis(np.array([1.0, 1.0, 1.0]), region_axis=3)


def _stack(n_slices: int = 12, first: int = 2, last: int = 10) -> np.ndarray:
    """A square prism along axis 2 over slices first..last, narrowing towards high indices."""
    volume = np.zeros((20, 20, n_slices), np.uint8)
    for k in range(first, last + 1):
        half = 7 - (k - first) // 2
        volume[10 - half : 10 + half, 10 - half : 10 + half, k] = 1
    return volume


def test_volumetric_regions_counts_and_report():
    ref = _stack()
    pred = ref.copy()
    pred[:, :, 11] = ref[:, :, 10]  # false positive slice beyond the reference extent
    result = evaluate_case(ref, pred, (1.0, 1.0, 5.0), regions=True)
    info = result.regions[0]
    assert info["axis"] == 2 and info["base_end"] == "first"
    assert info["reference_first"] == 2 and info["reference_last"] == 10
    assert info["ranges"] == {"base": [0, 5], "middle": [5, 8], "apex": [8, 12]}
    assert result.value(1, "dice", "base") == 1.0 and result.value(1, "dice", "middle") == 1.0
    apex_ref = ref[:, :, 8:].sum()
    assert result.value(1, "dice", "apex") == pytest.approx(2 * apex_ref / (2 * apex_ref + ref[:, :, 10].sum()))
    assert result.value(1, "volume_pred_ml", "apex") == pytest.approx(pred[:, :, 8:].sum() * 5 / 1000)
    assert {r["region"] for r in result.rows} == {"all", "base", "middle", "apex"}


def test_cut_planes_are_not_surfaces_in_volumetric_mode():
    ref = np.zeros((12, 12, 9), np.uint8)
    ref[3:9, 3:9, :] = 1  # a prism through the whole stack
    pred = ref.copy()
    pred[:, :, 8] = 0  # one slice missing at the top
    result = evaluate_case(ref, pred, (1.0, 1.0, 2.0), regions=True, base_at="first")
    # base and middle hold only side walls, which coincide: distances 0 there
    for region in ("base", "middle"):
        assert result.value(1, "hd", region) == 0.0
    assert result.value(1, "hd", "apex") > 0  # the missing slice
    assert result.value(1, "hd", "all") == result.value(1, "hd", "apex")


def test_slicewise_mode_averages_2d_metrics_over_slices():
    ref = np.zeros((10, 10, 3), np.uint8)
    ref[2:6, 2:6, 0:2] = 1
    pred = ref.copy()
    pred[:, :, 1] = 0  # slice 1 missed
    pred[2:6, 2:6, 2] = 1  # slice 2 false positive
    result = evaluate_case(ref, pred, (1.0, 1.0, 8.0), region_mode="slicewise", worst_distance_mm=50.0)
    assert result.value(1, "dice") == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3 slices
    assert result.value(1, "hd") == pytest.approx((0 + 50 + 50) / 3)
    assert result.flag(1, "dice") == "ref_empty_slices=1;pred_empty_slices=1"
    # volumes and rvd are pooled over the region
    assert result.value(1, "rvd") == 0.0 and result.flag(1, "rvd") == ""
    nan_policy = evaluate_case(ref, pred, (1.0, 1.0, 8.0), region_mode="slicewise", empty_policy="nan")
    assert nan_policy.value(1, "hd") == 0.0  # mean over the slices where it is defined


def test_slicewise_in_plane_distances():
    ref = np.zeros((12, 12, 2), np.uint8)
    ref[2:6, 2:6, :] = 1
    pred = np.zeros_like(ref)
    pred[4:8, 2:6, 0] = 1  # shifted by 2 voxels along axis 0 in slice 0
    pred[2:6, 2:6, 1] = 1
    result = evaluate_case(ref, pred, (0.5, 0.5, 10.0), region_mode="slicewise")
    assert result.value(1, "hd") == pytest.approx((1.0 + 0.0) / 2)  # 2 x 0.5 mm, slice-averaged


def test_regions_without_reference_and_tiny_structures():
    ref = np.zeros((6, 6, 6), np.uint8)
    pred = np.zeros_like(ref)
    pred[1:3, 1:3, 1:3] = 2
    ref[2, 2, 2:4] = 1  # two slices: the middle region is empty
    result = evaluate_case(ref, pred, (1.0, 1.0, 3.0), regions=True, labels=[1, 2])
    assert result.flag(1, "dice", "middle") == "empty_region" and math.isnan(result.value(1, "dice", "middle"))
    assert result.flag(2, "dice", "base") == "no_region"
    assert result.value(2, "dice", "all") == 0.0 and result.flag(2, "dice", "all") == "ref_empty"
    label2 = next(info for info in result.regions if info["label_value"] == 2)
    assert label2["base_end"] is None


def test_foreground_and_label_anchors():
    ref = np.zeros((8, 8, 9), np.uint8)
    ref[2:6, 2:6, 0:9] = 1
    ref[3:5, 3:5, 3:6] = 2
    for anchor in ("foreground", 1, "1"):
        result = evaluate_case(ref, ref, (1.0, 1.0, 4.0), regions=True, region_anchor=anchor)
        label2 = next(info for info in result.regions if info["label_value"] == 2)
        assert (label2["reference_first"], label2["reference_last"]) == (0, 8)
        assert result.value(2, "dice", "base") == 1.0 and result.flag(2, "dice", "base") == "both_empty"
    own = evaluate_case(ref, ref, (1.0, 1.0, 4.0), regions=True)
    label2 = next(info for info in own.regions if info["label_value"] == 2)
    assert (label2["reference_first"], label2["reference_last"]) == (3, 5)
    with pytest.raises(InvalidArgumentError):
        evaluate_case(ref, ref, (1.0, 1.0, 4.0), regions=True, region_anchor="heart")
