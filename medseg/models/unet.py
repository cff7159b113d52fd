"""U-Nets for 3D volumes and for 2D slices, built on MONAI's ``DynUNet``.

The topology (kernel sizes and strides per stage) is planned per dataset by
:func:`medseg.data.planning.pool_and_kernels` (nnU-Net's rule for anisotropic data). Inputs are
``[batch, channel, *spatial]`` with spatial axes in medseg's array order ``[i, j, k]``
(3D) or ``[i, j]`` (2D slices taken along ``k``); outputs are logits with ``out_channels``
channels (background included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class UNetConfig:
    """Network settings (the ``model`` section of a training config).

    The topology (strides and kernel sizes per stage) comes from the dataset plan's
    configuration (see :mod:`medseg.data.planning`), so the network fits the patch size and
    voxel spacing; this section sets the width and the building blocks.

    Attributes:
        base_channels: feature maps at full resolution (``null``: the plan's value).
        max_channels: cap on feature maps per stage; stage ``s`` has
            ``min(base_channels * 2**s, max_channels)`` (``null``: the plan's value).
        norm: ``"instance"`` (default, as nnU-Net) or ``"batch"``.
        deep_supervision: also return lower-resolution outputs during training.
        deep_supervision_heads: how many extra lower-resolution outputs.
        residual: residual blocks instead of plain double convolutions.
        dropout: dropout probability inside the blocks.
    """

    base_channels: int | None = None
    max_channels: int | None = None
    norm: str = "instance"
    deep_supervision: bool = False
    deep_supervision_heads: int = 2
    residual: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("base_channels", "max_channels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.norm not in ("instance", "batch"):
            raise ValueError(f"model.norm must be 'instance' or 'batch', got {self.norm!r}")
        if self.deep_supervision and self.deep_supervision_heads < 1:
            raise ValueError(f"model.deep_supervision_heads must be >= 1, got {self.deep_supervision_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


def stage_channels(n_stages: int, base_channels: int, max_channels: int) -> list[int]:
    """Feature maps per stage: ``min(base_channels * 2**s, max_channels)``."""
    return [min(base_channels * 2**stage, max_channels) for stage in range(n_stages)]


def build_unet(
    config: UNetConfig,
    in_channels: int,
    out_channels: int,
    strides: Sequence[Sequence[int]],
    kernel_sizes: Sequence[Sequence[int]],
    base_channels: int = 32,
    max_channels: int = 320,
):
    """A MONAI ``DynUNet``; spatial dimensions = length of each stride (2 or 3).

    ``strides`` and ``kernel_sizes`` have one per-axis entry per stage, the first stride all
    ones (the plan's ``configurations[...]`` values, or
    :func:`medseg.data.planning.pool_and_kernels`). ``base_channels`` / ``max_channels``
    apply where ``config`` leaves them ``None``. The model returns logits
    ``[batch, out_channels, *spatial]``; in training mode with deep supervision,
    ``[batch, heads + 1, out_channels, *spatial]`` (MONAI convention). Input sizes must be
    divisible by the product of the strides per axis (:func:`medseg.data.planning.divisibility`).
    """
    from monai.networks.nets import DynUNet

    strides = [list(map(int, s)) for s in strides]
    kernel_sizes = [list(map(int, k)) for k in kernel_sizes]
    dims = len(strides[0])
    if dims not in (2, 3) or len(strides) != len(kernel_sizes) or len(strides) < 2:
        raise ValueError(f"strides {strides} and kernel_sizes {kernel_sizes} do not describe a 2D/3D U-Net of >= 2 stages")
    heads = config.deep_supervision_heads if config.deep_supervision else 1
    if config.deep_supervision and heads > len(strides) - 2:
        raise ValueError(f"model.deep_supervision_heads must be 1..{len(strides) - 2} for {len(strides)} stages")
    filters = stage_channels(len(strides), config.base_channels or base_channels, config.max_channels or max_channels)
    return DynUNet(
        spatial_dims=dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=kernel_sizes,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        norm_name=("instance", {"affine": True}) if config.norm == "instance" else "batch",
        act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        deep_supervision=config.deep_supervision,
        deep_supr_num=heads,
        res_block=config.residual,
        dropout=config.dropout or None,
    )
