"""Dataset manifests: reading MSD/nnU-Net dataset.json and CSV, and `medseg validate` on broken inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, shared_path

from medseg.cli.main import main
from medseg.data.manifest import CaseEntry, load_manifest, validate_manifest, write_csv_manifest
from medseg.errors import ConfigError
from medseg.io import Volume, save_volume

AFFINE = np.diag([1.5, 1.5, 4.0, 1.0])


def _make_case(root: Path, case_id: str, affine=AFFINE, labels=(0, 1, 2), image_name=None) -> None:
    rng = np.random.default_rng(abs(hash(case_id)) % 2**32)
    image = rng.normal(100, 20, size=(12, 10, 5)).astype(np.float32)
    label = np.zeros((12, 10, 5), np.uint8)
    for k, value in enumerate(labels[1:]):
        label[2 + 3 * k : 4 + 3 * k, 3:7, 1:4] = value
    save_volume(Volume(image, AFFINE), root / "imagesTr" / (image_name or f"{case_id}_0000.nii.gz"))
    save_volume(Volume(label, affine), root / "labelsTr" / f"{case_id}.nii.gz", label=True)


@pytest.fixture()
def nnunet_dataset(tmp_path) -> Path:
    for case_id in ("c01", "c02", "c03"):
        _make_case(tmp_path, case_id)
    spec = {
        "name": "toy",
        "channel_names": {"0": "MRI"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": 3,
        "file_ending": ".nii.gz",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    return tmp_path


def test_nnunet_v2_dataset_json(nnunet_dataset):
    manifest = load_manifest(nnunet_dataset)  # a folder means its dataset.json
    assert [c.case_id for c in manifest] == ["c01", "c02", "c03"]
    assert manifest.labels == {"background": 0, "organ": 1, "lesion": 2}
    assert manifest.modality == "MRI" and manifest.label_names[2] == "lesion"
    assert manifest.case("c02").image == nnunet_dataset / "imagesTr" / "c02_0000.nii.gz"
    assert validate_manifest(manifest) == []


def test_msd_dataset_json_with_training_list(tmp_path):
    _make_case(tmp_path, "liver_1", image_name="liver_1.nii.gz")
    spec = {
        "name": "Task03",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "numTraining": 1,
        "training": [{"image": "./imagesTr/liver_1.nii.gz", "label": "./labelsTr/liver_1.nii.gz"}],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    manifest = load_manifest(tmp_path / "dataset.json")
    assert manifest.labels == {"background": 0, "liver": 1, "cancer": 2}
    assert manifest.cases[0].case_id == "liver_1" and manifest.modality == "CT"
    assert manifest.cases[0].label == (tmp_path / "labelsTr" / "liver_1.nii.gz").resolve()


def test_csv_manifest_with_metadata(tmp_path):
    _make_case(tmp_path, "a")
    _make_case(tmp_path, "b")
    (tmp_path / "m.csv").write_text(
        "# name: toy csv\n# modality: CT\n# labels: background=0, organ=1, lesion=2\n"
        "case_id,image,label,split,fold,group\n"
        "a,imagesTr/a_0000.nii.gz,labelsTr/a.nii.gz,train,0,p1\n"
        "b,imagesTr/b_0000.nii.gz,,test,,p2\n",
        encoding="utf-8",
    )
    manifest = load_manifest(tmp_path / "m.csv")
    a, b = manifest.cases
    assert manifest.name == "toy csv" and manifest.modality == "CT"
    assert (a.split, a.fold, a.group) == ("train", 0, "p1")
    assert b.label is None and b.fold is None and b.split == "test"
    assert validate_manifest(manifest) == []


def test_written_csv_manifest_reads_back_to_the_same_cases(tmp_path):
    _make_case(tmp_path, "a")
    _make_case(tmp_path, "b")
    elsewhere = tmp_path / "out" / "x"
    cases = [
        CaseEntry(
            "a", (tmp_path / "imagesTr" / "a_0000.nii.gz",), tmp_path / "labelsTr" / "a.nii.gz", "val", 1, "p,1", (2,)
        ),
        CaseEntry("b", (tmp_path / "imagesTr" / "b_0000.nii.gz",)),
    ]
    labels = {"background": 0, "organ": 1, "lesion": 2}
    for target in (tmp_path / "m.csv", elsewhere / "m.csv"):  # relative paths below the CSV, absolute above
        manifest = load_manifest(write_csv_manifest(target, cases, labels, name="toy", modality="CT"))
        assert manifest.cases == cases and manifest.labels == labels
        assert (manifest.name, manifest.modality) == ("toy", "CT")
    assert "imagesTr/a_0000.nii.gz" in (tmp_path / "m.csv").read_text(encoding="utf-8")
    assert str(tmp_path / "imagesTr") in (elsewhere / "m.csv").read_text(encoding="utf-8")
    two_channels = [CaseEntry("c", (tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"))]
    assert load_manifest(write_csv_manifest(tmp_path / "c.csv", two_channels, labels)).cases == two_channels
    assert "c_0000.nii.gz;c_0001.nii.gz" in (tmp_path / "c.csv").read_text(encoding="utf-8")


def test_written_csv_manifest_keeps_awkward_but_valid_values(tmp_path):
    cases = [
        CaseEntry('a,"b" #1', (tmp_path / "a b.nii.gz",), tmp_path / "lab;el.nii.gz", "test", 0, "p;1 # x"),
        CaseEntry("é", (tmp_path / "e.nii.gz",), None, None, None, None),
    ]
    labels = {"background": 0, "rv cavity: left": 1, "-1x": 2}
    manifest = load_manifest(write_csv_manifest(tmp_path / "m.csv", cases, labels, name="toy: v2 # 1", modality="mri"))
    assert manifest.cases == cases and manifest.labels == labels
    assert (manifest.name, manifest.modality) == ("toy: v2 # 1", "MRI")


def _case(case_id="a", images=("a_0000.nii.gz",), **fields) -> CaseEntry:
    return CaseEntry(case_id, tuple(Path("/data") / image for image in images), **fields)


LABELS = {"background": 0, "organ": 1}


@pytest.mark.parametrize(
    "cases, labels, header, message",
    [
        ([_case(images=("a;b_0000.nii.gz",))], LABELS, {}, "case 'a': image path '/data/a;b_0000.nii.gz' contains ';'"),
        ([_case()], {"background": 0, "rv,cavity": 1}, {}, "label 'rv,cavity' contains ',' or '='"),
        ([_case()], {"background": 0, "organ=lesion": 1}, {}, "label 'organ=lesion' contains ',' or '='"),
        ([_case("#a")], LABELS, {}, "case '#a': case id starts with '#'"),
        ([_case()], LABELS, {"name": "toy\n# labels: x=1"}, "name 'toy\\n# labels: x=1' contains a line break"),
        ([_case()], LABELS, {"modality": "CT\r"}, "modality 'CT\\r' contains a line break"),
        ([_case()], LABELS, {"name": "toy\u2028v2"}, "name 'toy\\u2028v2' contains a line break"),
        ([_case("a\nb")], LABELS, {}, "case id contains a line break"),
        ([_case(" a")], LABELS, {}, "case id has leading or trailing whitespace"),
        ([_case("a ")], LABELS, {}, "case id has leading or trailing whitespace"),
        ([_case("")], LABELS, {}, "case id is empty"),
        ([_case(images=("a_0000.nii.gz ",))], LABELS, {}, "path '/data/a_0000.nii.gz ' has leading or trailing"),
        ([_case(group=" p1")], LABELS, {}, "group ' p1' has leading or trailing whitespace"),
        ([_case(group="")], LABELS, {}, "group '' is empty"),
        ([_case(split="validation")], LABELS, {}, "split must be train, val, test or None"),
        ([_case(fold=-1)], LABELS, {}, "fold must be a non-negative integer or None, got -1"),
        ([_case(fold=True)], LABELS, {}, "fold must be a non-negative integer or None, got True"),
        ([_case(images=())], LABELS, {}, "case 'a': no image file"),
        (
            [_case(), _case("b", ("b_0.nii.gz", "b_1.nii.gz"))],
            LABELS,
            {},
            "case 'b' has 2 image channel(s), but case 'a' has 1",
        ),
        ([_case(), _case()], LABELS, {}, "case id 'a' appears more than once"),
        ([_case()], {"background": 0, "1": 2}, {}, "label '1' looks like an integer"),
        ([_case()], {"background": 0, " organ": 1}, {}, "label ' organ' has leading or trailing whitespace"),
        ([_case()], {"background": 0, "organ": 1, "lesion": 1}, {}, "label value 1 is used twice"),
        ([_case()], {"background": 0, "organ": 1.5}, {}, "label 'organ' has value '1.5', which is not an integer"),
        ([_case()], {"organ": 1}, {}, "lack value 0 (background), which the reader would add"),
        ([_case()], {}, {}, "no labels given"),
    ],
)
def test_csv_writer_refuses_what_would_not_read_back(tmp_path, cases, labels, header, message):
    with pytest.raises(ConfigError, match=f"m.csv: .*{re.escape(message)}"):
        write_csv_manifest(tmp_path / "m.csv", cases, labels, **header)
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("case_id,image,mask\na,x.nii.gz,y.nii.gz\n", "unknown CSV column"),
        ("case_id,label\na,y.nii.gz\n", "missing image"),
        ("case_id,image\na,x.nii.gz\na,z.nii.gz\n", "appears more than once"),
        ("case_id,image,fold\na,x.nii.gz,one\n", "fold must be a non-negative integer"),
        ("case_id,image,fold\na,x.nii.gz,\u00b2\n", "fold must be a non-negative integer"),
        ("# labels: organ\ncase_id,image\na,x.nii.gz\n", "must be name=value"),
        ("case_id,image\n  ,x.nii.gz\n", "line 2 lacks case_id or image"),
        ("# name: toy\ncase_id,image\na,x.nii.gz\nb,;\n", "line 4 (case 'b'): image cell ';' names no file"),
        ("case_id,image\na, ; \n", "line 2 (case 'a'): image cell ' ; ' names no file"),
        (
            "case_id,image\na,x.nii.gz\n\n# b has two\nb,y_0.nii.gz;y_1.nii.gz\n",
            "line 5 (case 'b'): 2 image channel(s), but case 'a' has 1; every case needs the same channels",
        ),
        (
            "# labels: background=0, lung=1\ncase_id,image,unannotated\na,x.nii.gz,heart\n",
            "line 3 (case 'a'): unannotated names unknown label(s) heart; labels: lung",
        ),
        (
            "# labels: background=0, lung=1\ncase_id,image,unannotated\na,x.nii.gz,background\n",
            "background cannot be unannotated",
        ),
    ],
)
def test_bad_csv_manifests(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"bad.csv: .*{re.escape(message)}"):
        load_manifest(tmp_path / "bad.csv")


def test_bad_dataset_json(nnunet_dataset):
    spec = json.loads((nnunet_dataset / "dataset.json").read_text(encoding="utf-8"))
    spec["numTraining"] = 5
    (nnunet_dataset / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ConfigError, match="numTraining is 5 but 3"):
        load_manifest(nnunet_dataset)
    spec["labels"] = {"background": 0, "organ": "one"}
    (nnunet_dataset / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ConfigError, match="label 'organ' has value 'one'"):
        load_manifest(nnunet_dataset)


def test_validate_reports_each_broken_input(nnunet_dataset, capsys):
    root = nnunet_dataset
    (root / "labelsTr" / "c01.nii.gz").unlink()  # missing file
    shifted = AFFINE.copy()
    shifted[0, 3] = 3.0
    _make_case(root, "c02", affine=shifted)  # label on another grid
    _make_case(root, "c03", labels=(0, 1, 7))  # undeclared label value 7
    _make_case(root, "c04")
    raw = (root / "imagesTr" / "c04_0000.nii.gz").read_bytes()
    (root / "imagesTr" / "c04_0000.nii.gz").write_bytes(raw[: len(raw) // 2])  # corrupt gzip
    spec = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    spec["numTraining"] = 4
    (root / "dataset.json").write_text(json.dumps(spec), encoding="utf-8")

    problems = [str(p) for p in validate_manifest(load_manifest(root))]
    assert len(problems) == 4
    assert any(p.startswith("c01:") and "file not found" in p for p in problems)
    assert any(p.startswith("c02:") and "not on the image's voxel grid: origin" in p for p in problems)
    assert any(p.startswith("c03:") and "label values [7] are not declared" in p for p in problems)
    assert any(p.startswith("c04:") and "c04_0000.nii.gz" in p and "truncated" in p for p in problems)

    assert main(["validate", str(root)]) == 1
    out = capsys.readouterr().out
    assert "4 problem(s): FAILED" in out and out.count("\n") == 5


def test_partial_annotations_are_read_and_checked_against_the_label_maps(tmp_path):
    _make_case(tmp_path, "a", labels=(0, 1))  # marks organ only
    _make_case(tmp_path, "b", labels=(0, 1, 2))
    (tmp_path / "m.csv").write_text(
        "# labels: background=0, organ=1, lesion=2\n"
        "case_id,image,label,unannotated\n"
        "a,imagesTr/a_0000.nii.gz,labelsTr/a.nii.gz,lesion\n"
        "b,imagesTr/b_0000.nii.gz,labelsTr/b.nii.gz, lesion ; organ\n",
        encoding="utf-8",
    )
    manifest = load_manifest(tmp_path / "m.csv")
    assert manifest.unannotated == {"a": (2,), "b": (1, 2)}
    problems = validate_manifest(manifest)  # b marks both labels it says are not annotated
    assert [(p.case_id, p.message) for p in problems] == [
        ("b", "label value(s) [1, 2] are listed as unannotated but marked in the label map")
    ]


def test_shipped_real_data_manifests_validate(shared_data):
    for name, n_cases in (("acdc_subset.csv", 40), ("sunnybrook_lv.csv", 10)):
        manifest = load_manifest(PROJECT_ROOT / "data_manifests" / name)
        assert len(manifest) == n_cases
        assert validate_manifest(manifest) == [], name
    nsclc = load_manifest(PROJECT_ROOT / "data_manifests" / "nsclc_lung_ct.csv")
    assert nsclc.unannotated == {"LUNG1-001": (5, 6), "LUNG1-004": (5,)}  # heart and esophagus not contoured
    acdc = load_manifest(PROJECT_ROOT / "data_manifests" / "acdc_subset.csv")
    assert acdc.labels == {"background": 0, "rv_cavity": 1, "lv_myocardium": 2, "lv_cavity": 3}
    assert acdc.case("patient001_ES").group == "patient001"
    assert acdc.case("patient001_ES").label == shared_path("acdc_subset/patient001/patient001_ES_gt.nii.gz").resolve()


def test_phantom_manifest_generates_once(tmp_path):
    (tmp_path / "ph.yaml").write_text(
        "name: tiny\nphantom: {kind: cardiac-mri, n: 2, seed: 3}\nroot: generated\n", encoding="utf-8"
    )
    manifest = load_manifest(tmp_path / "ph.yaml")
    assert manifest.name == "tiny" and len(manifest) == 2
    assert manifest.labels == {"background": 0, "rv_cavity": 1, "lv_myocardium": 2, "lv_cavity": 3}
    assert validate_manifest(manifest) == []
    stamp = (tmp_path / "generated" / "dataset.json").stat().st_mtime_ns
    load_manifest(tmp_path / "ph.yaml")  # second use reads, does not regenerate
    assert (tmp_path / "generated" / "dataset.json").stat().st_mtime_ns == stamp
    (tmp_path / "bad.yaml").write_text("phantom: {kind: cardiac-mri, n: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml: a phantom manifest needs"):
        load_manifest(tmp_path / "bad.yaml")


def test_shipped_phantom_manifests_are_well_formed():
    import yaml

    for name in ("phantom_ct_thorax.yaml", "phantom_cardiac_mri.yaml"):
        spec = yaml.safe_load((PROJECT_ROOT / "data_manifests" / name).read_text(encoding="utf-8"))
        assert set(spec) == {"name", "phantom", "root"} and spec["phantom"]["kind"] in ("ct-thorax", "cardiac-mri")


def test_a_row_with_more_cells_than_the_header_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text(
        "case_id,image\na,x.nii.gz,y.nii.gz\n", encoding="utf-8"
    )  # a label without its column
    with pytest.raises(ConfigError, match=r"line 2 \(case 'a'\): 3 cells but the header has 2 columns"):
        load_manifest(tmp_path / "m.csv")


def test_nan_and_inf_in_an_image_are_found_by_validate_inspect_and_plan(nnunet_dataset, capsys):
    from medseg.io import load_volume

    path = nnunet_dataset / "imagesTr" / "c02_0000.nii.gz"
    clean_plan = nnunet_dataset / "clean_plan.json"
    assert main(["plan", "--manifest", str(nnunet_dataset), "--out", str(clean_plan), "--quiet"]) == 0
    image = load_volume(path)
    array = image.array.astype(np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 0] = np.inf
    save_volume(Volume(array, image.affine), path)
    problems = [str(p) for p in validate_manifest(load_manifest(nnunet_dataset))]
    assert problems == [f"c02: {path}: 3 NaN and 1 inf voxel(s): training and statistics need finite values"]

    assert main(["inspect", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "not finite   3 NaN and 1 inf voxel(s)" in printed and "nan" not in printed.split("intensity")[1].lower()
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["nonfinite"] == {"nan": 3, "inf": 1, "-inf": 0}
    finite = array[np.isfinite(array)]
    assert info["intensity"]["max"] == pytest.approx(float(finite.max()))

    out = nnunet_dataset / "plan.json"
    assert main(["plan", "--manifest", str(nnunet_dataset), "--out", str(out), "--quiet"]) == 1
    assert "c02_0000.nii.gz: 3 NaN and 1 inf voxel(s); planning needs finite intensities" in capsys.readouterr().err
    assert not out.exists()
    # a plan made before the image went bad: preprocessing refuses the case too, naming the file
    cache = nnunet_dataset / "cache"
    command = ["preprocess", "--manifest", str(nnunet_dataset), "--plan", str(clean_plan), "--out", str(cache)]
    assert main([*command, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"case c02 failed: {path}: the image holds NaN or inf (" in err and "failed.json" in err
    assert "c02" in json.loads((cache / "failed.json").read_text(encoding="utf-8"))


def test_validate_json(nnunet_dataset, capsys):
    assert main(["validate", str(nnunet_dataset), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] and document["n_cases"] == 3 and document["problems"] == []
    (nnunet_dataset / "labelsTr" / "c01.nii.gz").unlink()
    assert main(["validate", str(nnunet_dataset), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert problems == [
        {"case": "c01", "path": str(nnunet_dataset / "labelsTr" / "c01.nii.gz"), "message": "file not found"}
    ]
