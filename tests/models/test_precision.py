"""The one mixed-precision rule (medseg.models.precision) on CPU and CUDA devices."""

from __future__ import annotations

import logging

import pytest
import torch

import medseg.models.precision as precision
from medseg.config.run_spec import AMP_NAMES
from medseg.models.precision import autocast, autocast_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_auto_is_bf16_only_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("none", CPU) is None


def test_cpu_fp16_falls_back_to_float32_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="medseg.models.precision"):
        assert autocast_dtype("fp16", CPU) is None
    assert "fp16 is not used on CPU" in caplog.text


@pytest.mark.parametrize("bf16_supported", [True, False])
def test_cuda_auto_prefers_bf16_then_fp16(monkeypatch, bf16_supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert autocast_dtype("auto", CUDA) == (torch.bfloat16 if bf16_supported else torch.float16)
    assert autocast_dtype("fp16", CUDA) == torch.float16
    assert autocast_dtype("bf16", CUDA) == torch.bfloat16
    assert autocast_dtype("none", CUDA) is None


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("amp", AMP_NAMES)
def test_every_config_choice_resolves_to_float32_bf16_or_fp16(monkeypatch, amp, device):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert autocast_dtype(amp, device) in (None, torch.bfloat16, torch.float16)


def test_autocast_context_runs_convolutions_in_the_chosen_dtype():
    conv = torch.nn.Conv2d(1, 2, 3)
    image = torch.randn(1, 1, 8, 8)
    with autocast(None, CPU):
        assert conv(image).dtype == torch.float32
    with autocast(torch.bfloat16, CPU):
        assert conv(image).dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32  # weights stay float32
