"""Networks: a 3D U-Net and a slice-wise 2D U-Net (MONAI ``DynUNet`` with planned topology)."""

from medseg.models.unet import UNetConfig, build_unet, stage_channels

__all__ = ["UNetConfig", "build_unet", "stage_channels"]
