"""Dataset fingerprint and plan (``medseg plan``) on small synthetic datasets."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from data_synthetic import write_dataset

from medseg.config import from_dict, to_dict
from medseg.config.plan import load_plan
from medseg.data.fingerprint import dataset_fingerprint
from medseg.data.manifest import load_manifest
from medseg.data.planning import (
    divisibility,
    estimate_unet_memory_gib,
    make_plan,
    plan_dataset,
    pool_and_kernels,
)
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
    pre = plan.preprocessing
    assert pre.target_spacing_mm == ct_fingerprint["spacing_mm"]["median"]
    assert pre.orientation == "RAS" and pre.ct is True and pre.anisotropic is False
    norm = pre.normalization[0]
    assert norm.scheme == "ct"
    foreground = ct_fingerprint["intensity_foreground"][0]
    assert norm.clip == [foreground["percentile_00_5"], foreground["percentile_99_5"]]
    for name in ("3d", "2d"):
        cfg = plan.configurations[name]
        factors = divisibility(cfg.strides)
        assert all(p % f == 0 for p, f in zip(cfg.patch_size, factors))
        assert cfg.estimated_memory_gib <= 8.0 and cfg.batch_size >= 2
    plain = to_dict(plan)  # single channel: the one flag, as before
    assert "ct_channels" not in plain["preprocessing"] and "ct_channels" not in plan.fingerprint
    window = make_plan(ct_fingerprint, ct_manifest, {"ct_clip": [-1000, 400]})
    assert window.preprocessing.normalization[0].clip == [-1000.0, 400.0]
    assert load_plan(json.loads(json.dumps(plain))) == plan  # the plain form reads back as the same plan


def test_anisotropic_dataset_resamples_the_slice_axis_separately(tmp_path):
    shapes = [(48, 44, 8), (50, 46, 9), (46, 48, 8)]
    spacings = [(1.0, 1.0, 8.0), (0.95, 0.95, 8.0), (1.05, 1.05, 10.0)]
    manifest = load_manifest(write_dataset(tmp_path, n=3, shapes=shapes, spacings=spacings))
    plan = plan_dataset(manifest)
    pre = plan.preprocessing
    assert pre.anisotropic is True and pre.separate_z_axis == 2
    assert pre.normalization[0].scheme == "zscore"
    two_d = plan.configuration("2d")
    assert two_d.slice_axis == 2 and two_d.in_plane_axes == [0, 1]
    three_d = plan.configuration("3d")
    assert three_d.kernel_sizes[0][2] == 1  # no convolution across 8 mm slices at full resolution
    assert three_d.strides[1][2] == 1  # and no pooling across them first


def test_oblique_stacks_with_scattered_slice_axes_keep_the_file_voxel_order(tmp_path):
    from medseg.data.cache import open_cache, preprocess_dataset
    from medseg.data.restore import restore_to_original
    from medseg.io import load_volume

    shapes = [(44, 40, 8)] * 3
    spacings = [(1.0, 1.0, 8.0)] * 3
    manifest = load_manifest(write_dataset(tmp_path, n=3, shapes=shapes, spacings=spacings, swap_yz=(1,)))
    plan = plan_dataset(manifest)
    pre = plan.preprocessing
    assert pre.orientation == "none" and "file voxel order" in plan.notes[0]
    assert pre.target_spacing_mm == [1.0, 1.0, 8.0] and plan.configuration("2d").slice_axis == 2
    forced = plan_dataset(manifest, {"orientation": "RAS"}).preprocessing
    assert forced.orientation == "RAS"
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
        "cases": [
            {"spacing_mm": spacing, "shape_after_crop": [300, 300, 300], "shape": [300, 300, 300], "case_id": "a"}
        ],
        "ct": False,
        "crop_size_fraction_median": 1.0,
        "intensity_foreground": [{"channel": 0, "name": "MRI"}],
    }

    class _Manifest:
        name, path, modality, labels, channel_names = "x", "x", "MRI", {"background": 0, "a": 1}, {0: "MRI"}

    large = make_plan(fingerprint, _Manifest(), {"network": {"gpu_memory_gib": 12}}).configuration("3d")
    tight = make_plan(fingerprint, _Manifest(), {"network": {"gpu_memory_gib": 3}}).configuration("3d")
    assert np.prod(tight.patch_size) < np.prod(large.patch_size)
    assert tight.estimated_memory_gib <= 3 and large.estimated_memory_gib <= 12


def test_plan_cli_writes_readable_json(tmp_path, capsys):
    from medseg.cli.main import main

    manifest = write_dataset(tmp_path / "data", n=3)
    out = tmp_path / "PLAN.json"
    assert (
        main(["plan", "--manifest", str(manifest), "--out", str(out), "--quiet", "--target-spacing", "1", "1", "2"])
        == 0
    )
    text = out.read_text(encoding="utf-8")
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
    empty.write_text("case_id,image,label\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no cases"):
        plan_dataset(load_manifest(empty))


# -- CT decided per channel (CT + PET) ----------------------------------------------------------
def _write_ct_pet_dataset(root: Path) -> Path:
    """Two ct-thorax phantom cases plus a PET-like channel (non-negative float, not HU) per
    case; dataset.json names the channels CT and PET. Returns the dataset.json path."""
    from medseg.io import Volume, load_volume, save_volume
    from medseg.phantoms import write_phantom_dataset

    dataset_json = write_phantom_dataset("ct-thorax", 2, 3, root, progress=False, options={"shape": (48, 48, 20)})
    spec = json.loads(dataset_json.read_text(encoding="utf-8"))
    for entry in spec["training"]:
        ct = load_volume(root / entry["image"])
        hu = ct.array.astype(np.float32)
        uptake = np.where(
            hu > -500.0, np.clip((hu + 1000.0) / 200.0, 0.0, None) ** 1.5, 0.0
        )  # 0 outside the body and in the lungs
        second = entry["image"].replace("_0000", "_0001")
        save_volume(Volume(uptake.astype(np.float32), ct.affine, second), root / second)
        entry["image"] = [entry["image"], second]
    spec["channel_names"] = {"0": "CT", "1": "PET"}
    spec.pop("modality", None)
    spec.pop("medseg_phantom", None)
    dataset_json.write_text(json.dumps(spec), encoding="utf-8")
    return dataset_json


@pytest.fixture(scope="module")
def ct_pet_json(tmp_path_factory) -> Path:
    return _write_ct_pet_dataset(tmp_path_factory.mktemp("ct_pet"))


def test_ct_plus_pet_dataset_plans_and_preprocesses_each_channel_as_its_kind(ct_pet_json):
    from medseg.data.transforms import LoadVolumed, preprocess_case
    from medseg.errors import VolumeReadError

    manifest = load_manifest(ct_pet_json)
    case = manifest.cases[0]
    with pytest.raises(VolumeReadError, match="Hounsfield"):  # what one CT flag for all channels did
        LoadVolumed(ct=True)({"image": list(case.images)})
    plan = plan_dataset(manifest)
    pre = plan.preprocessing
    assert pre.ct is True and pre.ct_channels == [True, False]
    assert plan.fingerprint["ct_channels"] == [True, False]
    assert [n.scheme for n in pre.normalization] == ["ct", "zscore"]
    from medseg.cli.plan import summary_lines

    assert "channels CT + non-CT" in summary_lines(plan).splitlines()[0]
    assert pre.normalization[0].clip[0] < -500  # HU statistics from the CT channel only

    sample = preprocess_case(list(case.images), pre, label=case.label, case_id=case.case_id)
    image = sample["image"]
    assert image.ndim == 4 and image.shape[0] == 2 and image.dtype == np.float32
    assert sample["label"].shape[1:] == image.shape[1:]
    assert sample["meta"]["ct"] is True and sample["meta"]["ct_channels"] == [True, False]
    assert sample["meta"]["steps"][0]["ct_channels"] == [True, False]
    # channel 0 is exactly what the CT channel alone gives with the CT scheme
    alone = replace(pre, ct_channels=None, normalization=pre.normalization[:1])
    ct_only = preprocess_case(case.images[0], alone, label=case.label, case_id=case.case_id)
    np.testing.assert_array_equal(image[0], ct_only["image"][0])
    scheme = pre.normalization[0]
    assert np.isclose(image[0].min(), (scheme.clip[0] - scheme.mean) / scheme.std, atol=1e-5)  # air clipped
    # channel 1 is z-scored from its own (PET) values, never mapped to HU
    record = sample["meta"]["steps"][-1]["channels"][1]
    assert record["scheme"] == "zscore" and 0.0 < record["mean"] < 50.0
    inside = image[1][image[1] != 0] if record["use_nonzero_mask"] else image[1]
    assert abs(float(inside.mean())) < 0.05 and abs(float(inside.std()) - 1.0) < 0.05
    # the cache stores both channels and says which is CT
    from medseg.data.cache import case_files, preprocess_case_to_cache

    cache_dir = ct_pet_json.parent / "cache"
    preprocess_case_to_cache(case, plan, cache_dir)
    files = case_files(cache_dir, case.case_id)
    record = json.loads(files["meta"].read_text(encoding="utf-8"))
    assert record["n_channels"] == 2 and record["ct"] is True and record["ct_channels"] == [True, False]
    np.testing.assert_array_equal(np.load(files["image"]), image)


def test_unnamed_channels_are_judged_by_their_values_and_channel_0_drives_the_crop(ct_pet_json):
    from medseg.data.transforms import preprocess_case

    spec = json.loads(ct_pet_json.read_text(encoding="utf-8"))
    for entry in spec["training"]:
        entry["image"] = entry["image"][::-1]  # PET first, then CT
    spec["channel_names"] = {"0": "pet", "1": ""}
    reversed_json = ct_pet_json.with_name("pet_first.json")
    reversed_json.write_text(json.dumps(spec), encoding="utf-8")
    manifest = load_manifest(reversed_json)
    plan = plan_dataset(manifest)
    pre = plan.preprocessing
    assert pre.ct is False and pre.ct_channels == [False, True]
    assert [n.scheme for n in pre.normalization] == ["zscore", "ct"]
    case = manifest.cases[0]
    sample = preprocess_case(list(case.images), pre, label=case.label, case_id=case.case_id)
    assert sample["image"].shape[0] == 2 and sample["meta"]["ct_channels"] == [False, True]
    assert sample["meta"]["ct"] is False  # channel 0 (PET) is not CT: crop to its non-zero region
    crop = sample["meta"]["steps"][2]
    assert crop["step"] == "crop" and crop["bbox"] != [[0, n] for n in crop["shape_in"]]


#: preprocessing_hash of the plan below, computed with the code before CT was decided per
#: channel (commit b9cb2c0): a single-channel plan, and so its caches, must not change.
LEGACY_SINGLE_CHANNEL_HASH = "68fd54e12929ab49"


def _legacy_single_channel_fingerprint() -> dict:
    cases = [
        {
            "case_id": f"c{i}",
            "shape": [96, 96, 40],
            "shape_after_crop": [80 + 2 * i, 70, 40],
            "spacing_mm": [3.8, 3.8, 5.0 + 0.5 * i],
            "permutation": [0, 1, 2],
            "spacing_mm_file_order": [3.8, 3.8, 5.0 + 0.5 * i],
            "orientation_original": "LPS",
            "ct": True,
            "label_voxels": {"0": 1000, "1": 100},
        }
        for i in range(3)
    ]
    return {
        "n_cases": 3,
        "ct": True,
        "cases": cases,
        "crop_size_fraction_median": 0.6,
        "intensity_foreground": [
            {
                "channel": 0,
                "name": "CT",
                "percentile_00_5": -950.5,
                "percentile_99_5": 80.25,
                "mean": -600.0,
                "std": 320.5,
            }
        ],
    }


def test_single_channel_ct_plan_and_its_hash_are_unchanged():
    from medseg.config.plan import preprocessing_hash

    class _Manifest:
        name, path, modality, labels, channel_names = (
            "legacy_ct",
            "dataset.json",
            "CT",
            {"background": 0, "lung": 1},
            {0: "CT"},
        )

    plan = make_plan(_legacy_single_channel_fingerprint(), _Manifest())
    assert plan.preprocessing.ct is True and "ct_channels" not in to_dict(plan.preprocessing)
    assert preprocessing_hash(plan) == LEGACY_SINGLE_CHANNEL_HASH


def test_old_plans_with_one_ct_flag_apply_it_to_every_channel(ct_pet_json):
    from medseg.config.plan import Preprocessing
    from medseg.data.transforms import preprocess_case

    def section(**keys):
        return from_dict(Preprocessing, {"target_spacing_mm": [1, 1, 1], "normalization": [{"scheme": "none"}], **keys})

    assert section(ct=True).load_ct() is True and section(ct=False).load_ct() is False and section().load_ct() is None
    assert section(ct=True, ct_channels=[True, False]).load_ct() == [True, False]
    with pytest.raises(ConfigError, match="ct_channels"):
        section(ct=True, ct_channels="yes")
    case = load_manifest(ct_pet_json).cases[0]
    ct_scheme = {"scheme": "ct", "clip": [-1000.0, 400.0], "mean": -500.0, "std": 400.0}
    old_plan = {
        "target_spacing_mm": [8.0, 8.0, 12.0],
        "crop": "auto",
        "ct": True,
        "normalization": [ct_scheme, ct_scheme],
    }
    twice = preprocess_case([case.images[0], case.images[0]], old_plan, case_id=case.case_id)
    assert twice["meta"]["ct_channels"] == [True, True]
    np.testing.assert_array_equal(twice["image"][0], twice["image"][1])
    with pytest.raises(ConfigError, match=f"{case.case_id}: 1 image channel"):
        preprocess_case(case.images[0], {**old_plan, "ct_channels": [True, False]}, case_id=case.case_id)


def test_plan_validation_and_channel_flags_from_names(tmp_path):
    from medseg.data.fingerprint import channel_ct_flags

    plan = {
        "preprocessing": {
            "orientation": "RAS",
            "target_spacing_mm": [1.0, 1.0, 1.0],
            "crop": "auto",
            "image_interpolation": "linear",
            "label_interpolation": "nearest",
            "normalization": [{"scheme": "zscore"}, {"scheme": "zscore"}],
        }
    }
    load_plan(plan)
    with pytest.raises(ConfigError, match="ct_channels"):
        load_plan({"preprocessing": {**plan["preprocessing"], "ct_channels": [1, 0]}})
    with pytest.raises(ConfigError, match="ct_channels has 3 entries"):
        load_plan({"preprocessing": {**plan["preprocessing"], "ct_channels": [True, False, False]}})

    class _Named:
        modality, channel_names = "CT", {0: "CT", 1: "pet", 2: "", 3: " ct "}

    assert channel_ct_flags(_Named(), 5) == [True, False, None, True, True]  # channel 4 is not named: like channel 0
    csv_manifest = load_manifest(write_dataset(tmp_path, n=1, ct=True))  # a CSV names only the dataset's modality
    assert (
        csv_manifest.modality == "CT"
        and channel_ct_flags(csv_manifest, 2) == [True, True]
        and channel_ct_flags(csv_manifest, 0) == []
    )


def test_plan_names_every_case_it_could_not_fingerprint(tmp_path):
    from medseg.errors import MedsegError

    manifest = load_manifest(write_dataset(tmp_path / "data", n=8, shapes=[(20, 20, 6)] * 8, spacings=[(1, 1, 2)] * 8))
    for entry in manifest.cases[:7]:
        entry.images[0].write_bytes(b"not a volume")
    with pytest.raises(MedsegError, match="7 case") as caught:
        dataset_fingerprint(manifest, workers=1, progress=False)
    message = str(caught.value)
    assert all(f"case_{i:02d}" in message for i in range(7)) and "and 2 more: case_05, case_06" in message


def test_validate_and_plan_follow_one_rule_for_label_declarations(tmp_path, capsys):
    from medseg.cli.main import main

    path = write_dataset(tmp_path / "data", n=3, shapes=[(20, 20, 6)] * 3, spacings=[(1, 1, 2)] * 3)
    text = path.read_text(encoding="utf-8")
    # no '# labels:' line: both commands take the values from the data and say how to name them
    path.write_text(text.replace("# labels: background=0, big=1, small=2\n", ""), encoding="utf-8")
    note = (
        "no '# labels:' line: label values [1, 2] are taken from the data and named label_<value>; to name them, "
        "add '# labels: background=0, label_1=1, label_2=2' on top of manifest.csv"
    )
    assert main(["validate", str(path)]) == 0
    assert note in capsys.readouterr().err
    assert main(["validate", str(path), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [note]  # the note reaches JSON readers too
    assert main(["plan", "--manifest", str(path), "--out", str(tmp_path / "plan.json"), "--quiet"]) == 0
    assert note in capsys.readouterr().err
    # declared labels that miss a value: both refuse, with the same words
    path.write_text(text.replace("big=1, small=2", "big=1"), encoding="utf-8")
    error = (
        "label values [2] are not declared (declared: [0, 1]); add them to the '# labels:' line or fix the label maps"
    )
    assert main(["validate", str(path)]) == 1
    assert error in capsys.readouterr().out
    assert main(["plan", "--manifest", str(path), "--out", str(tmp_path / "plan2.json"), "--quiet"]) == 1
    assert error in capsys.readouterr().err
