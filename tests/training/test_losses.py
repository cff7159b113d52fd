"""Losses from config: each is finite, falls as the prediction approaches the target, and errors are clear."""

import pytest
import torch

from medseg.training.losses import LOSS_NAMES, DeepSupervisionLoss, LossConfig, build_loss, merge_unannotated


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


def test_batch_dice_pools_samples_and_per_sample_dice_averages_them():
    # Two 2D samples, one class: sample 0 holds a 36-pixel structure predicted exactly, sample 1 a 4-pixel
    # structure missed entirely. Pooled: Dice = 2 * 36 / (36 + 40) = 0.947; per sample: (1 + 0) / 2 = 0.5.
    target = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    target[0, 0, 2:8, 2:8] = 1
    target[1, 0, 4:6, 4:6] = 1
    predicted = target.clone()
    predicted[1] = 0
    logits = torch.nn.functional.one_hot(predicted[:, 0], 2).permute(0, 3, 1, 2).float() * 40 - 20
    pooled = build_loss(LossConfig(name="dice"), 2)(logits, target)
    per_sample = build_loss(LossConfig(name="dice", batch_dice=False), 2)(logits, target)
    assert pooled.item() == pytest.approx(1 - 72 / 76, abs=1e-4)
    assert per_sample.item() == pytest.approx(0.5, abs=1e-4)


def test_deep_supervision_combines_heads():
    target = _target()
    perfect = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20 - 10
    loss = DeepSupervisionLoss(build_loss(LossConfig(), 3))
    stacked = torch.stack([perfect, -perfect], dim=1)  # head 0 right, head 1 wrong
    assert loss(perfect, target) < loss(stacked, target) < loss(-perfect, target)


def test_merged_logits_give_the_marginal_distribution():
    logits = torch.randn(2, 4, 5, 3, 2, requires_grad=True)
    annotated = torch.tensor([[True, True, False, False], [True, True, True, True]])
    probabilities = merge_unannotated(logits, annotated).softmax(1)
    expected = logits.softmax(1).detach()
    assert torch.allclose(probabilities[1], expected[1], atol=1e-6)  # fully annotated sample: unchanged
    assert torch.allclose(probabilities[0, 0], expected[0, 0] + expected[0, 2] + expected[0, 3], atol=1e-6)
    assert torch.allclose(probabilities[0, 1], expected[0, 1], atol=1e-6)
    assert (probabilities[0, 2:] == 0).all()
    probabilities.log_softmax(1)[:, :2].sum().backward()
    assert torch.isfinite(logits.grad).all()
    assert merge_unannotated(logits, torch.ones(2, 4, dtype=torch.bool)) is logits
    with pytest.raises(ValueError, match="background must be annotated"):
        merge_unannotated(logits, torch.tensor([[False, True, True, True]] * 2))


@pytest.mark.parametrize("name", ["dice_ce", "ce", "dice"])
def test_predicting_an_unannotated_structure_costs_nothing(name):
    """Label 2 is in the image but this case's label map leaves it out (marked background): predicting it
    there is penalised without the mask and free with it, while label 1 is still scored."""
    target = _target()
    truth = target.clone()
    target[target == 2] = 0  # not contoured in this case
    confident = torch.nn.functional.one_hot(truth[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 20 - 10
    loss = DeepSupervisionLoss(build_loss(LossConfig(name=name), 3))
    annotated = torch.tensor([[True, True, False]] * 2)
    silent = confident.clone()
    silent[:, 2] = -10
    silent[:, 0] = torch.where(truth[:, 0] == 2, 10.0, silent[:, 0])
    assert loss(confident, target) > loss(silent, target) + 0.01  # without the mask: the true organ is punished
    assert loss(confident, target, annotated) == pytest.approx(loss(silent, target, annotated).item(), abs=1e-4)
    wrong_lung = confident.clone()
    wrong_lung[:, 1] = -wrong_lung[:, 1]
    assert loss(wrong_lung, target, annotated) > loss(confident, target, annotated) + 0.01
    stacked = torch.stack([confident, silent], dim=1)  # deep supervision heads share the mask
    assert torch.isfinite(loss(stacked, target, annotated))


def test_config_errors():
    with pytest.raises(ValueError, match="LossConfig: name must be one of"):
        LossConfig(name="hinge")
    with pytest.raises(ValueError, match="3 entries for 4 classes"):
        build_loss(LossConfig(name="ce", class_weights=[1, 1, 1]), 4)
