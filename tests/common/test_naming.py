"""The one naming rule (medseg.common.naming), and proof that every command pairs the same files by it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.common.naming import (
    CaseName,
    case_key,
    group_image_files,
    match_files,
    parse_case_name,
    volume_files,
    volume_stem,
)
from medseg.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lung_001_0000.nii.gz", CaseName("lung_001", None, 0)),
        ("lung_001_mask.nii.gz", CaseName("lung_001", "_mask", None)),
        ("lung_001_MASK.NII.GZ", CaseName("lung_001", "_mask", None)),
        ("case_00000_segmentation.nii.gz", CaseName("case_00000", "_segmentation", None)),
        ("case_00000.nii.gz", CaseName("case_00000", None, None)),
        ("patient001_ED_gt.nii.gz", CaseName("patient001_ED", "_gt", None)),
        ("x_labels.nrrd", CaseName("x", "_labels", None)),
        ("x_0000_pred.mha", CaseName("x", "_pred", 0)),
        ("amos_0001.nii.gz", CaseName("amos_0001", None, None)),  # a further channel only beside amos_0000
        ("lung_001_0001.nii", CaseName("lung_001_0001", None, None)),
        ("_gt.nii.gz", CaseName("_gt", None, None)),  # a role suffix alone is a name, not a role
        ("LIDC-IDRI-0001", CaseName("LIDC-IDRI-0001", None, None)),  # a DICOM folder
        ("IM0001.dcm", CaseName("IM0001", None, None)),
    ],
)
def test_parse_case_name(name, expected):
    assert parse_case_name(name) == expected
    assert case_key(name) == expected.case_id


def test_volume_stem():
    assert volume_stem("a/b/case.NII.GZ") == "case"
    assert volume_stem(Path("x.mhd")) == "x"
    assert volume_stem("notes.txt") == "notes.txt"


def test_volume_files_skips_hidden_and_filters(tmp_path):
    names = ("a.nii.gz", "b_pred.nii.gz", ".hidden.nii.gz", "notes.txt", "sub/c.mha", ".ipynb_checkpoints/a.nii.gz")
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in volume_files(tmp_path)]
    assert found == ["a.nii.gz", "b_pred.nii.gz", "sub/c.mha"]
    assert [p.name for p in volume_files(tmp_path, "*_pred*")] == ["b_pred.nii.gz"]
    assert [p.name for p in volume_files(tmp_path, recursive=False)] == ["a.nii.gz", "b_pred.nii.gz"]
    assert volume_files(tmp_path / "sub", "*.nii.gz") == []
    with pytest.raises(FileNotFoundError):
        volume_files(tmp_path / "nowhere")


def test_group_image_files_channels_and_label_maps():
    folder = Path("/data/images")
    names = [
        "b_0001.nii.gz",
        "b_0000.nii.gz",
        "b_0002.nii.gz",
        "a.nii.gz",
        "a_gt.nii.gz",
        "d_0001.nii.gz",
        "e_0000.mha",
    ]
    groups = group_image_files(folder / n for n in names)
    assert [(g.case_id, [p.name for p in g.channels]) for g in groups] == [
        ("a", ["a.nii.gz"]),
        ("b", ["b_0000.nii.gz", "b_0001.nii.gz", "b_0002.nii.gz"]),
        ("d_0001", ["d_0001.nii.gz"]),
        ("e", ["e_0000.mha"]),
    ]
    assert group_image_files([]) == []
    # the same case in two folders, or x beside x_0000: two groups with one id, for the caller to refuse
    assert [g.case_id for g in group_image_files([folder / "x.nii.gz", folder / "x_0000.nii.gz"])] == ["x", "x"]
    with pytest.raises(InvalidArgumentError, match="no _0001"):
        group_image_files([folder / "c_0000.nii.gz", folder / "c_0002.nii.gz"])


def test_match_files():
    files = [
        Path(n)
        for n in (
            "lung_001_mask.nii.gz",
            "lung_002.nii.gz",
            "lung_002_pred.nii.gz",
            "stray.nii.gz",
            "patient001_frame01.nii.gz",
        )
    ]
    expected = ["lung_001", "lung_002", "lung_003", "patient001_ED"]
    found = match_files(expected, files, {"patient001_frame01": "patient001_ED"})
    assert found.files == {"lung_001": Path("lung_001_mask.nii.gz"), "patient001_ED": Path("patient001_frame01.nii.gz")}
    assert found.duplicates == {"lung_002": [Path("lung_002.nii.gz"), Path("lung_002_pred.nii.gz")]}
    assert found.unmatched == [Path("stray.nii.gz")]
    # ids that do not come from file names (a CSV manifest) are keyed by the same rule
    assert match_files(["case_0000"], [Path("case_0000.nii.gz")]).files == {"case_0000": Path("case_0000.nii.gz")}
    with pytest.raises(InvalidArgumentError, match="same case key"):
        match_files(["x", "x_gt"], files)


# -- every command pairs the same files ---------------------------------------------------------------------------
PAIRS = {  # case id -> (image files, reference, prediction): names that the old per-command rules paired differently
    "lung_001": (["lung_001_0000.nii.gz", "lung_001_0001.nii.gz"], "lung_001.nii.gz", "lung_001_mask.nii.gz"),
    "case_00000": (["case_00000_0000.nii.gz"], "case_00000_seg.nii.gz", "case_00000_segmentation.nii.gz"),
    "amos_0001": (["amos_0001.nii.gz"], "amos_0001_labels.nii.gz", "amos_0001_0000.nii.gz"),
}


@pytest.fixture()
def one_folder(tmp_path):
    """images/ (a two-channel case, and a label map that is no image), refs/, preds/ and a dataset.json over them."""
    import json

    import numpy as np

    from medseg.io import Volume, save_volume

    affine = np.diag([1.5, 1.5, 4.0, 1.0])
    labels = np.zeros((12, 10, 4), np.uint8)
    labels[3:9, 2:8, 1:3] = 1
    training = []
    for images, reference, prediction in PAIRS.values():
        for image in images:
            save_volume(Volume(np.full(labels.shape, 100.0, np.float32), affine), tmp_path / "images" / image)
        save_volume(Volume(labels, affine), tmp_path / "refs" / reference, label=True)
        save_volume(Volume(labels, affine), tmp_path / "preds" / prediction, label=True)
        training.append({"image": [f"images/{name}" for name in images], "label": f"refs/{reference}"})
    save_volume(Volume(labels, affine), tmp_path / "images" / "amos_0001_gt.nii.gz", label=True)  # ACDC-style neighbour
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "name": "pairs",
                "labels": {"background": 0, "organ": 1},
                "channel_names": {"0": "CT", "1": "CT"},
                "numTraining": len(training),
                "training": training,
            }
        ),
        encoding="utf-8",
    )
    return tmp_path


def test_every_command_pairs_the_same_files(one_folder, capsys):
    """predict's inputs, the manifest, evaluate (folder and manifest), submit and submit check: one pairing."""
    import csv

    from medseg.cli.main import main
    from medseg.data.manifest import load_manifest
    from medseg.evaluation import match_cases
    from medseg.inference.inputs import discover_inputs
    from medseg.submission import discover_images, get_format, match_predictions, prepare_submission

    root = one_folder
    expected_predictions = {case: prediction for case, (_, _, prediction) in PAIRS.items()}

    inputs = discover_inputs(root / "images")  # predict writes <case_id>.nii.gz for each
    assert {c.case_id: [p.name for p in c.channels] for c in inputs} == {c: pair[0] for c, pair in PAIRS.items()}
    assert {c.case_id for c in load_manifest(root / "dataset.json")} == set(PAIRS)

    by_folder = match_cases(root / "preds", root / "refs")
    manifest = load_manifest(root / "dataset.json")
    by_manifest = match_cases(root / "preds", references={c.case_id: c.label for c in manifest})
    images = discover_images(root / "images", get_format("msd"))
    by_submit = match_predictions(root / "preds", images)
    assert by_submit.problems == []
    for found in (
        {p.case_id: p.prediction.name for p in by_folder.pairs},
        {p.case_id: p.prediction.name for p in by_manifest.pairs},
        {case: path.name for case, path in by_submit.files.items()},
    ):
        assert found == expected_predictions

    # the commands themselves
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(root / "preds"),
                "--ref",
                str(root / "refs"),
                "--out",
                str(root / "eval"),
                "--quiet",
                "--no-report",
                "--metrics",
                "dice",
            ]
        )
        == 0
    )
    with open(root / "eval" / "metrics.csv", newline="", encoding="utf-8") as handle:
        assert {row["case"]: float(row["value"]) for row in csv.DictReader(handle)} == dict.fromkeys(PAIRS, 1.0)
    assert (
        main(
            [
                "submit",
                "--format",
                "msd",
                "--pred",
                str(root / "preds"),
                "--images",
                str(root / "images"),
                "--out",
                str(root / "sub"),
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (root / "sub").iterdir()) == sorted(f"{case}.nii.gz" for case in PAIRS)
    assert main(["submit", "check", "--format", "msd", str(root / "sub"), "--images", str(root / "images")]) == 0
    prepared = prepare_submission("msd", root / "preds", root / "images", root / "sub2")
    assert {c.case_id: c.prediction.name for c in prepared.cases} == expected_predictions
    capsys.readouterr()
