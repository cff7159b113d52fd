"""Dataset fingerprint and plan (``medseg plan``) on small synthetic datasets."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from data_synthetic import write_dataset

from medseg.data.fingerprint import dataset_fingerprint
from medseg.data.manifest import load_manifest
from medseg.data.planning import divisibility, estimate_unet_memory_gib, load_plan, make_plan, plan_dataset, pool_and_kernels
from medseg.errors import ConfigError


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory):
    return load_manifest(write_dataset(tmp_path_factory.mktemp("ct"), n=4, ct=True))


@pytest.fixture(scope="module")
def ct_fingerprint(ct_manifest):
    return dataset_fingerprint(ct_manifest)


def test_fingerprint_spacings_shapes_intensities_and_classes(ct_manifest, ct_fingerprint):
    fp = ct_fingerprint
    assert fp["n_cases"] == 4 and fp["ct"] is True
    assert sorted(fp["orientations_original"]) == ["LPS", "RAS"]
    # synthetic spacings are (1.0|1.05, 1.0, 2.5|2.6|2.7) in RAS order
    np.testing.assert_allclose(fp["spacing_mm"]["median"], [1.025, 1.0, 2.55])
    np.testing.assert_allclose(fp["spacing_mm"]["max"], [1.05, 1.0, 2.7])
    intensity = fp["intensity_foreground"][0]
    # foreground = labelled voxels: 60 HU (big) and 300 HU (small), noise sd 10
    assert 20 < intensity["percentile_00_5"] < 60 and 290 < intensity["percentile_99_5"] < 340
    assert 55 < intensity["mean"] < 120
    classes = fp["classes"]
    assert set(classes) == {"0", "1", "2"}
    assert classes["1"]["voxels"] > classes["2"]["voxels"] > 0 and classes["2"]["cases_present"] == 4
    total = sum(c["fraction_of_all"] for c in classes.values())
    assert abs(total - 1.0) < 1e-3
    # the fingerprint is reproducible (seeded sampling)
    assert dataset_fingerprint(ct_manifest)["intensity_foreground"] == fp["intensity_foreground"]


def test_ct_plan_uses_median_spacing_and_ct_normalisation(ct_manifest, ct_fingerprint):
    plan = make_plan(ct_fingerprint, ct_manifest)
    pre = plan["preprocessing"]
    assert pre["target_spacing_mm"] == ct_fingerprint["spacing_mm"]["median"]
    assert pre["orientation"] == "RAS" and pre["ct"] is True and pre["anisotropic"] is False
    norm = pre["normalization"][0]
    assert norm["scheme"] == "ct"
    assert norm["clip"] == [ct_fingerprint["intensity_foreground"][0]["percentile_00_5"], ct_fingerprint["intensity_foreground"][0]["percentile_99_5"]]
    for name in ("3d", "2d"):
        cfg = plan["configurations"][name]
        factors = divisibility(cfg["strides"])
        assert all(p % f == 0 for p, f in zip(cfg["patch_size"], factors))
        assert cfg["estimated_memory_gib"] <= 8.0 and cfg["batch_size"] >= 2
    window = make_plan(ct_fingerprint, ct_manifest, {"ct_clip": [-1000, 400]})
    assert window["preprocessing"]["normalization"][0]["clip"] == [-1000.0, 400.0]
    load_plan(plan)  # a plan passes its own validation


def test_anisotropic_dataset_resamples_the_slice_axis_separately(tmp_path):
    shapes = [(48, 44, 8), (50, 46, 9), (46, 48, 8)]
    spacings = [(1.0, 1.0, 8.0), (0.95, 0.95, 8.0), (1.05, 1.05, 10.0)]
    manifest = load_manifest(write_dataset(tmp_path, n=3, shapes=shapes, spacings=spacings))
    plan = plan_dataset(manifest)
    pre = plan["preprocessing"]
    assert pre["anisotropic"] is True and pre["separate_z_axis"] == 2
    assert pre["normalization"][0]["scheme"] == "zscore"
    two_d = plan["configurations"]["2d"]
    assert two_d["slice_axis"] == 2 and two_d["in_plane_axes"] == [0, 1]
    three_d = plan["configurations"]["3d"]
    assert three_d["kernel_sizes"][0][2] == 1  # no convolution across 8 mm slices at full resolution
    assert three_d["strides"][1][2] == 1  # and no pooling across them first


def test_oblique_stacks_with_scattered_slice_axes_keep_the_file_voxel_order(tmp_path):
    from medseg.data.cache import open_cache, preprocess_dataset
    from medseg.data.restore import restore_to_original
    from medseg.io import load_volume

    shapes = [(44, 40, 8)] * 3
    spacings = [(1.0, 1.0, 8.0)] * 3
    manifest = load_manifest(write_dataset(tmp_path, n=3, shapes=shapes, spacings=spacings, swap_yz=(1,)))
    plan = plan_dataset(manifest)
    pre = plan["preprocessing"]
    assert pre["orientation"] == "none" and "file voxel order" in plan["notes"][0]
    assert pre["target_spacing_mm"] == [1.0, 1.0, 8.0] and plan["configurations"]["2d"]["slice_axis"] == 2
    forced = plan_dataset(manifest, {"orientation": "RAS"})["preprocessing"]
    assert forced["orientation"] == "RAS"
    preprocess_dataset(manifest, plan, tmp_path / "cache")
    for case in open_cache(tmp_path / "cache"):
        assert case.meta["steps"][1]["permutation"] == [0, 1, 2]
        assert np.argmax(case.spacing_mm) == 2  # every case slices along the same array axis
        original = load_volume(manifest.case(case.case_id).label, label=True)
        np.testing.assert_array_equal(restore_to_original(np.asarray(case.label()), case.meta), original.array)


def test_patch_size_shrinks_with_the_memory_budget():
    spacing, patch = [1.0, 1.0, 1.0], [160, 160, 160]
    strides, _ = pool_and_kernels(spacing, patch)
    assert len(strides) == 6 and strides[0] == [1, 1, 1]
    big = estimate_unet_memory_gib([128, 128, 128], strides)
    small = estimate_unet_memory_gib([64, 64, 64], strides)
    assert 6 < big < 14 and small < big
    fingerprint = {
        "cases": [{"spacing_mm": spacing, "shape_after_crop": [300, 300, 300], "shape": [300, 300, 300], "case_id": "a"}],
        "ct": False,
        "crop_size_fraction_median": 1.0,
        "intensity_foreground": [{"channel": 0, "name": "MRI"}],
    }

    class _Manifest:
        name, path, modality, labels, channel_names = "x", "x", "MRI", {"background": 0, "a": 1}, {0: "MRI"}

    large = make_plan(fingerprint, _Manifest(), {"network": {"gpu_memory_gib": 12}})["configurations"]["3d"]
    tight = make_plan(fingerprint, _Manifest(), {"network": {"gpu_memory_gib": 3}})["configurations"]["3d"]
    assert np.prod(tight["patch_size"]) < np.prod(large["patch_size"])
    assert tight["estimated_memory_gib"] <= 3 and large["estimated_memory_gib"] <= 12


def test_plan_cli_writes_readable_json(tmp_path, capsys):
    from medseg.cli import plan as plan_cli

    manifest = write_dataset(tmp_path / "data", n=3)
    parser = argparse.ArgumentParser()
    plan_cli.add_arguments(parser)
    out = tmp_path / "PLAN.json"
    assert plan_cli.run(parser.parse_args(["--manifest", str(manifest), "--out", str(out), "--quiet", "--target-spacing", "1", "1", "2"])) == 0
    text = out.read_text()
    assert '"target_spacing_mm": [1.0, 1.0, 2.0]' in text  # short lists on one line
    plan = json.loads(text)
    assert plan["medseg_plan_version"] == 1 and set(plan["configurations"]) == {"3d", "2d"}
    printed = capsys.readouterr().out
    assert "target [1.0, 1.0, 2.0]" in printed and "wrote" in printed


def test_empty_or_broken_manifest_is_a_clear_error(tmp_path):
    manifest_path = write_dataset(tmp_path, n=2)
    (tmp_path / "case_01_img.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(Exception, match="case_01"):
        plan_dataset(load_manifest(manifest_path))
    empty = tmp_path / "empty.csv"
    empty.write_text("case_id,image,label\n")
    with pytest.raises(ConfigError, match="no cases"):
        plan_dataset(load_manifest(empty))
