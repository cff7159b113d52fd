"""U-Nets for 3D volumes and for 2D slices, built on MONAI's ``DynUNet``.

The topology (kernel sizes and strides per level) follows nnU-Net's rule for anisotropic
data: an axis is downsampled (stride 2) only while its spacing is at most twice the finest
spacing and its feature map stays at least ``min_feature_size`` voxels; an axis much coarser
than the others gets kernel size 1 until the finer axes have caught up. Inputs are
``[batch, channel, *spatial]`` with spatial axes in medseg's array order ``[i, j, k]``
(3D) or ``[i, j]`` (2D slices taken along ``k``); outputs are logits with ``out_channels``
channels (background included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class UNetConfig:
    """Network settings (the ``model`` section of a training config).

    Attributes:
        dimensions: 3 for a volumetric U-Net, 2 for a slice-wise U-Net.
        channels: feature maps per resolution level, shallow to deep; the number of levels
            is ``len(channels)``.
        norm: ``"instance"`` (default, as nnU-Net) or ``"batch"``.
        deep_supervision: also return lower-resolution outputs during training.
        deep_supervision_heads: how many extra lower-resolution outputs.
        residual: residual blocks instead of plain double convolutions.
        dropout: dropout probability inside the blocks.
    """

    dimensions: int = 3
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    norm: str = "instance"
    deep_supervision: bool = False
    deep_supervision_heads: int = 2
    residual: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dimensions not in (2, 3):
            raise ValueError(f"model.dimensions must be 2 or 3, got {self.dimensions}")
        if len(self.channels) < 2 or any(int(c) <= 0 for c in self.channels):
            raise ValueError(f"model.channels needs at least two positive numbers, got {self.channels}")
        if self.norm not in ("instance", "batch"):
            raise ValueError(f"model.norm must be 'instance' or 'batch', got {self.norm!r}")
        if self.deep_supervision and not 1 <= self.deep_supervision_heads <= len(self.channels) - 2:
            raise ValueError(
                f"model.deep_supervision_heads must be 1..{len(self.channels) - 2} for {len(self.channels)} levels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


def plan_kernels_and_strides(
    patch_size: Sequence[int], spacing_mm: Sequence[float], n_levels: int, min_feature_size: int = 4
) -> tuple[list[list[int]], list[list[int]]]:
    """Kernel sizes and strides per level for a patch (voxels) at a spacing (mm), nnU-Net style.

    Returns ``(kernels, strides)``, each a list of ``n_levels`` per-axis lists; the first
    stride is all ones (the input level). Raises ``ValueError`` when the patch cannot be
    halved ``n_levels - 1`` times on any axis.
    """
    size = np.asarray(patch_size, dtype=float)
    spacing = np.asarray(spacing_mm, dtype=float)
    if size.shape != spacing.shape:
        raise ValueError(f"patch_size {tuple(patch_size)} and spacing_mm {tuple(spacing_mm)} differ in length")
    kernels, strides = [], [[1] * len(size)]
    for level in range(n_levels):
        coarse = spacing / spacing.min() > 2.0
        kernels.append([1 if c else 3 for c in coarse])
        if level == n_levels - 1:
            break
        can_pool = (~coarse) & (size / 2 >= min_feature_size)
        if not can_pool.any():
            raise ValueError(
                f"patch {tuple(int(s) for s in patch_size)} is too small for {n_levels} levels "
                f"(feature maps must stay >= {min_feature_size} voxels); use a larger patch or fewer channels"
            )
        stride = [2 if p else 1 for p in can_pool]
        strides.append(stride)
        size = size / np.asarray(stride)
        spacing = spacing * np.asarray(stride)
    return kernels, strides


def build_unet(
    config: UNetConfig,
    in_channels: int,
    out_channels: int,
    patch_size: Sequence[int],
    spacing_mm: Sequence[float],
):
    """A MONAI ``DynUNet`` for ``config`` with topology planned from patch size and spacing.

    ``patch_size`` and ``spacing_mm`` have ``config.dimensions`` entries (voxels, mm).
    The model returns logits ``[batch, out_channels, *spatial]``; in training mode with deep
    supervision it returns ``[batch, heads + 1, out_channels, *spatial]`` (MONAI convention).
    """
    from monai.networks.nets import DynUNet

    if len(patch_size) != config.dimensions:
        raise ValueError(f"patch_size {tuple(patch_size)} does not have {config.dimensions} axes")
    kernels, strides = plan_kernels_and_strides(patch_size, spacing_mm, len(config.channels))
    divisor = np.prod(np.asarray(strides), axis=0)
    if np.any(np.asarray(patch_size) % divisor):
        raise ValueError(
            f"patch_size {tuple(patch_size)} must be divisible by {tuple(int(d) for d in divisor)} "
            "(the network's total downsampling per axis)"
        )
    return DynUNet(
        spatial_dims=config.dimensions,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernels,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=[int(c) for c in config.channels],
        norm_name=("instance", {"affine": True}) if config.norm == "instance" else "batch",
        act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        deep_supervision=config.deep_supervision,
        deep_supr_num=config.deep_supervision_heads if config.deep_supervision else 1,
        res_block=config.residual,
        dropout=config.dropout or None,
    )
