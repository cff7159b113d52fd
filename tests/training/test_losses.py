"""Losses from config: each is finite, falls as the prediction approaches the target, and errors are clear."""

import pytest
import torch

from medseg.training.losses import LOSS_NAMES, DeepSupervisionLoss, LossConfig, build_loss


def _target() -> torch.Tensor:
    target = torch.zeros(2, 1, 12, 12, 6, dtype=torch.long)
    target[:, :, 2:6, 2:6, 1:4] = 1
    target[:, :, 7:11, 6:10, 2:5] = 2
    return target


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_prefers_the_right_answer(name):
    target = _target()
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20 - 10
    loss = build_loss(LossConfig(name=name, class_weights=[0.5, 1.0, 1.0] if name == "ce" else []), 3)
    good, bad = loss(perfect, target), loss(-perfect, target)
    assert torch.isfinite(good) and torch.isfinite(bad)
    assert good < bad


def test_deep_supervision_combines_heads():
    target = _target()
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20 - 10
    loss = DeepSupervisionLoss(build_loss(LossConfig(), 3))
    stacked = torch.stack([perfect, -perfect], dim=1)  # head 0 right, head 1 wrong
    assert loss(perfect, target) < loss(stacked, target) < loss(-perfect, target)


def test_config_errors():
    with pytest.raises(ValueError, match="LossConfig: name must be one of"):
        LossConfig(name="hinge")
    with pytest.raises(ValueError, match="3 entries for 4 classes"):
        build_loss(LossConfig(name="ce", class_weights=[1, 1, 1]), 4)
