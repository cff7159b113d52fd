"""Sliding-window prediction: coverage, blending and the 2D slice-wise path."""

import numpy as np
import pytest
import torch

from medseg.models.sliding_window import gaussian_importance, predict_volume, sliding_window_logits, window_starts


def test_window_starts_cover_the_axis_evenly():
    assert window_starts(10, 16, 0.5) == [0]
    assert window_starts(16, 16, 0.5) == [0]
    starts = window_starts(100, 32, 0.5)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    assert max(np.diff(starts)) <= 16


def test_gaussian_importance_peaks_in_the_centre():
    weights = gaussian_importance((9, 7, 5))
    assert weights.shape == (9, 7, 5) and weights.max() == 1.0 and weights[4, 3, 2] == 1.0
    assert weights.min() > 0


@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_pointwise_model_gives_the_full_image_prediction(blend):
    torch.manual_seed(0)
    model = torch.nn.Conv3d(2, 3, kernel_size=1)
    image = torch.randn(1, 2, 37, 20, 11)
    expected = model(image)
    logits = sliding_window_logits(model, image, (16, 16, 8), num_classes=3, overlap=0.5, blend=blend)
    torch.testing.assert_close(logits, expected.detach(), atol=1e-5, rtol=1e-5)


def test_small_image_is_padded_and_cropped_back():
    model = torch.nn.Conv3d(1, 2, kernel_size=1)
    image = torch.randn(1, 1, 5, 6, 3)
    logits = sliding_window_logits(model, image, (8, 8, 8), num_classes=2)
    assert logits.shape == (1, 2, 5, 6, 3)
    torch.testing.assert_close(logits, model(image).detach(), atol=1e-5, rtol=1e-5)


def test_slice_wise_2d_prediction_and_mirroring():
    torch.manual_seed(1)
    model = torch.nn.Conv2d(1, 4, kernel_size=1)
    volume = torch.randn(1, 30, 22, 7)  # [channels, i, j, k]
    logits = predict_volume(model, volume, (16, 16), num_classes=4, mirror_axes=(0, 1))
    expected = model(volume.permute(3, 0, 1, 2)).permute(1, 2, 3, 0)  # every k slice on its own
    assert logits.shape == (4, 30, 22, 7)
    torch.testing.assert_close(logits, expected.detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot mirror along its slice axis"):
        predict_volume(model, volume, (16, 16), num_classes=4, mirror_axes=(2,))


def test_mirroring_averages_flipped_predictions():
    """A model that is not flip-equivariant: TTA output equals the mean over flips done by hand."""
    torch.manual_seed(2)
    model = torch.nn.Conv3d(1, 2, kernel_size=3, padding=1)
    volume = torch.randn(1, 12, 10, 8)
    plain = lambda x: sliding_window_logits(model, x[None], (12, 10, 8), 2)[0]  # noqa: E731
    expected = (plain(volume) + plain(volume.flip(1)).flip(1)) / 2
    logits = predict_volume(model, volume, (12, 10, 8), 2, mirror_axes=(0,))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_2d_model_across_another_slice_axis():
    torch.manual_seed(3)
    model = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1)
    volume = torch.randn(1, 6, 20, 18)  # slices across axis 0
    logits = predict_volume(model, volume, (20, 18), num_classes=2, slice_axis=0)
    expected = model(volume.permute(1, 0, 2, 3)).permute(1, 0, 2, 3)  # slice i -> [j, k] image
    torch.testing.assert_close(logits, expected.detach(), atol=1e-5, rtol=1e-5)
