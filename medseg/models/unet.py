"""U-Nets for 3D volumes and for 2D slices, built on MONAI's ``DynUNet``.

The topology (kernel sizes and strides per stage) is planned per dataset by
:func:`medseg.data.planning.pool_and_kernels` (nnU-Net's rule for anisotropic data). Inputs are
``[batch, channel, *spatial]`` with spatial axes in medseg's array order ``[i, j, k]``
(3D) or ``[i, j]`` (2D slices taken along ``k``); outputs are logits with ``out_channels``
channels (background included).
"""

from __future__ import annotations

from collections.abc import Sequence

from medseg.config.plan import DEFAULT_BASE_CHANNELS, DEFAULT_MAX_CHANNELS
from medseg.config.run_spec import UNetConfig
from medseg.errors import InvalidArgumentError

__all__ = ["UNetConfig", "build_unet", "stage_channels"]


def stage_channels(n_stages: int, base_channels: int, max_channels: int) -> list[int]:
    """Feature maps per stage: ``min(base_channels * 2**s, max_channels)``."""
    return [min(base_channels * 2**stage, max_channels) for stage in range(n_stages)]


def build_unet(
    config: UNetConfig,
    in_channels: int,
    out_channels: int,
    strides: Sequence[Sequence[int]],
    kernel_sizes: Sequence[Sequence[int]],
    base_channels: int = DEFAULT_BASE_CHANNELS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
):
    """A MONAI ``DynUNet``; spatial dimensions = length of each stride (2 or 3).

    ``strides`` and ``kernel_sizes`` have one per-axis entry per stage, the first stride all
    ones (the plan's ``configurations[...]`` values, or
    :func:`medseg.data.planning.pool_and_kernels`). ``base_channels`` / ``max_channels``
    apply where ``config`` leaves them ``None``. The model returns logits
    ``[batch, out_channels, *spatial]``; in training mode with deep supervision,
    ``[batch, heads + 1, out_channels, *spatial]`` (MONAI convention). Input sizes must be
    divisible by the product of the strides per axis (:func:`medseg.data.planning.divisibility`).
    ``config`` is the ``model`` section (:class:`~medseg.config.run_spec.UNetConfig`). Raises
    :class:`~medseg.errors.InvalidArgumentError` for a topology that is not a 2D/3D U-Net of
    >= 2 stages, or more deep-supervision heads than it has room for.
    """
    from monai.networks.nets import DynUNet

    strides = [list(map(int, s)) for s in strides]
    kernel_sizes = [list(map(int, k)) for k in kernel_sizes]
    dims = len(strides[0])
    if dims not in (2, 3) or len(strides) != len(kernel_sizes) or len(strides) < 2:
        raise InvalidArgumentError(
            f"strides {strides} and kernel_sizes {kernel_sizes} do not describe a 2D/3D U-Net of >= 2 stages"
        )
    heads = config.deep_supervision_heads if config.deep_supervision else 1
    if config.deep_supervision and heads > len(strides) - 2:
        raise InvalidArgumentError(
            f"model.deep_supervision_heads must be 1..{len(strides) - 2} for {len(strides)} stages"
        )
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
