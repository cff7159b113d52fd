"""U-Net construction from a planned topology: output shapes, deep supervision, clear errors."""

import pytest
import torch

from medseg.data.planning import pool_and_kernels
from medseg.models import UNetConfig, build_unet, stage_channels


def test_stage_channels():
    assert stage_channels(6, 32, 320) == [32, 64, 128, 256, 320, 320]


@pytest.mark.parametrize(
    "patch, spacing", [((32, 32, 16), (2.0, 2.0, 3.0)), ((64, 48), (1.5, 1.5)), ((32, 32, 8), (1.0, 1.0, 5.0))]
)
def test_output_shapes_follow_the_planned_topology(patch, spacing):
    strides, kernels = pool_and_kernels(spacing, patch, max_stages=4)
    model = build_unet(UNetConfig(base_channels=4), 1, 4, strides, kernels)
    logits = model(torch.randn(2, 1, *patch))
    assert logits.shape == (2, 4, *patch)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_deep_supervision_returns_extra_heads_in_training_only():
    strides, kernels = pool_and_kernels((1.0, 1.0), (32, 32), max_stages=4)
    model = build_unet(
        UNetConfig(base_channels=4, deep_supervision=True, deep_supervision_heads=2), 1, 3, strides, kernels
    )
    model.train()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_clear_errors():
    strides, kernels = pool_and_kernels((1.0, 1.0, 1.0), (16, 16, 16), max_stages=3)
    with pytest.raises(ValueError, match="deep_supervision_heads must be 1..1"):
        build_unet(UNetConfig(deep_supervision=True, deep_supervision_heads=2), 1, 2, strides, kernels)
    with pytest.raises(ValueError, match="do not describe"):
        build_unet(UNetConfig(), 1, 2, [[1, 1, 1, 1]], [[3, 3, 3, 3]])
    with pytest.raises(ValueError, match="UNetConfig: norm must be one of"):
        UNetConfig(norm="group")
    with pytest.raises(ValueError, match="UNetConfig: base_channels must be null or an integer >= 1, got 0"):
        UNetConfig(base_channels=0)
