"""Segmentation losses from config, built on MONAI's implementations.

All losses take logits ``[batch, classes, *spatial]`` and integer targets
``[batch, 1, *spatial]`` (class indices, background 0). Background handling: the overlap
terms (Dice, Tversky, generalised Dice) leave the background channel out by default
(``include_background: false``, as nnU-Net does), because its overlap is near 1 and would
dilute the foreground signal; the cross-entropy and focal terms always cover every class.

Partial annotations (a case whose label map leaves some structures unmarked, e.g. a heart nobody
contoured) use the *marginal* formulation: :func:`merge_unannotated` folds the probability of the
classes a case leaves unannotated into background before the loss, so the network is neither
rewarded nor penalised for predicting them there and keeps learning them from the cases that mark them.
"""

from __future__ import annotations

import torch
from torch import nn

from medseg.config.run_spec import LOSS_NAMES, LossConfig
from medseg.errors import ConfigError

__all__ = ["LOSS_NAMES", "DeepSupervisionLoss", "LossConfig", "SegmentationLoss", "build_loss", "merge_unannotated"]


class SegmentationLoss(nn.Module):
    """A loss on logits ``[batch, classes, *spatial]`` and class-index targets ``[batch, 1, *spatial]``,
    with an optional ``annotated`` bool mask ``[batch, classes]`` for partially annotated samples
    (see :func:`merge_unannotated`; ``None``: every class annotated)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor | None = None
    ) -> torch.Tensor:
        if annotated is not None:
            logits = merge_unannotated(logits, annotated)
        return self.loss(logits, target)


def build_loss(config: LossConfig, num_classes: int) -> SegmentationLoss:
    """The loss module for ``config`` (the ``loss`` section, :class:`~medseg.config.run_spec.LossConfig`);
    ``num_classes`` counts background. Raises :class:`~medseg.errors.ConfigError` when
    ``loss.class_weights`` does not give one weight per class."""
    return SegmentationLoss(_base_loss(config, num_classes))


def _base_loss(config: LossConfig, num_classes: int) -> nn.Module:
    from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, GeneralizedDiceLoss, TverskyLoss

    if config.class_weights and len(config.class_weights) != num_classes:
        raise ConfigError(
            f"loss.class_weights has {len(config.class_weights)} entries for {num_classes} classes "
            "(background included)"
        )
    weight = torch.tensor(list(config.class_weights), dtype=torch.float32) if config.class_weights else None
    common = {
        "to_onehot_y": True,
        "softmax": True,
        "include_background": config.include_background,
        "batch": config.batch_dice,
    }
    if config.name == "dice":
        return DiceLoss(**common, smooth_nr=1e-5, smooth_dr=1e-5)
    if config.name == "dice_ce":
        return DiceCELoss(**common, weight=weight)
    if config.name == "dice_focal":
        return DiceFocalLoss(**common, gamma=config.focal_gamma)
    if config.name == "tversky":
        return TverskyLoss(**common, alpha=config.tversky_alpha, beta=config.tversky_beta)
    if config.name == "generalized_dice":
        return GeneralizedDiceLoss(**common)
    return _CrossEntropy(weight)


class _CrossEntropy(nn.Module):
    """Weighted cross-entropy on class-index targets ``[batch, 1, *spatial]``."""

    def __init__(self, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, target[:, 0].long(), weight=self.weight)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of a loss (a :class:`SegmentationLoss`) over deep-supervision heads (weights
    halve per level, normalised).

    Takes the stacked output of a deep-supervised network ``[batch, heads, classes, *spatial]``
    (MONAI ``DynUNet`` upsamples every head to full size) or a plain ``[batch, classes, *spatial]``,
    and the optional ``annotated`` mask of :class:`SegmentationLoss`.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, output: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor | None = None
    ) -> torch.Tensor:
        if output.dim() == target.dim():
            return self.loss(output, target, annotated)
        weights = torch.tensor([0.5**level for level in range(output.shape[1])])
        weights = weights / weights.sum()
        return sum(w * self.loss(output[:, level], target, annotated) for level, w in enumerate(weights.tolist()))


def merge_unannotated(logits: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is the marginal distribution for partially annotated samples.

    ``logits``: ``[batch, classes, *spatial]``. ``annotated``: bool ``[batch, classes]``, False where a
    sample's label map leaves that class unmarked (background must be True). For each sample,
    background's logit becomes the log-sum-exp over background and the unannotated classes, and the
    unannotated classes get ``-inf``: the softmax of the result is the softmax of ``logits`` with the
    unannotated classes' probability moved into background, so cross-entropy and Dice against targets
    that mark those classes as background neither reward nor penalise predicting them. Returns
    ``logits`` itself when every class of every sample is annotated.
    """
    if bool(annotated.all()):
        return logits
    if annotated.shape != logits.shape[:2]:
        raise ValueError(f"annotated has shape {tuple(annotated.shape)}; expected {tuple(logits.shape[:2])}")
    if not bool(annotated[:, 0].all()):
        raise ValueError("background must be annotated in every sample")
    keep = annotated.to(logits.device).reshape(*annotated.shape, *([1] * (logits.dim() - 2)))
    into_background = ~keep
    into_background[:, 0] = True
    background = torch.logsumexp(logits.masked_fill(~into_background, float("-inf")), dim=1, keepdim=True)
    return torch.cat([background, logits[:, 1:].masked_fill(~keep[:, 1:], float("-inf"))], dim=1)
