"""Preprocessing cache: files, memory mapping, skip / redo / recover, failures named per case."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from data_synthetic import write_dataset

from medseg.config.plan import save_plan
from medseg.data.cache import input_signature, open_cache, preprocess_dataset
from medseg.data.manifest import load_manifest
from medseg.data.planning import plan_dataset
from medseg.data.restore import restore_to_original
from medseg.io import atomic_save_npy, atomic_write_text, load_volume


@pytest.fixture()
def dataset(tmp_path):
    manifest = load_manifest(write_dataset(tmp_path / "data", n=4, ct=True, unlabelled=1))
    plan = plan_dataset(manifest)
    return manifest, plan, tmp_path / "cache"


def test_cache_files_are_memory_mappable_with_geometry_and_class_locations(dataset):
    manifest, plan, cache_dir = dataset
    report = preprocess_dataset(manifest, plan, cache_dir)
    assert report.ok and sorted(report.done) == [c.case_id for c in manifest.cases]
    cases = open_cache(cache_dir)
    assert len(cases) == 4 and (cache_dir / "plan.json").exists() and not (cache_dir / "failed.json").exists()
    labelled = cases[0]
    image, label = labelled.image(), labelled.label()
    assert isinstance(image, np.memmap) and isinstance(label, np.memmap)
    assert image.dtype == np.float32 and image.shape == (1, *labelled.shape) and label.dtype == np.uint8
    assert labelled.classes_present == [1, 2]
    for value, coords in labelled.class_locations().items():
        assert len(coords) > 0 and np.all(label[tuple(coords.T)] == value)
    assert cases[3].label() is None and cases[3].meta["label_file"] is None  # unlabelled case
    # the case JSON carries the record that maps a prediction back to the original grid
    entry = manifest.case(labelled.case_id)
    original = load_volume(entry.label, label=True)
    restored = restore_to_original(np.asarray(label), labelled.meta)
    assert restored.shape == original.shape
    np.testing.assert_allclose(labelled.meta["original"]["affine"], original.affine)
    dice = (
        2
        * np.count_nonzero((restored == 1) & (original.array == 1))
        / (np.count_nonzero(restored == 1) + np.count_nonzero(original.array == 1))
    )
    assert dice > 0.95


def test_second_run_skips_and_changed_inputs_or_plan_are_redone(dataset):
    manifest, plan, cache_dir = dataset
    preprocess_dataset(manifest, plan, cache_dir)
    again = preprocess_dataset(manifest, plan, cache_dir)
    assert again.done == [] and len(again.skipped) == 4
    touched = manifest.cases[1]
    stat = touched.image.stat()
    os.utime(touched.image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    redo = preprocess_dataset(manifest, plan, cache_dir)
    assert redo.done == [touched.case_id] and len(redo.skipped) == 3
    changed = replace(plan, preprocessing=replace(plan.preprocessing, target_spacing_mm=[1.5, 1.5, 3.0]))
    assert input_signature(touched, changed) != input_signature(touched, plan)
    assert len(preprocess_dataset(manifest, changed, cache_dir).done) == 4
    assert open_cache(cache_dir)[0].spacing_mm[2] == pytest.approx(3.0, rel=0.05)
    assert len(preprocess_dataset(manifest, changed, cache_dir, overwrite=True).done) == 4


def test_a_failing_case_is_named_and_the_others_complete(dataset):
    manifest, plan, cache_dir = dataset
    broken = manifest.cases[2]
    good_bytes = broken.image.read_bytes()
    broken.image.write_bytes(good_bytes[: len(good_bytes) // 3])  # truncated file
    report = preprocess_dataset(manifest, plan, cache_dir)
    assert list(report.failed) == [broken.case_id] and len(report.done) == 3
    assert "truncated" in report.failed[broken.case_id] or "unreadable" in report.failed[broken.case_id]
    failed = json.loads((cache_dir / "failed.json").read_text(encoding="utf-8"))
    assert list(failed) == [broken.case_id]
    assert broken.case_id not in [c.case_id for c in open_cache(cache_dir)]
    # fix the file: the rerun does only that case and clears failed.json
    broken.image.write_bytes(good_bytes)
    rerun = preprocess_dataset(manifest, plan, cache_dir)
    assert rerun.done == [broken.case_id] and rerun.ok and not (cache_dir / "failed.json").exists()


def test_an_interrupted_write_leaves_the_case_not_done(dataset):
    manifest, plan, cache_dir = dataset
    preprocess_dataset(manifest, plan, cache_dir)
    case = manifest.cases[0]
    (cache_dir / f"{case.case_id}.json").unlink()  # as if killed before the JSON was renamed in
    assert not list(cache_dir.glob(".tmp-*"))
    report = preprocess_dataset(manifest, plan, cache_dir)
    assert report.done == [case.case_id]


@pytest.mark.slow
def test_preprocess_cli_with_worker_processes_reports_failures(dataset, tmp_path, capsys):
    from medseg.cli.main import main

    manifest, plan, cache_dir = dataset
    plan_path = save_plan(plan, tmp_path / "PLAN.json")
    manifest.cases[1].image.write_bytes(b"garbage")
    args = [
        "preprocess",
        "--manifest",
        str(manifest.path),
        "--plan",
        str(plan_path),
        "--out",
        str(cache_dir),
        "--workers",
        "2",
    ]
    assert main([*args, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "case_01 failed" in captured.err and "failed.json" in captured.err
    assert "preprocessed 3 case(s)" in captured.out
    assert sorted(c.case_id for c in open_cache(cache_dir)) == ["case_00", "case_02", "case_03"]


def test_atomic_writes_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o027)  # neither the common 022 nor mkstemp's 077
    try:
        text = atomic_write_text(tmp_path / "run" / "config.yaml", "a: 1\n")
        array = atomic_save_npy(tmp_path / "cache" / "case.npy", np.zeros(3, np.uint8))
    finally:
        os.umask(umask)
    assert text.stat().st_mode & 0o777 == 0o640 and text.read_text(encoding="utf-8") == "a: 1\n"
    assert array.stat().st_mode & 0o777 == 0o640 and np.load(array).tolist() == [0, 0, 0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", "case.npy", "config.yaml", "run"]  # no temporaries
