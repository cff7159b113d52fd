"""Classical baselines on small synthetic volumes whose answer is known by construction.

Each test states the truth it compares with; Dice thresholds are set well below what the
methods reach (noted beside them) but far above chance.
"""

from __future__ import annotations

import numpy as np
import pytest

from medseg.classical import METHODS, bht, kmeans, otsu, segment, sobel_edges, split_merge, threshold
from medseg.classical.threshold import balanced_histogram_bin
from medseg.errors import ConfigError, GeometryError
from medseg.io import Volume


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def lps_affine(spacing=(0.8, 0.9, 2.5), origin=(40.0, 30.0, -60.0)) -> np.ndarray:
    """An LPS grid (axis 0 towards patient left, 1 posterior) with anisotropic spacing, as DICOM gives."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return affine


def two_class_volume(rng, shape=(40, 36, 30), noise=12.0):
    """Background 100 and a centred ellipsoid 200 (about 30% of voxels), Gaussian noise: truth = ellipsoid."""
    i, j, k = np.indices(shape, dtype=float)
    truth = ((i - 20) / 14) ** 2 + ((j - 18) / 12) ** 2 + ((k - 15) / 11) ** 2 <= 1
    values = np.where(truth, 200.0, 100.0) + rng.normal(0, noise, shape)
    return Volume(values.astype(np.float32), lps_affine()), truth


def three_class_volume(rng, shape=(36, 36, 24), noise=10.0):
    """Slabs along axis 0 with means 0 / 100 / 250 (classes 0, 1, 2 from the darkest): truth = slab index."""
    truth = np.zeros(shape, dtype=np.uint8)
    truth[12:24] = 1
    truth[24:] = 2
    means = np.array([0.0, 100.0, 250.0])
    values = means[truth] + rng.normal(0, noise, shape)
    return Volume(values.astype(np.float32), lps_affine()), truth


# -- threshold ---------------------------------------------------------------------------------


def test_threshold_labels_ranges_between_thresholds():
    values = np.array([-1000, -600, -500, -499, 0, 299, 300, 1200], dtype=np.int16).reshape(2, 2, 2)
    out = threshold(values, [300, -500], spacing_mm=(1, 1, 1))  # given unsorted
    # label = number of thresholds <= value: <-500 -> 0, [-500, 300) -> 1, >= 300 -> 2
    assert out.array.ravel().tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert out.array.dtype == np.uint8
    assert out.meta["segmentation"]["thresholds"] == [-500.0, 300.0]


def test_threshold_ranges_closed_first_listed_wins_and_rest_zero():
    values = np.array([-1000, -800, -400, -399, 0, 40, 41, 500], dtype=np.float32).reshape(2, 2, 2)
    out = threshold(values, ranges=[(-1000, -400), (-400, 40)])
    assert out.array.ravel().tolist() == [1, 1, 1, 2, 2, 2, 0, 0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "either thresholds"),
        ({"thresholds": [1], "ranges": [(0, 1)]}, "either thresholds"),
        ({"thresholds": [1, 1]}, "duplicates"),
        ({"thresholds": []}, "empty"),
        ({"ranges": [(5, 1)]}, "low <= high"),
    ],
)
def test_threshold_rejects_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        threshold(np.zeros((2, 2, 2)), **kwargs)


# -- otsu and bht --------------------------------------------------------------------------------


def test_otsu_two_classes_recovers_the_bright_object():
    volume, truth = two_class_volume(np.random.default_rng(1))
    out = otsu(volume)
    assert dice(out.array == 1, truth) >= 0.99  # measured 0.9999
    (cut,) = out.meta["segmentation"]["thresholds"]
    assert 120 < cut < 180  # between the class means 100 and 200


def test_otsu_multi_class_orders_labels_from_darkest():
    volume, truth = three_class_volume(np.random.default_rng(2))
    out = otsu(volume, classes=3)
    for label in range(3):
        assert dice(out.array == label, truth == label) >= 0.98, label  # measured >= 0.999
    low, high = out.meta["segmentation"]["thresholds"]
    assert 0 < low < 100 < high < 250


def test_otsu_and_bht_on_a_constant_volume_give_zeros():
    for method in (otsu, bht):
        out = method(np.full((4, 4, 4), 7.0))
        assert not out.array.any()
        assert out.meta["segmentation"]["thresholds"] == []


def test_bht_two_balanced_classes():
    rng = np.random.default_rng(3)
    shape = (30, 30, 30)
    truth = np.zeros(shape, bool)
    truth[:, :, 15:] = True  # half the voxels bright
    values = np.where(truth, 800.0, 200.0) + rng.normal(0, 60, shape)
    out = bht(values, spacing_mm=(1.0, 1.0, 3.0))
    assert dice(out.array == 1, truth) >= 0.99  # measured 0.9999
    assert 350 < out.meta["segmentation"]["thresholds"][0] < 650


def test_bht_is_not_dragged_by_a_sparse_bright_tail():
    """As in CT (bone, clipped 3071 HU): 0.5% of voxels far above both classes must not move the cut."""
    rng = np.random.default_rng(9)
    shape = (30, 30, 30)
    truth = np.zeros(shape, bool)
    truth[:, :, 12:] = True
    values = np.where(truth, 0.0, -900.0) + rng.normal(0, 40, shape)
    values.flat[rng.choice(values.size, values.size // 200, replace=False)] = 3071.0
    out = bht(values)
    assert -780 < out.meta["segmentation"]["thresholds"][0] < -120  # in the empty valley (untrimmed: 175)
    assert dice(out.array == 1, truth) >= 0.99
    with pytest.raises(ConfigError, match="tail_fraction"):
        bht(values, tail_fraction=0.5)


def test_balanced_histogram_bin_finds_the_valley_of_a_symmetric_histogram():
    counts = np.array([0, 5, 30, 60, 30, 5, 1, 0, 1, 5, 30, 60, 30, 5, 0, 0], dtype=float)
    centre = balanced_histogram_bin(counts)
    assert 6 <= centre <= 8  # the empty valley between the two modes
    assert balanced_histogram_bin(np.zeros(8)) == 0


# -- kmeans --------------------------------------------------------------------------------------


def test_kmeans_intensity_three_classes_labels_by_mean_and_seeded():
    volume, truth = three_class_volume(np.random.default_rng(4))
    out = kmeans(volume, k=3, seed=5, sample_size=5000)
    for label in range(3):
        assert dice(out.array == label, truth == label) >= 0.98, label  # measured >= 0.999
    means = out.meta["segmentation"]["class_means"]
    assert means == sorted(means) and abs(means[0]) < 5 and abs(means[2] - 250) < 5
    again = kmeans(volume, k=3, seed=5, sample_size=5000)
    assert np.array_equal(out.array, again.array)


def test_kmeans_with_position_splits_identical_intensities_by_place():
    """Pure noise, same distribution everywhere: only position can separate the two halves along world x."""
    rng = np.random.default_rng(6)
    shape = (40, 20, 10)
    values = rng.normal(0, 1, shape).astype(np.float32)
    volume = Volume(values, lps_affine(spacing=(1.0, 1.0, 1.0)))
    halves = np.zeros(shape, bool)
    halves[20:] = True
    out = kmeans(volume, k=2, seed=0, position_scale_mm=2.0)
    found = out.array == 1
    assert max(dice(found, halves), dice(found, ~halves)) >= 0.95  # measured 0.99


def test_kmeans_with_fewer_distinct_values_than_k():
    values = np.zeros((6, 6, 6))
    values[3:] = 10
    out = kmeans(values, k=4)
    assert set(np.unique(out.array)) == {0, 1}
    assert out.meta["segmentation"]["classes_found"] == 2
    assert np.array_equal(out.array == 1, values == 10)


# -- split-merge -----------------------------------------------------------------------------------


def blocks_volume(rng, noise):
    """Piecewise-constant: background 0, block A 100, block B 200 touching A; truth = the value map."""
    truth = np.zeros((48, 40, 36), dtype=np.uint8)
    truth[5:25, 5:30, 3:20] = 1
    truth[25:45, 10:38, 10:30] = 2
    values = np.array([0.0, 100.0, 200.0])[truth]
    if noise:
        values = values + rng.normal(0, noise, truth.shape)
    return values, truth


@pytest.mark.parametrize("noise", [0.0, 10.0])
def test_split_merge_recovers_piecewise_constant_blocks(noise):
    values, truth = blocks_volume(np.random.default_rng(7), noise)
    out = split_merge(values, spacing_mm=(1.0, 1.0, 2.0))
    info = out.meta["segmentation"]
    assert info["regions"] == 3
    # regions are numbered 1..n by increasing mean, so region r is the truth's value r - 1
    for value in range(3):
        assert dice(out.array == value + 1, truth == value) >= 0.99, value  # measured 1.0
    assert info["leaves"] > info["regions"]  # it did split, then merge


def test_split_merge_constant_volume_is_one_region():
    out = split_merge(np.full((5, 6, 7), 3.0))
    assert out.meta["segmentation"]["regions"] == 1
    assert np.all(out.array == 1)


# -- edges -----------------------------------------------------------------------------------------


def test_edges_of_a_linear_ramp_equal_its_slope_per_mm_with_anisotropic_spacing():
    spacing = np.array([0.5, 1.25, 3.0])
    slope_per_mm = np.array([2.0, -1.0, 0.5])  # intensity per mm along each array axis
    indices = np.indices((20, 22, 24), dtype=np.float64)
    ramp = sum(slope_per_mm[a] * spacing[a] * indices[a] for a in range(3))
    affine = lps_affine(spacing=tuple(spacing))
    out = sobel_edges(Volume(ramp.astype(np.float32), affine))
    assert out.array.dtype == np.float32
    assert out.meta["kind"] == "image"
    interior = out.array[1:-1, 1:-1, 1:-1]
    assert np.allclose(interior, np.linalg.norm(slope_per_mm), rtol=1e-4)


def test_edges_of_a_constant_volume_are_zero():
    assert not sobel_edges(np.full((4, 5, 6), 9.0)).array.any()


# -- common behaviour -------------------------------------------------------------------------------

FAST_METHODS = {
    "threshold": {"thresholds": [150]},
    "otsu": {},
    "bht": {},
    "kmeans": {"k": 2, "sample_size": 2000},
    "split-merge": {},
    "edges": {},
}


@pytest.mark.parametrize("method", sorted(FAST_METHODS))
def test_every_method_keeps_the_grid_exactly(method):
    volume, _ = two_class_volume(np.random.default_rng(8), shape=(20, 18, 12))
    out = segment(volume, method, **FAST_METHODS[method])
    assert out.shape == volume.shape
    assert np.array_equal(out.affine, volume.affine)
    assert out.orientation == "LPS"
    expected = np.float32 if method == "edges" else np.uint8
    assert out.array.dtype == expected


def test_segment_reports_unknown_methods_options_and_missing_seeds():
    volume = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    with pytest.raises(ConfigError, match="choose one of"):
        segment(volume, "watershed")
    with pytest.raises(ConfigError, match="unknown option.*classes"):
        segment(volume, "bht", classes=3)
    with pytest.raises(ConfigError, match="missing required option.*seeds"):
        segment(volume, "region_grow")
    assert set(METHODS) == {"threshold", "otsu", "bht", "kmeans", "region-grow", "split-merge", "edges", "lung-ct"}


def test_array_input_gets_a_diagonal_grid_and_volume_input_refuses_a_second_spacing():
    out = threshold(np.zeros((2, 3, 4)), [1], spacing_mm=(0.5, 2, 3))
    assert np.array_equal(out.affine, np.diag([0.5, 2, 3, 1]))
    with pytest.raises(ConfigError, match="spacing_mm"):
        threshold(Volume(np.zeros((2, 2, 2)), np.eye(4)), [1], spacing_mm=(1, 1, 1))
    with pytest.raises(GeometryError, match="3D"):
        otsu(np.zeros((4, 4)))
    with pytest.raises(GeometryError, match="NaN"):
        otsu(np.array([[[np.nan, 1.0]]]))


def test_simpleitk_hand_over_keeps_every_voxel_at_its_world_position():
    """to_sitk passes the array without transposing: index order reversed, geometry reversed to match."""
    from medseg.io.itk_bridge import from_sitk, itk_order, to_sitk

    rotation = np.array([[0.0, -1.0, 0.0], [0.6, 0.0, -0.8], [0.8, 0.0, 0.6]])  # oblique, proper rotation
    affine = np.eye(4)
    affine[:3, :3] = rotation * [0.7, 1.1, 2.5]
    affine[:3, 3] = [12.0, -30.0, 55.0]
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    image = to_sitk(array, affine)
    for ijk in [(0, 0, 0), (3, 1, 5), (2, 4, 0)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(itk_order(ijk)))
        ras = affine[:3, :3] @ ijk + affine[:3, 3]
        assert np.allclose(lps * [-1, -1, 1], ras)
        assert image[itk_order(ijk)] == array[ijk]
    assert np.array_equal(from_sitk(image), array)


@pytest.mark.parametrize(
    "method, options", [("otsu", {"classes": 3}), ("kmeans", {"k": 3, "sample_size": 5000}), ("split-merge", {})]
)
def test_outputs_are_scored_by_medseg_evaluation(method, options):
    """Any label output shares the input grid, so medseg.evaluation scores it against the truth as is."""
    from medseg.evaluation import evaluate_volumes

    volume, truth = three_class_volume(np.random.default_rng(10))
    out = segment(volume, method, **options)
    if method == "split-merge":  # regions 1..n by mean: region r is class r - 1
        out = out.with_array((out.array - 1).astype(np.uint8))
    result = evaluate_volumes(volume.with_array(truth), out, labels=[1, 2], metrics="dice")
    for label in (1, 2):
        assert result.value(label, "dice") >= 0.98
