"""Resampling: exact grid mapping (checked against SimpleITK), labels, anisotropic handling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.data import resample as R
from medseg.io.volume import itk_geometry_from_affine


def _oblique_affine(spacing, angles_deg=(20.0, -10.0, 35.0), origin=(10.0, -20.0, 5.0)):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix() @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _to_sitk(array, affine):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    spacing, origin, direction = itk_geometry_from_affine(affine)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _smooth_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.normal(size=shape), 2.5) * 100).astype(np.float32)


@pytest.mark.parametrize("target", [(1.5, 1.5, 1.5), (0.5, 0.7, 1.0), (1.1, 0.9, 3.2)])
def test_linear_resampling_matches_simpleitk_on_the_same_output_grid(target):
    import SimpleITK as sitk

    shape, spacing = (36, 44, 26), np.array([0.8, 1.1, 2.5])
    affine = _oblique_affine(spacing)
    volume = _smooth_volume(shape)
    shape_out = R.output_shape(shape, spacing, target)
    affine_out = R.resampled_affine(affine, shape, shape_out)
    ours = R.resample_image(volume[None], shape_out)[0]
    reference_grid = _to_sitk(np.zeros(shape_out, np.float32), affine_out)
    theirs = sitk.Resample(
        _to_sitk(volume, affine), reference_grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32
    )
    theirs = sitk.GetArrayFromImage(theirs).transpose(2, 1, 0)
    interior = tuple(slice(2, -2) for _ in range(3))
    assert ours.shape == theirs.shape == shape_out
    assert np.abs(ours[interior] - theirs[interior]).max() < 1e-3 * np.abs(volume).max()


def test_output_grid_keeps_the_extent_and_spacing_close_to_target():
    shape, spacing, target = (101, 57, 13), np.array([0.7, 0.9, 5.0]), (1.5, 1.5, 1.5)
    affine = _oblique_affine(spacing)
    shape_out = R.output_shape(shape, spacing, target)
    affine_out = R.resampled_affine(affine, shape, shape_out)
    # the outer face of voxel 0 (index -0.5) maps to the same world point in both grids
    corner_in = affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_out = affine_out @ np.array([-0.5, -0.5, -0.5, 1.0])
    far_in = affine @ np.array([*(np.array(shape) - 0.5), 1.0])
    far_out = affine_out @ np.array([*(np.array(shape_out) - 0.5), 1.0])
    np.testing.assert_allclose(corner_in, corner_out, atol=1e-9)
    np.testing.assert_allclose(far_in, far_out, atol=1e-9)
    spacing_out = np.sqrt((affine_out[:3, :3] ** 2).sum(0))
    assert np.all(np.abs(spacing_out - target) <= np.array(target) / np.array(shape_out))
    # directions are unchanged (oblique stays oblique)
    np.testing.assert_allclose(affine_out[:3, :3] / spacing_out, affine[:3, :3] / spacing, atol=1e-12)


def test_same_shape_is_an_exact_identity():
    volume = _smooth_volume((12, 10, 8))
    out = R.resample_image(volume[None], (12, 10, 8))
    np.testing.assert_array_equal(out[0], volume)
    label = (volume > 0).astype(np.uint8)
    np.testing.assert_array_equal(R.resample_label(label, (12, 10, 8)), label)


def test_bspline_uses_the_same_grid_mapping():
    ramp = np.broadcast_to(np.arange(30, dtype=np.float32)[:, None, None], (30, 8, 8)).copy()
    out = R.resample_image(ramp[None], (45, 8, 8), mode="bspline")[0]
    expected = (np.arange(45) + 0.5) * 30 / 45 - 0.5
    np.testing.assert_allclose(out[10:-10, 4, 4], expected[10:-10], atol=1e-3)  # spline boundary effects decay


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_labels_stay_integer_and_keep_every_class(mode):
    label = np.zeros((64, 64, 20), np.uint8)
    label[10:40, 10:40, 5:15] = 1
    label[50, 50, 10] = 2  # a one-voxel structure: downsampling by 4 would drop it
    label[52:54, 20:22, 3] = 3
    out = R.resample_label(label, (16, 16, 10), mode=mode)
    assert out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 1, 2, 3}
    assert np.count_nonzero(out == 2) == 1
    without = R.resample_label(label, (16, 16, 10), mode=mode, keep_all_classes=False)
    assert set(np.unique(without)) <= {0, 1, 2, 3}


def test_label_upsampling_nearest_then_back_is_exact():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 4, size=(9, 7, 5)).astype(np.uint8)
    up = R.resample_label(label, (27, 21, 15))
    back = R.resample_label(up, (9, 7, 5), keep_all_classes=False)
    np.testing.assert_array_equal(back, label)


def test_separate_z_never_blends_slices():
    assert R.separate_z_axis((0.8, 0.8, 6.0)) == 2
    assert R.separate_z_axis((1.0, 1.0, 1.2)) is None
    assert R.separate_z_axis((1.0, 1.0, 1.0), (1.0, 1.0, 4.0)) == 2
    slices = np.arange(6, dtype=np.float32) * 100
    volume = np.broadcast_to(slices[None, None, :], (20, 20, 6)).copy()
    out = R.resample_image(volume[None], (30, 30, 15), separate_z=2)[0]
    assert set(np.unique(np.round(out, 2))) <= set(slices.tolist())  # every output slice is one input slice
    blended = R.resample_image(volume[None], (30, 30, 15))[0]
    assert len(set(np.unique(np.round(blended, 2))) - set(slices.tolist())) > 0


def test_probabilities_resample_on_torch_tensors_too():
    import torch

    probabilities = torch.softmax(torch.randn(3, 10, 12, 8), dim=0)
    out = R.resample_probabilities(probabilities, (20, 24, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 20, 24, 16)
    np.testing.assert_allclose(out.sum(0).numpy(), 1.0, atol=1e-5)


def test_empty_input_and_bad_modes_raise():
    with pytest.raises(ValueError, match="empty"):
        R.resample_image(np.zeros((1, 0, 4, 4), np.float32), (2, 2, 2))
    with pytest.raises(ValueError, match="interpolation"):
        R.resample_image(np.zeros((1, 4, 4, 4), np.float32), (2, 2, 2), mode="cubic")
    with pytest.raises(ValueError, match="integer"):
        R.resample_label(np.zeros((4, 4, 4), np.float32), (2, 2, 2))


def test_memory_layout_of_the_input_does_not_change_the_result():
    volume = _smooth_volume((30, 26, 20))
    fortran = np.asfortranarray(volume)
    flipped = np.asfortranarray(volume[::-1, ::-1].copy())[::-1, ::-1]  # same values, odd strides
    for shape_out in [(15, 13, 10), (45, 39, 30), (20, 26, 7)]:
        expected = R.resample_image(volume[None], shape_out)
        for variant in (fortran, flipped):  # the axes may be interpolated in another order: float rounding
            np.testing.assert_allclose(R.resample_image(variant[None], shape_out), expected, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(
            R.resample_image(fortran[None], shape_out, separate_z=2),
            R.resample_image(volume[None], shape_out, separate_z=2),
            rtol=1e-5,
            atol=1e-4,
        )
        label = (volume > 0).astype(np.uint8) + (volume > 10)
        for variant in (np.asfortranarray(label), np.asfortranarray(label[::-1].copy())[::-1]):
            np.testing.assert_array_equal(R.resample_label(variant, shape_out), R.resample_label(label, shape_out))
