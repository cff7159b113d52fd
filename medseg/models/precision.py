"""Mixed precision: which autocast dtype a network runs in, for training and for prediction.

One rule for every command. On CUDA, ``auto`` is bfloat16 where the GPU supports it, else
float16 (with a gradient scaler in training). On CPU, ``auto`` is bfloat16 only where the
processor multiplies bfloat16 natively (Intel AMX or AVX512-BF16: measured 2.2x faster for a
training step of the ACDC 2D U-Net than float32 on such a CPU); elsewhere bfloat16 is emulated
and slower than float32, so ``auto`` keeps float32. Weights, the loss, softmax and the
accumulated sliding-window logits stay float32 in every case. Validation and ``medseg predict`` run a
network in the precision its run trained in (the run's ``train.amp``).
"""

from __future__ import annotations

import contextlib
import functools
import logging

import torch

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bfloat16 in hardware (Intel AMX tiles or AVX512-BF16)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for precision setting ``amp`` (``train.amp``: one of
    :data:`medseg.config.run_spec.AMP_NAMES`) on ``device``.

    ``None`` means float32 throughout. On CPU, ``fp16`` is not offered (no CPU runs float16
    convolutions faster than float32) and falls back to float32 with a warning.
    """
    if amp == "none" or device.type not in ("cuda", "cpu"):
        return None
    if device.type == "cuda":
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if amp == "fp16":
        log.warning("amp: fp16 is not used on CPU; float32 instead (choose bf16 or auto)")
        return None
    return torch.bfloat16


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for ``None`` (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
