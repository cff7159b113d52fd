"""README's "Your own NIfTI data, start to finish": its command block runs, line by line, as written.

The commands are read from README.md (the fenced block after ``<!-- walkthrough -->``), so the README
cannot drift from what works. The data is a small phantom dataset in the nnU-Net v2 layout
(``imagesTr``/``labelsTr`` plus unlabelled ``imagesTs``); the copied config is edited as the README
says (``data.manifest``) and shortened so training takes seconds.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT

from medseg.cli.main import main
from medseg.phantoms import write_phantom_dataset


def walkthrough_commands() -> list[list[str]]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def make_nnunet_dataset(root: Path) -> None:
    """Six ct-thorax phantoms: four labelled in imagesTr/labelsTr, two unlabelled in imagesTs."""
    write_phantom_dataset("ct-thorax", 6, 3, root, progress=False, options={"shape": (48, 48, 20)})
    (root / "imagesTs").mkdir()
    dataset = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    for entry in dataset["training"][4:]:
        case_file = Path(entry["image"]).name
        shutil.move(root / "imagesTr" / case_file, root / "imagesTs" / case_file)
        (root / entry["label"]).unlink()
    dataset = {key: dataset[key] for key in ("name", "channel_names", "labels", "file_ending")}
    (root / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")


def edit_config(path: Path) -> None:
    """What the README asks for (data.manifest), plus a training short enough for a test."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["data"].update(
        manifest="../my_dataset/dataset.json", workers=0, folds=2, patch_size=[32, 32, 16], batch_size=2
    )
    config["model"].update(base_channels=4, max_channels=16)
    config["train"].update(epochs=1, iterations_per_epoch=2, val_every=1)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    commands = walkthrough_commands()
    assert [c[0] for c in commands].count("medseg") >= 8, "the README walkthrough block was not found"
    shutil.copytree(PROJECT_ROOT / "configs", tmp_path / "configs")
    make_nnunet_dataset(tmp_path / "my_dataset")
    monkeypatch.chdir(tmp_path)
    for command in commands:
        if command[0] == "cp":
            shutil.copy(command[1], command[2])
            edit_config(Path(command[2]))
            continue
        assert command[0] == "medseg", f"unexpected command in the walkthrough: {command}"
        assert main(command[1:]) == 0, f"failed: {shlex.join(command)}"
    printed = capsys.readouterr().out
    assert "mean Dice" in printed and "left_lung" in printed  # evaluate prints its means, not only file names
    run = tmp_path / "runs" / "my_lungs"
    assert (run / "val_eval" / "report.md").is_file()
    assert sorted(p.name for p in (run / "test_pred").glob("*.nii.gz")) == ["thorax_004.nii.gz", "thorax_005.nii.gz"]
    assert (run / "submission.zip").is_file()
