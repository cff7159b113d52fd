"""`medseg train` end to end on phantoms (2D and 3D), resume through the CLI, and config errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_synthetic import write_tiny_train_config

from medseg.cli.main import main
from medseg.data.manifest import load_manifest
from medseg.errors import ConfigError
from medseg.models.checkpoint import load_checkpoint
from medseg.training.run import annotated_mask, check_unannotated, load_training_config, train


def write_config(folder: Path, kind: str, configuration: str, patch, **train_overrides) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "phantoms.yaml").write_text(f"phantom: {{kind: {kind}, n: 4, seed: 1}}\nroot: data\n", encoding="utf-8")
    train_section = {"epochs": 3, "iterations_per_epoch": 4, "val_every": 3, **train_overrides}
    return write_tiny_train_config(
        folder, "phantoms.yaml", configuration, patch, folds=2, max_channels=32, **train_section
    )


def change_config(config: Path, change: dict[str, dict]) -> None:
    """Update sections of a written config, e.g. ``{"data": {"augmentation": "aug.yaml"}}``."""
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    for section, values in change.items():
        raw.setdefault(section, {}).update(values)
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")


def log_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "training_log.csv").open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, configuration, patch", [("ct-thorax", "3d", [32, 32, 16]), ("cardiac-mri", "2d", [64, 64])]
)
def test_training_reduces_the_loss(tmp_path, kind, configuration, patch):
    config = write_config(tmp_path, kind, configuration, patch)
    run_dir = train(config, tmp_path / "run", progress=False)
    rows = log_rows(run_dir)
    assert len(rows) == 3 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert rows[-1]["val_mean_dice"] != ""  # validated on whole held-out phantoms
    state = load_checkpoint(run_dir / "checkpoint_best.pt")
    assert state["config"]["settings"]["patch_size"] == patch
    for name in ("config.yaml", "plan.json", "splits.json", "checkpoint_latest.pt"):
        assert (run_dir / name).exists()
    cache = Path(load_training_config(config).spec.data.cache)
    assert (run_dir / "plan.json").read_text(encoding="utf-8") == (cache / "plan.json").read_text(
        encoding="utf-8"
    )  # one plan format, one writer
    held_out = load_manifest(run_dir / "validation.csv")  # the fold's held-out cases, for predict/evaluate
    assert [case.case_id for case in held_out] == json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))[
        "val"
    ]
    assert all(case.image.is_file() and case.label.is_file() for case in held_out)


@pytest.mark.slow
def test_cli_resume_extends_a_finished_run(tmp_path):
    config = write_config(tmp_path, "ct-thorax", "3d", [32, 32, 16], epochs=1, val_every=1)
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run_dir), "--quiet"]) == 0
    assert main(["train", "--config", str(config), "--out", str(run_dir), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert [r["epoch"] for r in log_rows(run_dir)] == ["1", "2"]
    assert load_checkpoint(run_dir / "checkpoint_latest.pt")["epoch"] == 2


def test_fold_all_trains_on_every_case_without_validation(tmp_path):
    config = write_config(tmp_path, "cardiac-mri", "2d", [64, 64], epochs=2, iterations_per_epoch=1, val_every=1)
    (tmp_path / "run").mkdir()  # files left by an earlier fold in the same folder
    (tmp_path / "run" / "validation.csv").write_text("case_id,image,label\n", encoding="utf-8")
    (tmp_path / "run" / "checkpoint_best.pt").write_bytes(b"an earlier fold's best model")
    assert main(["train", "--config", str(config), "--fold", "all", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    run_dir = tmp_path / "run"
    splits = json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))
    all_ids = sorted(case.case_id for case in load_manifest(tmp_path / "phantoms.yaml").cases)
    assert splits == {"fold": "all", "train": all_ids, "val": []}
    assert not (run_dir / "validation.csv").exists()
    assert not (run_dir / "checkpoint_best.pt").exists()  # nothing to choose a best checkpoint with
    assert all("val_mean_dice" not in row for row in log_rows(run_dir))
    assert load_checkpoint(run_dir / "checkpoint_latest.pt")["config"]["fold"] == "all"
    with pytest.raises(ConfigError, match="fold must be a fold number .* or 'all', got 'every'"):
        train(config, tmp_path / "other", fold="every", progress=False)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"modle": {}}, r"unknown key\(s\) modle"),
        ({"train": {"epochs": "ten"}}, "train.epochs must be an integer"),
        ({"optim": {"name": "adam"}}, "optim.name must be one of 'sgd', 'adamw'"),
        ({"data": {"configuration": "4d"}}, "data.configuration must be one of"),
        ({"data": {"manifest": "missing.csv"}}, "data.manifest: file not found"),
        ({"loss": {"name": "hinge"}}, "loss.name must be one of"),
        (
            {"data": {"group_pattern": "(patient"}},
            r"data.group_pattern must be a regular expression, got '\(patient' \(",
        ),
        ({"postprocess": {"largest_componnt": [1]}}, r"unknown key\(s\) postprocess.largest_componnt"),
    ],
)
def test_bad_configs_fail_before_training(tmp_path, change, message):
    config = write_config(tmp_path, "ct-thorax", "3d", [32, 32, 16])
    change_config(config, change)
    with pytest.raises(ConfigError, match=f"train.yaml: .*{message}"):
        load_training_config(config)


def test_patch_larger_than_the_data_is_refused(tmp_path):
    config = write_config(tmp_path, "ct-thorax", "3d", [256, 256, 64])
    with pytest.raises(ConfigError, match=r"data.patch_size \[256, 256, 64\] is larger than every case"):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint_latest.pt").exists()


def test_patch_not_divisible_is_refused(tmp_path):
    config = write_config(tmp_path, "ct-thorax", "3d", [30, 32, 16])
    with pytest.raises(ConfigError, match="must be divisible by"):
        train(config, tmp_path / "run", progress=False)


def test_shipped_configs_validate():
    from conftest import PROJECT_ROOT, SHARED_DATA

    configs = PROJECT_ROOT / "configs"
    real = ("acdc_2d.yaml", "acdc_2d_cpu.yaml", "nsclc_lung_3d_cpu.yaml") if SHARED_DATA.is_dir() else ()
    for name in ("phantom_ct_thorax_3d.yaml", "phantom_cardiac_mri_2d.yaml") + real:
        inputs = load_training_config(configs / name)
        assert Path(inputs.spec.data.manifest).exists()
    with pytest.raises(
        ConfigError, match=r"chest_ct_lung_3d.yaml: data.manifest: file not found: .*my_chest_ct/dataset.json"
    ):
        load_training_config(configs / "chest_ct_lung_3d.yaml")  # a template: the manifest is yours to give


@pytest.mark.shared_data
def test_the_chest_ct_config_keeps_the_datasets_labels_and_never_mirrors(shared_data):
    from types import SimpleNamespace

    from conftest import PROJECT_ROOT

    from medseg.training.run import mirror_axes_from_augmentation

    inputs = load_training_config(PROJECT_ROOT / "configs" / "nsclc_lung_3d_cpu.yaml")
    manifest = load_manifest(inputs.spec.data.manifest)
    assert manifest.labels == {
        "background": 0,
        "right_lung": 1,
        "left_lung": 2,
        "gtv": 3,
        "spinal_cord": 4,
        "heart": 5,
        "esophagus": 6,
    }
    assert [case.group for case in manifest.cases] == [f"LUNG1-00{i}" for i in range(1, 7)]
    network_3d = SimpleNamespace(slice_axis=None)
    assert mirror_axes_from_augmentation(inputs.augmentation, network_3d) == []  # sides and front are fixed


def test_annotated_mask_follows_the_manifests_partial_annotations():
    mask = annotated_mask(["LUNG1-001", "LUNG1-002", "LUNG1-004"], {"LUNG1-001": (5, 6), "LUNG1-004": (5,)}, 7)
    assert mask.tolist() == [
        [True, True, True, True, True, False, False],
        [True] * 7,
        [True, True, True, True, True, False, True],
    ]


def test_a_case_marking_a_label_it_calls_unannotated_is_refused_before_training(tmp_path):
    from types import SimpleNamespace

    (tmp_path / "m.csv").write_text(
        "# labels: background=0, lung=1, heart=2\ncase_id,image,unannotated\na,a.nii.gz,heart\nb,b.nii.gz,\n",
        encoding="utf-8",
    )
    manifest = load_manifest(tmp_path / "m.csv")
    check_unannotated(
        manifest,
        [SimpleNamespace(case_id="a", classes_present=[1]), SimpleNamespace(case_id="b", classes_present=[1, 2])],
    )
    with pytest.raises(ConfigError, match=r"m.csv: case 'a' lists label value\(s\) \[2\] as unannotated"):
        check_unannotated(manifest, [SimpleNamespace(case_id="a", classes_present=[1, 2])])


def test_example_figure_leaves_the_callers_matplotlib_backend_alone():
    """TensorBoard's example slices are drawn without pyplot, so a notebook keeps its inline backend."""
    import io

    import matplotlib

    from medseg.training.run import example_figure

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        reference = np.zeros((8, 8, 3), np.uint8)
        reference[2:6, 2:6, 1] = 1
        figure = example_figure("case", np.random.default_rng(0).random((8, 8, 3)), reference, reference, {1: "a"})
        figure.savefig(io.BytesIO(), format="png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_a_bad_augmentation_file_fails_before_planning(tmp_path):
    config = write_config(tmp_path, "ct-thorax", "3d", [32, 32, 16])
    (tmp_path / "aug.yaml").write_text("spatial: {flipp: {p: 0.5}}\n", encoding="utf-8")
    change_config(config, {"data": {"augmentation": "aug.yaml"}})
    with pytest.raises(ConfigError, match=r"aug.yaml.*flipp.*did you mean 'flip'"):
        load_training_config(config)


def test_editing_the_preprocessing_settings_plans_the_cache_again(tmp_path):
    from medseg.training.run import prepare_cache

    config_path = write_config(tmp_path, "ct-thorax", "3d", [32, 32, 16])
    (tmp_path / "pre.yaml").write_text("target_spacing_mm: [8.0, 8.0, 8.0]\n", encoding="utf-8")
    change_config(config_path, {"data": {"preprocessing": "pre.yaml"}})
    first = prepare_cache(load_training_config(config_path), progress=False)
    assert first.preprocessing.target_spacing_mm == [8.0, 8.0, 8.0]
    assert prepare_cache(load_training_config(config_path), progress=False) == first  # unchanged: reused
    (tmp_path / "pre.yaml").write_text("target_spacing_mm: [10.0, 10.0, 10.0]\n", encoding="utf-8")
    second = prepare_cache(load_training_config(config_path), progress=False)
    assert second.preprocessing.target_spacing_mm == [10.0, 10.0, 10.0]


def test_validation_csv_records_the_groups_the_folds_used(tmp_path):
    from medseg.config.plan import Configuration, load_plan
    from medseg.config.run_spec import TrainedRun
    from medseg.training.run import write_run_files

    spec = load_training_config(write_config(tmp_path, "ct-thorax", "3d", [32, 32, 16])).spec
    spec.data.group_pattern = r"^(thorax)_0*(\d)"  # first capture group names the patient
    manifest = load_manifest(spec.data.manifest)
    split = {"train": [c.case_id for c in manifest.cases[:2]], "val": [c.case_id for c in manifest.cases[2:]]}
    plan = load_plan({"preprocessing": {"target_spacing_mm": [1, 1, 1], "normalization": [{"scheme": "none"}]}})
    network = Configuration(
        patch_size=[32, 32, 16],
        strides=[[1, 1, 1], [2, 2, 2]],
        kernel_sizes=[[3, 3, 3]] * 2,
        batch_size=2,
        spacing_mm=[1, 1, 1],
    )
    record = TrainedRun(spec=spec, plan=plan, network=network, in_channels=1, labels={"1": "a"})
    write_run_files(tmp_path / "run", record, split, manifest)
    held_out = load_manifest(tmp_path / "run" / "validation.csv")
    assert [c.group for c in held_out] == ["thorax"] * len(split["val"])
    assert json.loads((tmp_path / "run" / "network.json").read_text(encoding="utf-8"))["patch_size"] == [32, 32, 16]
