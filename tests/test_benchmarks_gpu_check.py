"""benchmarks/gpu_check.sh: on a machine without CUDA it says so in one line and exits 0; its
helpers keep a config's meaning (absolute paths) and the CT's field of view.

The GPU steps themselves cannot run here; ``benchmarks/gpu_check.sh OUT --cpu-smoke`` runs them all
on the CPU at toy sizes (minutes, so not part of the suite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_cuda_one_line_and_exit_zero(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing measured"
    ]
    assert done.stderr == ""
    assert not (tmp_path / "out").exists()


def test_derived_config_makes_paths_absolute_and_applies_overrides(tmp_path):
    source = ROOT / "configs" / "phantom_ct_thorax_3d.yaml"
    target = gpu_check.derived_config(source, tmp_path / "c.yaml", {"train": {"epochs": 2}, "data": {"workers": 0}})
    config = yaml.safe_load(target.read_text(encoding="utf-8"))
    original = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert Path(config["data"]["manifest"]) == (source.parent / original["data"]["manifest"]).resolve()
    assert Path(config["data"]["augmentation"]) == (source.parent / original["data"]["augmentation"]).resolve()
    assert config["train"]["epochs"] == 2 and config["data"]["workers"] == 0
    assert config["model"] == original["model"]


def test_large_ct_keeps_the_field_of_view(tmp_path):
    from medseg.io import load_volume
    from medseg.phantoms.ct_thorax import make_ct_thorax

    original, _ = make_ct_thorax(123)
    resized = load_volume(gpu_check.large_ct(tmp_path, (48, 40, 20)))
    assert resized.shape == (48, 40, 20)

    def extent(volume):  # world positions of the outer voxel faces along each array axis
        spacing = np.linalg.norm(volume.affine[:3, :3], axis=0)
        return np.asarray(volume.shape) * spacing

    np.testing.assert_allclose(extent(resized), extent(original), rtol=1e-6)
    first_face = lambda v: v.affine[:3, 3] - v.affine[:3, :3] @ np.full(3, 0.5)  # noqa: E731
    np.testing.assert_allclose(first_face(resized), first_face(original), atol=1e-4)
    assert resized.array.dtype == np.int16 and -1100 <= resized.array.min() and resized.array.max() <= 3100


@pytest.mark.parametrize("smoke", [True])
def test_configs_fall_back_to_phantoms_with_a_note(tmp_path, smoke):
    chosen = gpu_check.pick_configs(tmp_path, smoke, iterations=3, workers=0)
    assert chosen["3d"]["source"] == "configs/phantom_ct_thorax_3d.yaml" and "phantom" in chosen["3d"]["data"]
    config = yaml.safe_load(Path(chosen["2d"]["config"]).read_text(encoding="utf-8"))
    assert config["train"]["iterations_per_epoch"] == 3 and config["data"]["cache"] == str(tmp_path / "cache_2d")
