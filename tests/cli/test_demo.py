"""A reduced `medseg demo` runs end to end and leaves every promised output."""

import json

import pytest

from medseg.cli.main import main


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ct-thorax", "cardiac-mri"])
def test_smoke_demo_end_to_end(tmp_path, kind, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--kind", kind, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| label | region | Dice |" in printed and "held-out mean Dice" in printed
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["kind"] == kind and len(summary["held_out_cases"]) == 2
    assert 0.0 <= summary["mean_dice_held_out"] <= 1.0
    for case in summary["held_out_cases"]:
        assert (out / "predictions" / f"{case}.nii.gz").exists()
    for name in (
        "evaluation/metrics.csv",
        "evaluation/summary.json",
        "evaluation/report.md",
        "run/checkpoint_best.pt",
        "run/training_log.csv",
        "config.yaml",
        "manifest.csv",
    ):
        assert (out / name).exists(), name
    assert any((out / "run" / "tensorboard").iterdir())
    regions = {
        line.split(",")[2] for line in (out / "evaluation" / "metrics.csv").read_text(encoding="utf-8").splitlines()[1:]
    }
    assert {"all", "base", "middle", "apex"} <= regions
    # running again replaces the earlier demo; a foreign folder is refused
    assert main(["demo", "--smoke", "--kind", kind, "--out", str(out), "--quiet"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious", encoding="utf-8")
    assert main(["demo", "--smoke", "--out", str(tmp_path / "mine"), "--quiet"]) == 1
    assert "is not an earlier demo folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").exists()
