"""Augmentation: one-resample spatial grid is exact, labels stay integer, intensity ops, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.data.augment import AugmentationParams, Augmenter, adjust_gamma, gaussian_blur, simulate_low_resolution

ALL_SPATIAL = {
    "spatial": {
        "rotation": {"p": 1.0, "degrees": [-40, 40]},
        "scale": {"p": 1.0, "range": [0.8, 1.3]},
        "elastic": {"p": 1.0, "magnitude_voxels": [1, 3], "sigma_voxels": [6, 8]},
        "flip": {"p": 0.5},
    }
}


def _only(name: str, **settings) -> dict:
    """A config with every transform off except the intensity transform ``name``."""
    spatial = {key: {"p": 0.0} for key in ("rotation", "scale", "elastic", "flip", "rot90")}
    intensity = {
        key: {"p": 0.0}
        for key in ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "low_resolution", "gamma")
    }
    intensity[name] = {"p": 1.0, **settings}
    return {"spatial": spatial, "intensity": intensity}


def _rotation(plane, dims=3, quarter_turns=1):
    matrix = np.eye(dims)
    a, b = plane
    c, s = math.cos(quarter_turns * math.pi / 2), math.sin(quarter_turns * math.pi / 2)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return np.round(matrix)


def test_a_90_degree_rotation_through_the_grid_equals_rot90():
    torch.manual_seed(0)
    augmenter = Augmenter({}, (12, 12, 7))
    image = torch.randn(2, 12, 12, 7)
    label = torch.randint(0, 4, (1, 12, 12, 7), dtype=torch.uint8)
    params = AugmentationParams(matrix=_rotation((0, 1)))
    centre = [(n - 1) / 2 for n in (12, 12, 7)]
    out_image, out_label = augmenter.spatial(image, label, params, centre)
    # output offset o samples the source at M o: the inverse rotation of the array
    expected = torch.rot90(image, -1, (1, 2))
    torch.testing.assert_close(out_image, expected, atol=1e-4, rtol=0)  # float32 coordinates
    assert torch.equal(out_label, torch.rot90(label, -1, (1, 2)))


def test_3d_sampling_equals_torch_trilinear_grid_sample():
    import torch.nn.functional as F
    from scipy.spatial.transform import Rotation

    from medseg.data.augment import sample_3d

    torch.manual_seed(1)
    crop = torch.randn(2, 40, 36, 30)
    label = torch.randint(0, 3, (1, 40, 36, 30)).float()
    patch = (24, 20, 16)
    axes = [torch.arange(n, dtype=torch.float32) - (n - 1) / 2 for n in patch]
    offsets = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    matrix = Rotation.from_euler("xyz", [25, -10, 40], degrees=True).as_matrix() * 0.9
    centre = [19.5, 17.5, 14.5]
    ours, ours_label = sample_3d(crop, label, axes, matrix, centre, patch)
    source = offsets.double() @ torch.tensor(matrix).T + torch.tensor(centre)
    grid = (
        (source * (2.0 / torch.tensor([39.0, 35.0, 29.0], dtype=torch.float64)) - 1).flip(-1).float().view(1, *patch, 3)
    )
    reference = F.grid_sample(crop[None], grid, mode="bilinear", align_corners=True)[0]
    reference_label = F.grid_sample(label[None], grid, mode="nearest", align_corners=True)[0]
    torch.testing.assert_close(ours, reference, atol=2e-3, rtol=0)
    assert (ours_label != reference_label).float().mean() < 1e-3  # only exact rounding ties may differ


def test_identity_matrix_reproduces_the_crop_and_scale_zooms_about_the_centre():
    augmenter = Augmenter({}, (9, 9, 9))
    image = torch.arange(9**3, dtype=torch.float32).reshape(1, 9, 9, 9)
    out, _ = augmenter.spatial(image, None, AugmentationParams(matrix=np.eye(3)), [4, 4, 4])
    torch.testing.assert_close(out, image)
    zoomed, _ = augmenter.spatial(image, None, AugmentationParams(matrix=np.eye(3) * 0.5), [4, 4, 4])
    assert zoomed[0, 4, 4, 4] == image[0, 4, 4, 4]  # the centre stays put
    assert zoomed[0, 0, 4, 4] == image[0, 2, 4, 4]  # offset -4 samples offset -2


def test_source_extent_contains_every_sampled_position():
    augmenter = Augmenter(ALL_SPATIAL, (20, 20, 12))
    rng = np.random.default_rng(0)
    for _ in range(10):
        params = augmenter.draw(rng)
        extent = augmenter.source_extent(params)
        image = torch.full((1, *extent), 5.0)  # zeros would show up if we sampled outside
        out, _ = augmenter.spatial(image, None, params, [(n - 1) / 2 for n in extent], torch.Generator().manual_seed(1))
        assert out.shape == (1, 20, 20, 12)
        torch.testing.assert_close(out, torch.full_like(out, 5.0))


def test_spatial_augmentation_keeps_labels_integer_and_within_the_classes():
    augmenter = Augmenter(ALL_SPATIAL, (16, 16, 16))
    rng = np.random.default_rng(1)
    label = torch.zeros(1, 30, 30, 30, dtype=torch.uint8)
    label[:, 8:22, 8:22, 8:22] = 1
    label[:, 12:18, 12:18, 12:18] = 2
    image = label.float() * 100
    for _ in range(5):
        params = augmenter.draw(rng)
        out_image, out_label = augmenter(image, label, params, [14.5, 14.5, 14.5])
        assert out_label.dtype == torch.uint8 and set(torch.unique(out_label).tolist()) <= {0, 1, 2}
        assert out_image.shape == (1, 16, 16, 16)


def test_draw_is_deterministic_given_the_generator():
    augmenter = Augmenter(None, (32, 32, 32))
    a = augmenter.draw(np.random.default_rng([3, 1, 4]))
    b = augmenter.draw(np.random.default_rng([3, 1, 4]))
    assert a.torch_seed == b.torch_seed and a.flips == b.flips and a.intensity == b.intensity
    assert (a.matrix is None and b.matrix is None) or np.array_equal(a.matrix, b.matrix)
    image = torch.randn(1, 40, 40, 40)
    out_a, _ = augmenter(image, None, a, [19.5] * 3)
    out_b, _ = augmenter(image, None, b, [19.5] * 3)
    assert torch.equal(out_a, out_b)


def test_anisotropic_and_2d_patches_rotate_in_plane_only():
    augmenter = Augmenter(
        {"spatial": {"rotation": {"p": 1.0}, "scale": {"p": 0.0}}}, (32, 32, 8), spacing_mm=(1.0, 1.0, 8.0)
    )
    assert augmenter.anisotropic
    params = augmenter.draw(np.random.default_rng(0))
    np.testing.assert_allclose(params.matrix[2], [0, 0, 1])
    np.testing.assert_allclose(params.matrix[:, 2], [0, 0, 1])
    two_d = Augmenter({"spatial": {"rotation": {"p": 1.0}}}, (24, 24))
    image = torch.randn(1, 30, 30)
    out, _ = two_d(image, None, two_d.draw(np.random.default_rng(0)), [14.5, 14.5])
    assert out.shape == (1, 24, 24)


def test_intensity_transforms():
    torch.manual_seed(0)
    image = torch.randn(2, 16, 16, 16) * 3 + 1
    gamma = adjust_gamma(image, 1.4, invert=False, retain_stats=True)
    torch.testing.assert_close(gamma.mean(dim=(1, 2, 3)), image.mean(dim=(1, 2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(gamma.std(dim=(1, 2, 3)), image.std(dim=(1, 2, 3)), atol=1e-4, rtol=1e-4)
    constant = torch.full((1, 10, 10, 10), 2.0)
    torch.testing.assert_close(gaussian_blur(constant, 1.0), constant)
    blurred = gaussian_blur(image, 1.0)
    assert blurred.shape == image.shape and blurred.std() < image.std()
    low = simulate_low_resolution(image, 0.5)
    assert low.shape == image.shape
    augmenter = Augmenter(_only("contrast", factor=[1.5, 1.5]), (16, 16, 16))
    params = augmenter.draw(np.random.default_rng(0))
    out = augmenter.intensity(image, params)
    assert out.min() >= image.min() - 1e-6 and out.max() <= image.max() + 1e-6  # range preserved
    assert float(out.std()) > float(image.std())
    noisy = Augmenter(_only("gaussian_noise", variance=[0.25, 0.25]), (16, 16, 16))
    params = noisy.draw(np.random.default_rng(0))
    zero = torch.zeros(1, 16, 16, 16)
    assert float(noisy.intensity(zero, params, torch.Generator().manual_seed(0)).std()) == pytest.approx(0.5, rel=0.05)


def test_elastic_displacement_is_bounded_by_the_magnitude():
    augmenter = Augmenter(
        {"spatial": {"elastic": {"p": 1.0, "magnitude_voxels": [3, 3], "sigma_voxels": [6, 6]}}}, (20, 20, 20)
    )
    field = augmenter._elastic_field({"magnitude": 3.0, "sigma": 6.0}, torch.Generator().manual_seed(0))
    assert field.shape == (20, 20, 20, 3)
    assert float(field.abs().max()) == pytest.approx(3.0, rel=1e-4)
