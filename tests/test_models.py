"""U-Net construction: planned topology, output shapes, clear errors."""

import pytest
import torch

from medseg.models import UNetConfig, build_unet, plan_kernels_and_strides


def test_anisotropic_topology_follows_nnunet_rule():
    kernels, strides = plan_kernels_and_strides((128, 128, 16), (1.5, 1.5, 10.0), 5)
    # the 10 mm axis is neither convolved nor pooled until in-plane spacing has caught up
    assert kernels[0] == [3, 3, 1] and strides[1] == [2, 2, 1]
    assert strides[-1] == [2, 2, 2] and kernels[-1] == [3, 3, 3]
    isotropic_kernels, isotropic_strides = plan_kernels_and_strides((64, 64, 64), (1.0, 1.0, 1.0), 4)
    assert all(k == [3, 3, 3] for k in isotropic_kernels)
    assert isotropic_strides == [[1, 1, 1]] + [[2, 2, 2]] * 3


@pytest.mark.parametrize("dimensions, patch, spacing", [(3, (32, 32, 16), (2.0, 2.0, 3.0)), (2, (64, 48), (1.5, 1.5))])
def test_output_shapes(dimensions, patch, spacing):
    config = UNetConfig(dimensions=dimensions, channels=[4, 8, 16])
    model = build_unet(config, in_channels=1, out_channels=4, patch_size=patch, spacing_mm=spacing)
    logits = model(torch.randn(2, 1, *patch))
    assert logits.shape == (2, 4, *patch)
    logits.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_deep_supervision_returns_extra_heads_in_training_only():
    config = UNetConfig(dimensions=2, channels=[4, 8, 16, 32], deep_supervision=True, deep_supervision_heads=2)
    model = build_unet(config, 1, 3, (32, 32), (1.0, 1.0))
    model.train()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3, 32, 32)


def test_clear_errors():
    with pytest.raises(ValueError, match="too small for 5 levels"):
        build_unet(UNetConfig(channels=[4, 8, 16, 32, 64]), 1, 2, (16, 16, 8), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="must be divisible by"):
        build_unet(UNetConfig(channels=[4, 8, 16]), 1, 2, (30, 32, 32), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="model.norm"):
        UNetConfig(norm="group")
    with pytest.raises(ValueError, match="model.dimensions"):
        UNetConfig(dimensions=4)
