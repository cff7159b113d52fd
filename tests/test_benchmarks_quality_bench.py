"""benchmarks/quality_bench.py: a finished run folder is scored under an arm's name only when it was trained
with that arm's run spec (an arm folder left from an older version of the config is refused, not reused)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quality_bench  # noqa: E402


def test_a_run_trained_with_another_config_is_refused(tmp_path):
    expected = {"train": {"epochs": 200, "iterations_per_epoch": 20}, "loss": {"batch_dice": False}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(expected), encoding="utf-8")
    quality_bench.check_trained_with(tmp_path, expected)  # the same spec: reused

    older = {"train": {"epochs": 120, "iterations_per_epoch": 20}, "loss": {}}  # before batch_dice existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(older), encoding="utf-8")
    with pytest.raises(SystemExit) as refused:
        quality_bench.check_trained_with(tmp_path, expected)
    message = str(refused.value)
    assert message.startswith(f"{tmp_path}: trained with another config than this arm's")
    assert "train.epochs: 120 -> 200" in message and "loss.batch_dice: None -> False" in message
    assert "iterations_per_epoch" not in message
