"""Every command fails in one line naming the path when its output cannot be written, before long work."""

from __future__ import annotations

import os
import tempfile

import pytest

from medseg.cli.main import main
from medseg.phantoms import write_phantom_dataset


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    write_phantom_dataset("ct-thorax", 2, 0, root / "data", progress=False)
    return root / "data"


def _commands(data, out):
    image = str(data / "imagesTr" / "thorax_000_0000.nii.gz")
    return {
        "convert": ["convert", image, f"{out}/converted.nii.gz"],
        "segment": ["segment", "--method", "otsu", image, f"{out}/otsu.nii.gz"],
        "evaluate": [
            "evaluate",
            "--pred",
            str(data / "labelsTr"),
            "--ref",
            str(data / "labelsTr"),
            "--out",
            f"{out}/eval",
        ],
        "submit": [
            "submit",
            "--format",
            "msd",
            "--pred",
            str(data / "labelsTr"),
            "--images",
            str(data / "imagesTr"),
            "--out",
            f"{out}/submission",
        ],
        "plan": ["plan", "--manifest", str(data / "dataset.json"), "--out", f"{out}/plan.json"],
        "phantom": ["phantom", "--kind", "ct-thorax", "--n", "1", "--out", f"{out}/phantoms"],
    }


@pytest.mark.parametrize("command", ["convert", "segment", "evaluate", "submit", "plan", "phantom"])
def test_output_under_a_regular_file_is_one_line_naming_it(phantoms, tmp_path, capsys, monkeypatch, command):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder", encoding="utf-8")
    import medseg.classical

    def never(*args, **kwargs):
        raise AssertionError("the computation ran although the output cannot be written")

    monkeypatch.setattr(medseg.classical, "segment", never)
    assert main([*_commands(phantoms, blocker)[command], "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medseg {command}: error: {blocker}: a file is in the way (a folder is needed here)"]


def _read_only_folders_refuse_writes() -> bool:
    """False for root with CAP_DAC_OVERRIDE (the usual container), which writes into a 0o555 folder anyway.
    Root without it obeys the mode: ``setpriv --bounding-set -dac_override --inh-caps -dac_override pytest ...``."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            with open(os.path.join(folder, "probe"), "w"):
                return False
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)


@pytest.mark.skipif(
    not _read_only_folders_refuse_writes(),
    reason="this user writes into read-only folders (root with CAP_DAC_OVERRIDE): nothing to refuse",
)
@pytest.mark.parametrize("command", ["convert", "segment", "evaluate", "submit", "plan"])
def test_output_in_a_read_only_folder_is_one_line(phantoms, tmp_path, capsys, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main([*_commands(phantoms, locked)[command], "--quiet"]) == 1
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Permission denied" in err[0] and str(locked) in err[0]


def test_the_4d_error_suggests_a_command_that_exists(tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    data = np.zeros((6, 6, 3, 2), np.uint8)
    data[2:4, 2:4, 1, :] = 1
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "pred" / "cine.nii.gz"))
    nib.save(nib.Nifti1Image(data[..., 0], np.eye(4)), str(tmp_path / "ref" / "cine.nii.gz"))
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--ref",
                str(tmp_path / "ref"),
                "--out",
                str(tmp_path / "eval"),
                "--no-report",
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "--frame)" not in err and "medseg convert cine.nii.gz OUT.nii.gz --label --frame N" in err
    # the suggested command works
    assert (
        main(
            [
                "convert",
                str(tmp_path / "pred" / "cine.nii.gz"),
                str(tmp_path / "one.nii.gz"),
                "--label",
                "--frame",
                "1",
                "--quiet",
            ]
        )
        == 0
    )


def test_predict_with_a_missing_model_creates_no_output_folder(phantoms, tmp_path, capsys):
    image = str(phantoms / "imagesTr" / "thorax_000_0000.nii.gz")
    out = tmp_path / "predictions"
    missing = tmp_path / "no_such_run"
    assert main(["predict", "--model", str(missing), "--input", image, "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0]
    assert not out.exists()
