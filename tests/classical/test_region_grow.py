"""Seeded region growing (ITK). Marked slow: the first use of ITK's filters costs ~8 s of loading."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.classical import region_grow
from medseg.errors import ConfigError
from medseg.io import Volume
from medseg.phantoms import make_ct_thorax

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute")]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.fixture(scope="module")
def sphere():
    """A bright sphere of radius 12 mm (value 100) in a dark background (0), noise 10, on an oblique-free
    LPS grid with 1 x 1 x 2 mm voxels; a second bright sphere, not touching, must not be grown into."""
    rng = np.random.default_rng(0)
    shape = (48, 40, 24)
    spacing = np.array([1.0, 1.0, 2.0])
    mm = np.indices(shape, dtype=float) * spacing[:, None, None, None]
    truth = np.sqrt((mm[0] - 20) ** 2 + (mm[1] - 20) ** 2 + (mm[2] - 24) ** 2) <= 12
    other = np.sqrt((mm[0] - 42) ** 2 + (mm[1] - 30) ** 2 + (mm[2] - 24) ** 2) <= 4
    values = np.where(truth | other, 100.0, 0.0) + rng.normal(0, 10, shape)
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    affine[:3, 3] = [25.0, -10.0, 100.0]
    return Volume(values.astype(np.float32), affine), truth


def test_tolerance_growing_from_a_voxel_seed_fills_the_sphere_only(sphere):
    volume, truth = sphere
    out = region_grow(volume, [(20, 20, 12)], lower=50, upper=1000)
    assert dice(out.array == 1, truth) >= 0.99  # measured 0.9996 (noise flips a few voxels)
    assert np.array_equal(out.affine, volume.affine) and out.array.dtype == np.uint8


def test_world_mm_seed_and_confidence_criterion(sphere):
    volume, truth = sphere
    seed_mm = volume.affine[:3, :3] @ [20, 20, 12] + volume.affine[:3, 3]
    out = region_grow(volume, [seed_mm], seeds_in="world", criterion="confidence", multiplier=3.0)
    assert out.meta["segmentation"]["seeds_voxel"] == [[20, 20, 12]]
    assert dice(out.array == 1, truth) >= 0.97  # measured 0.995
    assert abs(out.meta["segmentation"]["mean"] - 100) < 10


def test_tolerance_around_the_seed_mean(sphere):
    volume, truth = sphere
    seeds = [(20, 20, 12), (18, 21, 11), (22, 19, 13)]
    out = region_grow(volume, seeds, tolerance=45)
    low, high = out.meta["segmentation"]["lower"], out.meta["segmentation"]["upper"]
    assert high - low == pytest.approx(90)
    assert dice(out.array == 1, truth) >= 0.97


def test_seed_checks(sphere):
    volume, _ = sphere
    with pytest.raises(ConfigError, match="outside the grid"):
        region_grow(volume, [(100, 0, 0)], tolerance=10)
    with pytest.raises(ConfigError, match="outside the grid"):
        region_grow(volume, [(1000.0, 0.0, 0.0)], seeds_in="world", tolerance=10)
    with pytest.raises(ConfigError, match="tolerance"):
        region_grow(volume, [(20, 20, 12)])
    out = region_grow(volume, [(20, 20, 12), (0, 0, 0)], lower=50, upper=1000)  # the second seed is background
    assert out.meta["segmentation"]["seeds_outside_interval"] == 1
    with pytest.raises(ConfigError, match="criterion"):
        region_grow(volume, [(20, 20, 12)], criterion="watershed", tolerance=1)


@pytest.mark.parametrize("seed", [0, 3])
def test_region_grow_fills_a_phantom_lung_from_a_world_seed(seed):
    """ct-thorax phantom: growing air (-1100..-400 HU) from the deepest air voxel of the left lung gives that lung."""
    image, label = make_ct_thorax(seed)
    lung = label.array == 1
    depth = ndimage.distance_transform_edt(lung, sampling=image.spacing_mm) * (image.array < -600)
    deepest = np.unravel_index(np.argmax(depth), lung.shape)
    seed_mm = image.affine[:3, :3] @ np.asarray(deepest, float) + image.affine[:3, 3]
    out = region_grow(image, [seed_mm], seeds_in="world", lower=-1100, upper=-400)
    assert dice(out.array == 1, lung) >= 0.95  # measured 0.98-0.99


def test_itk_hand_over_keeps_every_voxel_at_its_world_position(sphere):
    from medseg.io.itk_bridge import itk_order, to_itk

    volume, _ = sphere
    image = to_itk(volume.array, volume.affine)
    for ijk in [(0, 0, 0), (20, 20, 12), (47, 3, 23)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(itk_order(ijk)))
        assert np.allclose(lps * [-1, -1, 1], volume.affine[:3, :3] @ ijk + volume.affine[:3, 3])
        assert image.GetPixel(itk_order(ijk)) == pytest.approx(float(volume.array[ijk]))
