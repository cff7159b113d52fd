"""Prediction restores each output to its scan's exact grid (real DICOM, oblique and non-RAS inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from data_synthetic import write_tiny_train_config

from medseg.cli.main import main
from medseg.data.transforms import preprocess_case
from medseg.inference.predict import Predictor
from medseg.io import load_volume
from medseg.training.run import train


def _train_one_step(folder: Path, manifest: str, configuration: str, patch: list[int]) -> Path:
    """Train a tiny U-Net for one step on ``manifest`` (relative to ``folder``); returns the run folder."""
    config = write_tiny_train_config(
        folder, manifest, configuration, patch, folds=3, max_channels=16, epochs=1, iterations_per_epoch=1, val_every=1
    )
    return train(config, folder / "run", progress=False)


def _train_tiny(folder: Path, kind: str, configuration: str, patch: list[int]) -> Path:
    (folder / "phantoms.yaml").write_text(f"phantom: {{kind: {kind}, n: 3, seed: 2}}\nroot: data\n", encoding="utf-8")
    return _train_one_step(folder, "phantoms.yaml", configuration, patch)


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("ct"), "ct-thorax", "3d", [32, 32, 16])


@pytest.fixture(scope="module")
def mr_run(tmp_path_factory) -> Path:
    return _train_tiny(tmp_path_factory.mktemp("mr"), "cardiac-mri", "2d", [64, 64])


def oracle(predictor: Predictor, image_path: Path, label_path: Path):
    """Make the predictor's network 'perfect': logits are the one-hot preprocessed reference."""

    def logits(image: torch.Tensor, member=None) -> torch.Tensor:
        sample = preprocess_case(image_path, predictor.plan.preprocessing, label=label_path)
        label = torch.as_tensor(np.asarray(sample["label"][0]), dtype=torch.long)
        assert label.shape == image.shape[1:]
        return torch.nn.functional.one_hot(label, predictor.num_classes).permute(3, 0, 1, 2).float() * 20

    predictor._logits = logits  # type: ignore[method-assign]
    return predictor


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_oracle_prediction_restores_the_reference_on_an_oblique_mri(mr_run):
    image = shared_path("sunnybrook_lv/SCD0000101_phase18_image.nii.gz")
    label = shared_path("sunnybrook_lv/SCD0000101_phase18_label.nii.gz")
    predictor = oracle(Predictor(mr_run), image, label)
    result = predictor.predict(image, "SCD0000101_phase18")
    reference = load_volume(label, label=True)
    assert result.labels.shape == reference.shape
    np.testing.assert_allclose(result.labels.affine, reference.affine, atol=1e-6)
    assert result.labels.orientation == reference.orientation  # oblique, not RAS
    for value in (1, 2):  # resampled to ~1.5 mm and back: small interpolation losses only
        assert dice(result.labels.array == value, reference.array == value) > 0.9


def test_oracle_prediction_restores_the_reference_on_an_lps_ct(ct_run, tmp_path):
    from medseg.io import save_volume
    from medseg.phantoms import make_ct_thorax

    image, label = make_ct_thorax(11)
    save_volume(image, tmp_path / "ct.nii.gz")
    save_volume(label, tmp_path / "label.nii.gz", label=True)
    predictor = oracle(Predictor(ct_run), tmp_path / "ct.nii.gz", tmp_path / "label.nii.gz")
    result = predictor.predict(tmp_path / "ct.nii.gz", "ct")
    assert result.labels.orientation == "LPS"
    np.testing.assert_array_equal(result.labels.affine, load_volume(tmp_path / "ct.nii.gz").affine)
    for value in (1, 2, 3):
        assert dice(result.labels.array == value, label.array == value) > 0.95


@pytest.mark.parametrize("relative", ["totalseg_ct/example_ct_dicom_j2k", "ct_3slice_dcmqi/segmentations/ct-3slice"])
def test_dicom_series_predictions_have_the_series_grid(ct_run, relative, tmp_path):
    series = shared_path(relative)
    assert main(["predict", "--model", str(ct_run), "--input", str(series), "--out", str(tmp_path), "--quiet"]) == 0
    written = load_volume(tmp_path / f"{series.name}.nii.gz", label=True)
    original = load_volume(series)
    assert written.shape == original.shape and written.array.dtype == np.uint8
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)  # NIfTI stores float32
    assert set(np.unique(written.array)) <= {0, 1, 2, 3}


def test_batch_prediction_skips_existing_and_tta(ct_run, tmp_path):
    from medseg.phantoms import write_phantom_dataset

    write_phantom_dataset("ct-thorax", 2, 5, tmp_path / "data", progress=False)
    out = tmp_path / "pred"
    args = [
        "predict",
        "--model",
        str(ct_run),
        "--input",
        str(tmp_path / "data" / "imagesTr"),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args + ["--tta", "--save-probabilities"]) == 0
    first = (out / "thorax_000.nii.gz").stat().st_mtime_ns
    probabilities = np.load(out / "thorax_000_probabilities.npz")
    total = sum(probabilities[f"class_{c}"].astype(np.float32) for c in range(4))
    np.testing.assert_allclose(total, 1.0, atol=5e-3)
    assert main(args) == 0
    assert (out / "thorax_000.nii.gz").stat().st_mtime_ns == first  # skipped
    assert main(args + ["--overwrite"]) == 0
    assert (out / "thorax_000.nii.gz").stat().st_mtime_ns != first


def test_failing_case_is_reported_and_others_continue(ct_run, tmp_path, capsys):
    from medseg.io import Volume, save_volume
    from medseg.phantoms import make_ct_thorax

    image, _ = make_ct_thorax(3)
    folder = tmp_path / "in"
    save_volume(image, folder / "good.nii.gz")
    save_volume(Volume(np.ones((8, 8, 8), np.float32), np.eye(4)), folder / "bad.nii.gz")  # not CT
    assert (
        main(["predict", "--model", str(ct_run), "--input", str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    )
    out = capsys.readouterr().out
    assert "1 predicted" in out and "FAILED bad" in out
    assert (tmp_path / "o" / "good.nii.gz").exists()


def test_tta_says_which_axes_it_mirrors_before_predicting(ct_run, tmp_path, capsys):
    from medseg.io import save_volume
    from medseg.models.checkpoint import load_checkpoint, save_checkpoint
    from medseg.phantoms import make_ct_thorax

    image, _ = make_ct_thorax(5)
    save_volume(image, tmp_path / "in" / "ct.nii.gz")
    args = ["predict", "--input", str(tmp_path / "in"), "--quiet", "--tta"]
    # ct_run trained with augmentation none: nothing was flipped, so --tta mirrors nothing, and says so
    assert main(args + ["--model", str(ct_run), "--out", str(tmp_path / "plain")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "--tta: the training mirrored no axis (augmentation without flips, or labels that name sides such as "
        "left/right?), so no mirroring is done: 1 pass per window"
    )
    assert lines[1].startswith("1 predicted")  # said once, before predicting
    state = load_checkpoint(ct_run / "checkpoint_best.pt")  # the same run as if its training had flipped axes 1 and 2
    state["config"]["mirror_axes"] = [2, 1]
    save_checkpoint(state, tmp_path / "flipped.pt")
    assert main(args + ["--model", str(tmp_path / "flipped.pt"), "--out", str(tmp_path / "mirrored")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "--tta: test-time mirroring along array axes 1 (posterior-anterior), 2 (inferior-superior) "
        "of the preprocessed RAS grid: 4 passes per window"
    )
    assert lines[1].startswith("1 predicted")
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "flipped.pt"),
                "--input",
                str(tmp_path / "in"),
                "--out",
                str(tmp_path / "none"),
                "--quiet",
            ]
        )
        == 0
    )
    assert not capsys.readouterr().out.startswith("--tta")  # without --tta nothing is said


def test_an_ensemble_averages_the_probabilities_of_its_runs(mr_run, tmp_path):
    """Two runs with one plan: the ensemble's probabilities are the mean of each run's, on the
    preprocessed grid; the CLI takes several --model runs."""
    from medseg.models.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(mr_run / "checkpoint_best.pt")  # a second run: the same network, other weights
    generator = torch.Generator().manual_seed(0)
    state["model"] = {
        k: v + 0.2 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
        for k, v in state["model"].items()
    }
    other = save_checkpoint(state, tmp_path / "other.pt")
    image = next((mr_run.parent / "data" / "imagesTr").glob("*_0000.nii.gz"))
    single = [Predictor(run) for run in (mr_run, other)]
    ensemble = Predictor([mr_run, other])
    tensor = torch.as_tensor(preprocess_case(image, ensemble.plan.preprocessing)["image"], dtype=torch.float32)
    tensor = tensor[:, :64, :64, :3].contiguous()  # a few slices are enough, and fast
    with torch.no_grad():
        expected = (single[0]._probabilities(tensor) + single[1]._probabilities(tensor)) / 2
        averaged = ensemble._probabilities(tensor)
    torch.testing.assert_close(averaged, expected)
    assert not torch.allclose(single[0]._probabilities(tensor), single[1]._probabilities(tensor))  # two different runs
    out = tmp_path / "pred"
    assert (
        main(["predict", "--model", str(mr_run), str(other), "--input", str(image), "--out", str(out), "--quiet"]) == 0
    )
    written = load_volume(out / f"{image.name.removesuffix('_0000.nii.gz')}.nii.gz", label=True)
    assert written.shape == load_volume(image).shape


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_prediction_runs_in_the_precision_the_run_trained_in(mr_run, tmp_path, amp):
    """A run trained in float32 predicts in float32, one trained in bf16 predicts in bf16; the logits
    accumulate in float32 either way, and the two agree to bf16 precision."""
    from medseg.models.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(mr_run / "checkpoint_best.pt")
    state["config"]["config"]["train"]["amp"] = amp  # the run spec inside the checkpoint
    predictor = Predictor(save_checkpoint(state, tmp_path / f"{amp}.pt"))
    member = predictor.members[0]
    assert member.autocast_dtype == (None if amp == "none" else torch.bfloat16)
    image = next((mr_run.parent / "data" / "imagesTr").glob("*_0000.nii.gz"))
    tensor = torch.as_tensor(preprocess_case(image, predictor.plan.preprocessing)["image"], dtype=torch.float32)
    tensor = tensor[:, :64, :64, :2].contiguous()
    with torch.no_grad():
        logits = predictor._logits(tensor, member)
        member.model.float()
        reference = torch.cat([member.model(tensor[..., k][None]) for k in range(2)]).movedim(0, -1)
    assert logits.dtype == torch.float32
    tolerance = 1e-4 if amp == "none" else 0.1 * float(reference.abs().max())
    torch.testing.assert_close(logits, reference, atol=tolerance, rtol=0)


def test_an_ensemble_refuses_runs_that_cannot_be_averaged(mr_run, ct_run, tmp_path):
    from medseg.errors import MedsegError
    from medseg.models.checkpoint import load_checkpoint, save_checkpoint

    with pytest.raises(
        MedsegError, match=r"checkpoint_best.pt: cannot be ensembled with .*: its preprocessing plan differs"
    ):
        Predictor([mr_run, ct_run])
    state = load_checkpoint(mr_run / "checkpoint_best.pt")
    state["config"]["labels"] = {"1": "rv", "2": "lv"}
    save_checkpoint(state, tmp_path / "relabelled.pt")
    with pytest.raises(MedsegError, match=r"relabelled.pt: cannot be ensembled with .*: its labels .* differ"):
        Predictor([mr_run, tmp_path / "relabelled.pt"])
    with pytest.raises(MedsegError, match="given twice"):
        Predictor([mr_run, mr_run / "checkpoint_best.pt"])
    assert (
        main(
            [
                "predict",
                "--model",
                str(mr_run),
                str(ct_run),
                "--input",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 1
    )


def test_mirroring_note_counts_passes_and_names_axes_only_for_anatomical_grids():
    from medseg.inference.predict import mirroring_note

    assert mirroring_note(False, [0, 1, 2]) is None
    assert mirroring_note(True, [0, 1, 2], "LPS").endswith(
        "axes 0 (left-right), 1 (posterior-anterior), 2 (inferior-superior) of the preprocessed LPS grid: 8 passes "
        "per window"
    )
    assert mirroring_note(True, [0], "none") == (
        "--tta: test-time mirroring along array axes 0 of the preprocessed grid (the files' voxel order): 2 passes "
        "per window"
    )


@pytest.mark.slow
def test_a_two_channel_model_predicts_from_every_channel(tmp_path):
    """nnU-Net channel files <case>_0000, <case>_0001 form one input; a wrong channel count is a clear error."""
    import json

    from medseg.errors import MedsegError
    from medseg.io import Volume, save_volume
    from medseg.phantoms import case_ids, write_phantom_dataset

    root = tmp_path / "data"
    write_phantom_dataset("cardiac-mri", 3, 4, root, progress=False)
    for image_path in sorted((root / "imagesTr").glob("*_0000.nii.gz")):
        image = load_volume(image_path)
        second = Volume(np.sqrt(np.abs(image.array)).astype(np.float32), image.affine)
        save_volume(second, image_path.with_name(image_path.name.replace("_0000", "_0001")))
    labels = json.loads((root / "dataset.json").read_text(encoding="utf-8"))["labels"]
    (root / "dataset.json").write_text(
        json.dumps(
            {"name": "two", "channel_names": {"0": "MRI", "1": "sqrt"}, "labels": labels, "file_ending": ".nii.gz"}
        ),
        encoding="utf-8",
    )
    run = _train_one_step(tmp_path, "data/dataset.json", "2d", [64, 64])
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(run), "--input", str(root / "imagesTr"), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{case}.nii.gz" for case in case_ids("cardiac-mri", 3)]
    held_out = tmp_path / "held_out"  # the run's validation.csv lists both channels of its cases
    assert (
        main(
            ["predict", "--model", str(run), "--input", str(run / "validation.csv"), "--out", str(held_out), "--quiet"]
        )
        == 0
    )
    assert len(list(held_out.glob("*.nii.gz"))) == 1
    with pytest.raises(MedsegError, match=r"takes 2 channel\(s\) \(MRI, sqrt\), got 1"):
        Predictor(run).predict(next((root / "imagesTr").glob("*_0000.nii.gz")))
