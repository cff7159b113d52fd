"""Challenge submissions: each format round-trips, each check catches its planted fault, zips are atomic.

Synthetic data are small numpy volumes with a non-trivial affine (LAS-like, anisotropic) made
here; real-data tests use the ACDC ground truth in ../shared/data/acdc_subset.
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path
from nibabel import orientations

from medseg.cli.main import main
from medseg.io import Volume, load_volume, save_volume
from medseg.submission import (
    SubmissionError,
    check_submission,
    discover_images,
    prepare_submission,
    rle_decode,
    sha256_file,
    write_submission_zip,
)

SHAPE = (20, 16, 5)
AFFINE = np.array([[-1.2, 0, 0, 14.0], [0, 0.8, 0, -7.5], [0, 0, 3.0, 21.0], [0, 0, 0, 1]])
CASES = ["case_000", "case_001", "case_002"]


# -- synthetic data ------------------------------------------------------------------------
def nested_labels(seed: int, shape=SHAPE) -> np.ndarray:
    """Three nested ellipsoids (labels 1 outer, 2, 3 inner) at a random centre."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(float)
    centre = [rng.uniform(0.4, 0.6) * (n - 1) for n in shape]
    radius = [0.35 * n + 1 for n in shape]
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius))
    labels = np.zeros(shape, np.uint8)
    labels[distance < 1.0] = 1
    labels[distance < 0.4] = 2
    labels[distance < 0.1] = 3
    return labels


def make_dataset(root: Path, cases=CASES, image_name="{}_0000.nii.gz", pred_name="{}.nii.gz", binary=False):
    """images/ and preds/ folders under ``root``; returns (images, preds, {case: labels})."""
    images, preds, truth = root / "images", root / "preds", {}
    rng = np.random.default_rng(0)
    for seed, case in enumerate(cases):
        labels = nested_labels(seed)
        if binary:
            labels = (labels > 0).astype(np.uint8)
        truth[case] = labels
        save_volume(Volume(rng.random(SHAPE).astype(np.float32), AFFINE), images / image_name.format(case))
        save_volume(Volume(labels, AFFINE), preds / pred_name.format(case), label=True)
    return images, preds, truth


def write_metrics_csv(path: Path, cases) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "label", "region", "metric", "value", "flag"])
        for index, case in enumerate(cases):
            writer.writerow([case, "1", "all", "dice", 0.9 + 0.01 * index, ""])
            writer.writerow(
                [case, "1", "all", "hd95_mm", "inf" if index == 0 else 2.0, "empty_prediction" if index == 0 else ""]
            )


def reoriented(volume: Volume, codes: str) -> Volume:
    """The same voxels in another axis order / direction (e.g. 'PLS'), with a consistent affine."""
    transform = orientations.ornt_transform(
        orientations.io_orientation(volume.affine), orientations.axcodes2ornt(tuple(codes))
    )
    array = orientations.apply_orientation(volume.array, transform)
    return Volume(np.ascontiguousarray(array), volume.affine @ orientations.inv_ornt_aff(transform, volume.shape))


def problem_lines(report) -> list[str]:
    return [line for line in report.lines() if line.startswith(("FAIL", "WARN"))]


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith((".tmp-", ".old-"))]


# -- round trips ---------------------------------------------------------------------------
def test_msd_round_trip_with_zip_and_manifest(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    out = tmp_path / "sub"
    result = prepare_submission(
        "nnunet", preds, images, out, zip_path=tmp_path / "sub.zip", command="medseg submit test"
    )
    assert result.ok, result.check.lines()
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.nii.gz" for c in CASES]
    for case in CASES:
        written = load_volume(out / f"{case}.nii.gz", label=True)
        np.testing.assert_array_equal(written.array, truth[case])
        np.testing.assert_allclose(written.affine, AFFINE, atol=1e-6)
        assert nib.load(out / f"{case}.nii.gz").get_data_dtype() == np.uint8
    with zipfile.ZipFile(result.zip_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == sorted([f"{c}.nii.gz" for c in CASES] + ["manifest.json"])
    assert manifest["command"] == "medseg submit test" and manifest["format"] == "msd"
    assert manifest["medseg_version"] and manifest["cases"] == CASES
    assert manifest["files"]["case_001.nii.gz"]["sha256"] == sha256_file(out / "case_001.nii.gz")
    assert check_submission("msd", result.zip_path, images).ok
    assert no_temporaries(tmp_path)


def test_acdc_round_trip_with_label_map(tmp_path):
    cases = ["patient101_ED", "patient101_ES", "patient102_ED", "patient102_ES"]
    images, preds, truth = make_dataset(tmp_path, cases, image_name="{}.nii.gz", pred_name="{}_pred.nii.gz")
    result = prepare_submission("acdc", preds, images, tmp_path / "acdc", label_map="1:3,3:1")
    assert result.ok, result.check.lines()
    swap = np.array([0, 3, 2, 1], np.uint8)
    for case in cases:
        written = load_volume(tmp_path / "acdc" / f"{case}.nii.gz", label=True)
        np.testing.assert_array_equal(written.array, swap[truth[case]])
    assert "labels remapped 1:3,3:1" in result.cases[0].notes


@pytest.mark.parametrize("per_class", [False, True])
def test_rle_csv_round_trip(tmp_path, per_class):
    images, preds, truth = make_dataset(tmp_path, binary=not per_class)
    out = tmp_path / "rle"
    result = prepare_submission(
        "rle-csv", preds, images, out, rle_per_class=per_class, allowed_labels="0-3" if per_class else None
    )
    assert result.ok, result.check.lines()
    with open(out / "submission.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == (["ImageId", "ClassId", "EncodedPixels"] if per_class else ["ImageId", "EncodedPixels"])
    assert len(rows) - 1 == len(CASES) * SHAPE[2] * (3 if per_class else 1)
    decoded = {case: np.zeros(SHAPE, np.uint8) for case in CASES}
    for row in rows[1:]:
        case, k = row[0].rsplit("_slice_", 1)
        label = int(row[1]) if per_class else 1
        decoded[case][:, :, int(k)][rle_decode(row[-1], SHAPE[:2]) == 1] = label
    for case in CASES:
        np.testing.assert_array_equal(decoded[case], truth[case])


def test_grand_challenge_round_trip(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    write_metrics_csv(tmp_path / "metrics.csv", CASES)
    out = tmp_path / "gc"
    result = prepare_submission(
        "gc", preds, images, out, metrics_csv=tmp_path / "metrics.csv", zip_path=tmp_path / "gc.zip"
    )
    assert result.ok, result.check.lines()
    for case in CASES:
        written = load_volume(out / "predictions" / f"{case}.mha", label=True)
        np.testing.assert_array_equal(written.array, truth[case])
        np.testing.assert_allclose(written.affine, AFFINE, atol=1e-9)
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["case"]["case_001"]["1"]["all"]["dice"] == pytest.approx(0.91)
    assert metrics["case"]["case_000"]["1"]["all"]["hd95_mm"] is None
    dice = metrics["aggregates"]["1"]["all"]["dice"]
    assert dice["mean"] == pytest.approx(0.91) and dice["std"] == pytest.approx(0.01) and dice["count"] == 3
    assert metrics["aggregates"]["1"]["all"]["hd95_mm"]["n_undefined"] == 1
    assert metrics["flags"] == [
        {"case": "case_000", "label": "1", "region": "all", "metric": "hd95_mm", "flag": "empty_prediction"}
    ]
    assert check_submission("grand-challenge", tmp_path / "gc.zip", images).ok


def test_grand_challenge_needs_metrics_for_every_case(tmp_path):
    images, preds, _ = make_dataset(tmp_path)
    write_metrics_csv(tmp_path / "metrics.csv", CASES[:2])
    result = prepare_submission(
        "grand-challenge", preds, images, tmp_path / "gc", metrics_csv=tmp_path, zip_path=tmp_path / "gc.zip"
    )
    assert not result.ok
    assert result.zip_path is None and not (tmp_path / "gc.zip").exists()  # no zip of a failing submission
    assert any("no metrics for 1 submitted case(s): case_002" in line for line in problem_lines(result.check))
    with pytest.raises(SubmissionError, match="metrics.csv"):
        prepare_submission("grand-challenge", preds, images, tmp_path / "gc2")


def test_prediction_saved_in_another_orientation_is_put_on_the_image_grid(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    flipped = reoriented(load_volume(preds / "case_001.nii.gz", label=True), "PLI")
    assert flipped.shape != SHAPE
    save_volume(flipped, preds / "case_001.nii.gz", label=True)
    result = prepare_submission("msd", preds, images, tmp_path / "sub")
    assert result.ok
    np.testing.assert_array_equal(load_volume(tmp_path / "sub" / "case_001.nii.gz").array, truth["case_001"])
    assert any("reoriented from PLI" in note for note in result.cases[1].notes)


def test_dtype_conversion_to_uint8(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    save_volume(Volume(truth["case_000"].astype(np.float32), AFFINE), preds / "case_000.nii.gz", label=False)
    assert nib.load(preds / "case_000.nii.gz").get_data_dtype() == np.float32
    result = prepare_submission("msd", preds, images, tmp_path / "sub")
    assert result.ok and nib.load(tmp_path / "sub" / "case_000.nii.gz").get_data_dtype() == np.uint8
    assert any("converted float32 to uint8" in note for note in result.cases[0].notes)


# -- prepare refuses what it cannot write, and writes nothing ------------------------------
@pytest.mark.parametrize(
    "fault, expected",
    [
        ("missing", "case_002: missing prediction"),
        ("extra", "case_999.nii.gz: prediction matches no image"),
        ("spacing", "case_001: "),
        ("label", "label values [7] are not allowed"),
    ],
)
def test_prepare_lists_problems_and_writes_nothing(tmp_path, fault, expected):
    images, preds, truth = make_dataset(tmp_path)
    if fault == "missing":
        (preds / "case_002.nii.gz").unlink()
    elif fault == "extra":
        save_volume(Volume(truth["case_000"], AFFINE), preds / "case_999.nii.gz", label=True)
    elif fault == "spacing":
        save_volume(Volume(truth["case_001"], np.diag([1.0, 1.0, 1.0, 1.0])), preds / "case_001.nii.gz", label=True)
    else:
        labels = truth["case_000"].copy()
        labels[0, 0, 0] = 7
        save_volume(Volume(labels, AFFINE), preds / "case_000.nii.gz", label=True)
    with pytest.raises(SubmissionError) as caught:
        prepare_submission("msd", preds, images, tmp_path / "sub", allowed_labels="0-3")
    assert any(expected in line for line in caught.value.problems), caught.value.problems
    if fault == "spacing":
        assert "not on the image's voxel grid: spacing" in str(caught.value)
    assert not (tmp_path / "sub").exists() and no_temporaries(tmp_path)


def test_binary_rle_refuses_several_labels(tmp_path):
    images, preds, _ = make_dataset(tmp_path)
    with pytest.raises(SubmissionError, match="--rle-per-class"):
        prepare_submission("rle-csv", preds, images, tmp_path / "rle")


def test_output_folder_is_not_overwritten_without_permission(tmp_path):
    images, preds, _ = make_dataset(tmp_path)
    out = tmp_path / "sub"
    out.mkdir()
    (out / "old.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(SubmissionError, match="--overwrite"):
        prepare_submission("msd", preds, images, out)
    assert prepare_submission("msd", preds, images, out, overwrite=True).ok
    assert not (out / "old.txt").exists() and no_temporaries(tmp_path)


# -- each check catches its planted fault ---------------------------------------------------
def plant(out: Path, fault: str, truth) -> tuple[str | None, str]:
    """Plant ``fault`` in an msd submission; return (case expected to fail, text of its problem line)."""
    target = out / "case_001.nii.gz"
    if fault == "missing case":
        target.unlink()
        return "case_001", "missing: expected case_001.nii.gz"
    if fault == "flipped axis":
        save_volume(reoriented(load_volume(target, label=True), "RAS"), target, label=True)
        return "case_001", "axes flipped or swapped: orientation RAS vs the image's LAS"
    if fault == "wrong label":
        labels = truth["case_001"].copy()
        labels[labels == 3] = 4
        save_volume(Volume(labels, AFFINE), target, label=True)
        return "case_001", "label values [4] not allowed (allowed: 0-3)"
    if fault == "wrong spacing":
        affine = AFFINE.copy()
        affine[2, 2] = 2.5
        save_volume(Volume(truth["case_001"], affine), target, label=True)
        return (
            "case_001",
            "voxel grid differs from the image case_001_0000.nii.gz: spacing: submission (1.2, 0.8, 2.5) mm, image "
            "(1.2, 0.8, 3) mm",
        )
    if fault == "extra file":
        (out / "notes.txt").write_text("x", encoding="utf-8")
        return None, "notes.txt: extra file, not part of the msd format"
    if fault == "extra case":
        save_volume(Volume(truth["case_001"], AFFINE), out / "case_999.nii.gz", label=True)
        return None, "case_999.nii.gz: extra case 'case_999'"
    if fault == "hidden file":
        (out / ".DS_Store").write_bytes(b"\0")
        return None, ".DS_Store: extra file"
    if fault == "float dtype":
        save_volume(Volume(truth["case_001"].astype(np.float32), AFFINE), target, label=False)
        return "case_001", "stored as float32; expected uint8 labels"
    if fault == "uncompressed":
        nib.save(nib.load(target), out / "case_001.nii")
        target.unlink()
        return None, "case_001.nii: extra file, not part of the msd format (expected case_001.nii.gz instead?)"
    if fault == "empty":
        save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), target, label=True)
        return "case_001", "all background"
    if fault == "not gzip":
        nib.save(nib.load(target), out / "tmp.nii")
        os.replace(out / "tmp.nii", target)
        return "case_001", "named .gz but not gzip-compressed"
    raise AssertionError(fault)


FAULTS = [
    "missing case",
    "flipped axis",
    "wrong label",
    "wrong spacing",
    "extra file",
    "extra case",
    "hidden file",
    "float dtype",
    "not gzip",
    "uncompressed",
]


@pytest.fixture(scope="module")
def msd_submission(tmp_path_factory):
    root = tmp_path_factory.mktemp("msd")
    images, preds, truth = make_dataset(root)
    prepare_submission("msd", preds, images, root / "clean")
    return root, images, truth


@pytest.mark.parametrize("fault", FAULTS)
def test_check_catches_planted_fault(msd_submission, tmp_path, fault):
    root, images, truth = msd_submission
    out = tmp_path / "sub"
    out.mkdir()
    for path in (root / "clean").iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    assert check_submission("msd", out, images, allowed_labels="0-3").ok
    case, text = plant(out, fault, truth)
    report = check_submission("msd", out, images, allowed_labels="0-3")
    assert not report.ok
    lines = problem_lines(report)
    prefix = f"FAIL {case}: " if case else "FAIL "
    assert any(line.startswith(prefix) and text in line for line in lines), lines
    if fault == "uncompressed":  # the case is also missing under its right name
        assert "FAIL case_001: missing: expected case_001.nii.gz" in lines
        case = "case_001"
    others = [c for c in CASES if c != case]
    assert all(f"PASS {c}" in report.lines() for c in others)


def test_empty_case_warns_and_all_empty_fails(msd_submission, tmp_path):
    root, images, _ = msd_submission
    out = tmp_path / "sub"
    out.mkdir()
    for case in CASES:
        save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), out / f"{case}.nii.gz", label=True)
    report = check_submission("msd", out, images)
    assert not report.ok
    assert "WARN case_000: case_000.nii.gz: all background (empty prediction)" in report.lines()
    assert "FAIL all 3 submitted case(s) are empty (all background)" in report.lines()
    assert "(1 with the submission as a whole)" in report.lines()[-1]  # why FAIL although every case passed
    (out / "case_000.nii.gz").unlink()
    prepare_like = load_volume(root / "clean" / "case_000.nii.gz", label=True)
    save_volume(prepare_like, out / "case_000.nii.gz", label=True)
    assert check_submission("msd", out, images).ok  # one empty case is only a warning


def only_labels(labels: np.ndarray, keep: set[int]) -> np.ndarray:
    """``labels`` with every value not in ``keep`` set to background."""
    return np.where(np.isin(labels, list(keep)), labels, 0).astype(np.uint8)


NEVER_PREDICTED = (
    "WARN label(s) {} allowed but absent from every one of the {} cases: a model that never predicts "
    "them (or a wrong --label-map)?"
)


def test_allowed_labels_absent_from_every_case_warn_once(msd_submission, tmp_path):
    _, images, truth = msd_submission
    out = tmp_path / "sub"
    for case in CASES:  # a model that only ever predicts label 3
        save_volume(Volume(only_labels(truth[case], {3}), AFFINE), out / f"{case}.nii.gz", label=True)
    report = check_submission("msd", out, images, allowed_labels="0-3")
    assert report.ok  # a warning, not a failure
    assert NEVER_PREDICTED.format("1, 2", 3) in report.lines()
    assert report.lines()[-1] == "PASS: 3/3 cases passed, 0 problem(s), 1 warning(s)"
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(
        json.dumps({"labels": {"background": 0, "liver": 1, "vessel": 2, "tumour": 3, "cyst": 4}}), encoding="utf-8"
    )
    lines = check_submission("msd", out, images, allowed_labels=dataset_json).lines()
    assert NEVER_PREDICTED.format("1 (liver), 2 (vessel), 4 (cyst)", 3) in lines
    # no warning: allowed labels unknown; a label missing from one case only; every label predicted somewhere
    assert not any("absent from every" in line for line in check_submission("msd", out, images).lines())
    save_volume(Volume(only_labels(truth["case_000"], {1, 2, 3}), AFFINE), out / "case_000.nii.gz", label=True)
    save_volume(Volume(only_labels(truth["case_001"], {2, 3}), AFFINE), out / "case_001.nii.gz", label=True)
    assert problem_lines(check_submission("msd", out, images, allowed_labels="0-3")) == []


def test_absent_labels_need_two_cases_and_some_foreground(tmp_path):
    images, _, truth = make_dataset(tmp_path, cases=["case_000"])
    out = tmp_path / "one"
    save_volume(Volume(only_labels(truth["case_000"], {3}), AFFINE), out / "case_000.nii.gz", label=True)
    report = check_submission("msd", out, images, allowed_labels="0-3")
    assert report.ok and problem_lines(report) == []  # one case lacking labels 1, 2 is not suspicious by itself
    images, _, _ = make_dataset(tmp_path / "two", cases=["case_000", "case_001"])
    out = tmp_path / "empty"
    for case in ("case_000", "case_001"):
        save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), out / f"{case}.nii.gz", label=True)
    lines = problem_lines(check_submission("msd", out, images, allowed_labels="0-3"))
    assert "FAIL all 2 submitted case(s) are empty (all background)" in lines
    assert not any("absent from every" in line for line in lines)  # already a failure


def test_acdc_submission_never_predicting_rv_and_myocardium_warns_with_names(tmp_path, capsys):
    cases = ["patient101_ED", "patient101_ES", "patient102_ED", "patient102_ES"]
    images, preds, truth = make_dataset(tmp_path, cases, image_name="{}.nii.gz")
    for case in cases:
        save_volume(Volume(only_labels(truth[case], {3}), AFFINE), preds / f"{case}.nii.gz", label=True)
    out = tmp_path / "acdc"
    code = main(["submit", "--format", "acdc", "--pred", str(preds), "--images", str(images), "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, printed
    assert "wrote patient101_ED: patient101_ED.nii.gz -> patient101_ED.nii.gz (labels [0, 3])" in printed
    expected = NEVER_PREDICTED.format("1 (right-ventricle cavity), 2 (left-ventricle myocardium)", 4)
    assert expected in printed
    assert main(["submit", "check", "--format", "acdc", str(out), "--images", str(images)]) == 0
    assert expected in capsys.readouterr().out.splitlines()


def test_rle_per_class_labels_absent_from_every_case_warn(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    for case in CASES:
        save_volume(Volume(only_labels(truth[case], {1, 3}), AFFINE), preds / f"{case}.nii.gz", label=True)
    result = prepare_submission("rle-csv", preds, images, tmp_path / "rle", rle_per_class=True, allowed_labels="0-3")
    assert result.ok
    assert problem_lines(result.check) == [NEVER_PREDICTED.format("2", 3)]


def test_check_of_zip_catches_tampering_and_wrapping_folder(msd_submission, tmp_path):
    root, images, _ = msd_submission
    zip_path = write_submission_zip(root / "clean", tmp_path / "sub.zip", "msd", "test")
    assert check_submission("msd", zip_path, images).ok
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(zip_path) as source, zipfile.ZipFile(tampered, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data + b"\0" if info.filename == "case_002.nii.gz" else data)
    lines = problem_lines(check_submission("msd", tampered, images))
    assert "FAIL case_002: case_002.nii.gz: SHA-256 differs from manifest.json (file changed after packaging)" in lines
    wrapped = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(wrapped, "w") as archive:
        for path in sorted((root / "clean").iterdir()):
            archive.write(path, f"clean/{path.name}")
    lines = problem_lines(check_submission("msd", wrapped, images))
    assert any("inside the folder clean/" in line for line in lines)
    assert any(line.startswith("FAIL case_000: missing") for line in lines)


def rewrite_zip(source_path: Path, target_path: Path, change) -> Path:
    """Copy a zip member by member; ``change(name, data)`` returns new bytes, or ``None`` to drop the member."""
    with zipfile.ZipFile(source_path) as source, zipfile.ZipFile(target_path, "w") as target:
        for info in source.infolist():
            data = change(info.filename, source.read(info))
            if data is not None:
                target.writestr(info, data)
    return target_path


def test_manifest_problems_fail_their_case_in_the_summary(msd_submission, tmp_path):
    root, images, _ = msd_submission
    zip_path = write_submission_zip(root / "clean", tmp_path / "sub.zip", "msd", "test")
    tampered = rewrite_zip(
        zip_path, tmp_path / "tampered.zip", lambda name, data: data + b"\0" if name == "case_001.nii.gz" else data
    )
    report = check_submission("msd", tampered, images)
    assert report.failed_cases() == ["case_001"] and not report.errors(None)
    assert (
        "FAIL case_001: case_001.nii.gz: SHA-256 differs from manifest.json (file changed after packaging)"
        in report.lines()
    )
    assert report.lines()[-1] == "FAIL: 2/3 cases passed, 1 problem(s), 0 warning(s)"

    dropped = rewrite_zip(
        zip_path, tmp_path / "dropped.zip", lambda name, data: None if name == "case_000.nii.gz" else data
    )
    report = check_submission("msd", dropped, images)
    assert report.failed_cases() == ["case_000"] and not report.errors(None)
    assert "FAIL case_000: case_000.nii.gz: listed in manifest.json but not in the zip" in report.lines()
    assert report.lines()[-1] == "FAIL: 2/3 cases passed, 2 problem(s), 0 warning(s)"  # and "missing: expected ..."
    with zipfile.ZipFile(dropped, "a") as archive:
        archive.writestr("notes.txt", "added after packaging")
    report = check_submission("msd", dropped, images)
    assert "FAIL notes.txt: in the zip but not listed in manifest.json" in report.lines()  # no case: the whole zip's
    assert report.failed_cases() == ["case_000"]


def test_zip_records_the_python_call_when_no_command_is_given(msd_submission, tmp_path):
    root, images, _ = msd_submission
    zip_path = write_submission_zip(root / "clean", tmp_path / "sub.zip", "msd", cases=CASES)
    with zipfile.ZipFile(zip_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    expected = f"medseg.submission.write_submission_zip({str(root / 'clean')!r}, {str(zip_path)!r}, 'msd')"
    assert manifest["command"] == expected and manifest["cases"] == CASES and manifest["format"] == "msd"
    assert check_submission("msd", zip_path, images).ok


def test_written_zip_folder_and_metrics_json_get_the_usual_permissions(tmp_path):
    from medseg.submission.metrics_json import write_metrics_json

    umask = os.umask(0o027)  # group may read, others nothing: neither the default 022 nor mkstemp's 077
    try:
        images, preds, _ = make_dataset(tmp_path)
        write_metrics_csv(tmp_path / "metrics.csv", CASES)
        out = tmp_path / "gc"
        result = prepare_submission(
            "gc", preds, images, out, metrics_csv=tmp_path / "metrics.csv", zip_path=tmp_path / "gc.zip"
        )
        write_metrics_json(tmp_path / "metrics.csv", tmp_path / "alone" / "metrics.json")
    finally:
        os.umask(umask)
    assert result.ok, result.check.lines()
    assert out.stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "gc.zip").stat().st_mode & 0o777 == 0o640
    assert (out / "metrics.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "alone" / "metrics.json").stat().st_mode & 0o777 == 0o640
    assert (out / "predictions" / "case_000.mha").stat().st_mode & 0o777 == 0o640


def test_zip_writing_is_atomic(msd_submission, tmp_path, monkeypatch):
    root, _, _ = msd_submission
    zip_path = tmp_path / "sub.zip"
    zip_path.write_bytes(b"previous zip")
    real_write, calls = zipfile.ZipFile.write, []

    def failing_write(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", failing_write)
    with pytest.raises(OSError, match="injected"):
        write_submission_zip(root / "clean", zip_path, "msd", "test")
    assert zip_path.read_bytes() == b"previous zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.zip"]
    monkeypatch.undo()
    write_submission_zip(root / "clean", zip_path, "msd", "test")
    assert zipfile.is_zipfile(zip_path) and no_temporaries(tmp_path)


def test_rle_check_catches_planted_faults(tmp_path):
    images, preds, _ = make_dataset(tmp_path)
    out = tmp_path / "rle"
    assert prepare_submission("rle-csv", preds, images, out, rle_per_class=True, allowed_labels="0-3").ok
    csv_path = out / "submission.csv"
    rows = csv_path.read_text(encoding="utf-8").splitlines()
    faults = {
        "missing slice": (
            [r for r in rows if not r.startswith("case_001_slice_002,")],
            "FAIL case_001: missing 3 of 15 rows",
        ),
        "extra case": (rows + ["case_999_slice_000,1,"], "FAIL submission.csv: extra case 'case_999'"),
        "bad run": (
            rows + ["case_002_slice_009,1,1 5"],
            "FAIL case_002: line 47: case_002_slice_009 is beyond the image's 5 slices",
        ),
        "overflow": (
            [r if not r.startswith("case_000_slice_000,1,") else "case_000_slice_000,1,300 100" for r in rows],
            "past the last pixel",
        ),
        "wrong class": (rows + ["case_000_slice_000,5,"], "ClassId '5' not allowed (allowed: 1-3)"),
    }
    for name, (new_rows, expected) in faults.items():
        csv_path.write_text("\n".join(new_rows) + "\n", encoding="utf-8")
        report = check_submission("rle-csv", out, images, allowed_labels="0-3")
        assert not report.ok, name
        assert any(expected in line for line in problem_lines(report)), (name, problem_lines(report))


def test_acdc_frames_named_by_info_cfg(tmp_path):
    images = tmp_path / "testing" / "patient101"
    for frame in (1, 5, 12):
        save_volume(Volume(np.zeros(SHAPE, np.float32), AFFINE), images / f"patient101_frame{frame:02d}.nii.gz")
    save_volume(Volume(np.zeros(SHAPE, np.float32), AFFINE), images / "patient101_frame01_gt.nii.gz")
    (images / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: NOR\n", encoding="utf-8")
    cases = discover_images(
        tmp_path / "testing", __import__("medseg.submission", fromlist=["get_format"]).get_format("acdc")
    )
    assert {c: p.image_path.name for c, p in cases.items()} == {
        "patient101_ED": "patient101_frame01.nii.gz",
        "patient101_ES": "patient101_frame12.nii.gz",
    }
    preds = tmp_path / "preds"
    for name in ("patient101_frame01", "patient101_frame12"):
        save_volume(Volume(nested_labels(1), AFFINE), preds / f"{name}.nii.gz", label=True)
    with pytest.raises(SubmissionError, match="must not lie inside the images folder"):
        prepare_submission("acdc", preds, tmp_path, tmp_path / "out")
    result = prepare_submission("acdc", preds, tmp_path / "testing", tmp_path / "out")
    assert result.ok and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "patient101_ED.nii.gz",
        "patient101_ES.nii.gz",
    ]


def test_other_channels_are_not_cases(tmp_path):
    images, _, _ = make_dataset(tmp_path)
    save_volume(Volume(np.zeros(SHAPE, np.float32), AFFINE), images / "case_000_0001.nii.gz")
    fmt = __import__("medseg.submission", fromlist=["get_format"]).get_format("msd")
    assert list(discover_images(images, fmt)) == CASES


# -- CLI ------------------------------------------------------------------------------------
def test_cli_prepare_zip_and_check(tmp_path, capsys):
    images, preds, truth = make_dataset(tmp_path)
    out = tmp_path / "sub"
    code = main(
        [
            "submit",
            "--format",
            "msd",
            "--pred",
            str(preds),
            "--images",
            str(images),
            "--out",
            str(out),
            "--zip",
            "--labels",
            "0-3",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "PASS: 3/3 cases passed" in printed and f"wrote {out}.zip" in printed
    with zipfile.ZipFile(f"{out}.zip") as archive:
        command = json.loads(archive.read("manifest.json"))["command"]
    assert command.startswith("medseg submit --format msd --pred ") and command.endswith("--labels 0-3 --zip")
    assert main(["submit", "check", "--format", "msd", f"{out}.zip", "--images", str(images)]) == 0
    assert "PASS case_002" in capsys.readouterr().out
    (out / "case_000.nii.gz").unlink()
    assert main(["submit", "check", "--format", "msd", str(out), "--images", str(images)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL case_000: missing: expected case_000.nii.gz" in printed and "FAIL: 2/3 cases passed" in printed


def test_cli_reports_prepare_problems_one_per_line(tmp_path, capsys):
    images, preds, _ = make_dataset(tmp_path)
    (preds / "case_001.nii.gz").unlink()
    code = main(
        ["submit", "--format", "acdc", "--pred", str(preds), "--images", str(images), "--out", str(tmp_path / "o")]
    )
    assert code == 1
    assert "no patientNNN_ED / patientNNN_ES images found" in capsys.readouterr().err
    code = main(
        ["submit", "--format", "msd", "--pred", str(preds), "--images", str(images), "--out", str(tmp_path / "o")]
    )
    assert code == 1
    assert "  case_001: missing prediction (image case_001_0000.nii.gz)" in capsys.readouterr().err.splitlines()


def test_cli_usage_errors_and_help(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["submit", "--format", "msd"])
    assert caught.value.code == 2
    assert "required: --pred, --images, --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = capsys.readouterr().out
    assert "medseg submit check --format FORMAT OUT_OR_ZIP --images DIR" in text and "column-major" in text
    with pytest.raises(SystemExit) as caught:
        main(["submit", "check", "--format", "msd", "x"])
    assert caught.value.code == 2


# -- phantoms -------------------------------------------------------------------------------
def ct_thorax_maker():
    """``medseg.phantoms.make_ct_thorax`` (written by the phantom work); skips when it is not there."""
    import importlib

    for module_name in ("medseg.phantoms", "medseg.phantoms.ct_thorax"):
        try:
            make = getattr(importlib.import_module(module_name), "make_ct_thorax", None)
        except ImportError:
            make = None
        if make is not None:
            return make
    pytest.skip("medseg.phantoms.make_ct_thorax is not available")


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory):
    """Two CT thorax phantoms (LPS grids, labels 1 left lung, 2 right lung, 3 heart); predictions saved as RAS."""
    make = ct_thorax_maker()
    root = tmp_path_factory.mktemp("phantoms")
    truth = {}
    for seed in (3, 4):
        image, label = make(seed, shape=(32, 28, 12))
        case = f"thorax_{seed:03d}"
        truth[case] = label.array.copy()
        save_volume(image, root / "images" / f"{case}_0000.nii.gz")
        save_volume(reoriented(label, "RAS"), root / "preds" / f"{case}.nii.gz", label=True)
    return root, truth


@pytest.mark.parametrize("fmt", ["msd", "rle-csv", "grand-challenge"])
def test_phantoms_round_trip_every_format(phantom_dataset, tmp_path, fmt):
    root, truth = phantom_dataset
    options = {}
    if fmt == "rle-csv":
        options = {"rle_per_class": True, "allowed_labels": "0-3"}
    if fmt == "grand-challenge":
        write_metrics_csv(tmp_path / "metrics.csv", list(truth))
        options = {"metrics_csv": tmp_path / "metrics.csv"}
    out = tmp_path / "sub"
    result = prepare_submission(fmt, root / "preds", root / "images", out, zip_path=tmp_path / "sub.zip", **options)
    assert result.ok, problem_lines(result.check)
    assert all(any(note.startswith("reoriented from RAS") for note in case.notes) for case in result.cases)
    for case, labels in truth.items():
        if fmt == "rle-csv":
            decoded = np.zeros_like(labels)
            with open(out / "submission.csv", newline="", encoding="utf-8") as handle:
                for row in list(csv.reader(handle))[1:]:
                    if row[0].startswith(case):
                        k = int(row[0].rsplit("_slice_", 1)[1])
                        decoded[:, :, k][rle_decode(row[2], labels.shape[:2]) == 1] = int(row[1])
        else:
            path = out / (f"{case}.nii.gz" if fmt == "msd" else f"predictions/{case}.mha")
            written = load_volume(path, label=True)
            assert written.orientation == "LPS"
            decoded = written.array
        np.testing.assert_array_equal(decoded, labels)
    assert check_submission(fmt, tmp_path / "sub.zip", root / "images").ok


def test_phantom_acdc_labels_round_trip(phantom_dataset, tmp_path):
    root, truth = phantom_dataset
    images, preds = tmp_path / "images", tmp_path / "preds"
    images.mkdir()
    preds.mkdir()
    for index, case in enumerate(truth):
        for phase in ("ED", "ES"):
            name = f"patient{index + 1:03d}_{phase}"
            (images / f"{name}.nii.gz").symlink_to(root / "images" / f"{case}_0000.nii.gz")
            (preds / f"{name}.nii.gz").symlink_to(root / "preds" / f"{case}.nii.gz")
    # phantom labels 1 left lung, 2 right lung, 3 heart -> pretend ACDC labels by a 3-cycle
    result = prepare_submission("acdc", preds, images, tmp_path / "acdc", label_map="1:2,2:3,3:1")
    assert result.ok, problem_lines(result.check)
    cycle = np.array([0, 2, 3, 1], np.uint8)
    written = load_volume(tmp_path / "acdc" / "patient002_ES.nii.gz", label=True)
    np.testing.assert_array_equal(written.array, cycle[truth["thorax_004"]])


# -- real data: ACDC ground truth -----------------------------------------------------------
ACDC_PATIENTS = ["patient001", "patient019", "patient087"]


def acdc_links(tmp_path: Path):
    """images/ and preds/ folders of symlinks to a few real ACDC patients' ED/ES images and ground truth."""
    acdc = shared_path("acdc_subset")
    images, preds = tmp_path / "acdc_images", tmp_path / "acdc_preds"
    images.mkdir()
    preds.mkdir()
    for patient in ACDC_PATIENTS:
        for phase in ("ED", "ES"):
            (images / f"{patient}_{phase}.nii.gz").symlink_to(acdc / patient / f"{patient}_{phase}.nii.gz")
            (preds / f"{patient}_{phase}_gt.nii.gz").symlink_to(acdc / patient / f"{patient}_{phase}_gt.nii.gz")
    return acdc, images, preds


@pytest.mark.shared_data
def test_acdc_ground_truth_round_trips_in_acdc_format(tmp_path):
    acdc = shared_path("acdc_subset")
    out = tmp_path / "acdc"
    result = prepare_submission("acdc", acdc, acdc, out, pred_pattern="*_gt.nii.gz", zip_path=tmp_path / "acdc.zip")
    assert result.ok, problem_lines(result.check)
    assert len(result.cases) == 40 and len(list(out.iterdir())) == 40
    for case in result.cases[::7]:
        patient = case.case_id.split("_")[0]
        written = load_volume(out / f"{case.case_id}.nii.gz", label=True)
        reference = load_volume(acdc / patient / f"{case.case_id}_gt.nii.gz", label=True)
        image = load_volume(acdc / patient / f"{case.case_id}.nii.gz")
        np.testing.assert_array_equal(written.array, reference.array)
        np.testing.assert_array_equal(written.affine, image.affine)
    report = check_submission("acdc", tmp_path / "acdc.zip", acdc)
    assert report.ok and len(report.cases) == 40


@pytest.mark.shared_data
@pytest.mark.parametrize("fault", ["wrong label", "flipped axis", "bad name", "empty case", "absent label"])
def test_acdc_check_catches_planted_faults_on_real_data(tmp_path, fault):
    acdc, images, preds = acdc_links(tmp_path)
    out = tmp_path / "acdc"
    assert prepare_submission("acdc", preds, images, out).ok
    target = out / "patient019_ES.nii.gz"
    volume = load_volume(target, label=True)
    if fault == "wrong label":
        volume.array[volume.array == 2] = 4
        save_volume(volume, target, label=True)
        expected = "FAIL patient019_ES: patient019_ES.nii.gz: label values [4] not allowed (allowed: 0-3)"
    elif fault == "empty case":
        volume.array[:] = 0
        save_volume(volume, target, label=True)
        expected = "FAIL patient019_ES: patient019_ES.nii.gz: all background (empty prediction)"
    elif fault == "absent label":
        volume.array[volume.array == 1] = 0
        save_volume(volume, target, label=True)
        report = check_submission("acdc", out, images)
        assert report.ok  # only a warning
        assert (
            "WARN patient019_ES: patient019_ES.nii.gz: labels [1] absent (every acdc structure is expected)"
            in report.lines()
        )
        return
    elif fault == "flipped axis":
        save_volume(reoriented(volume, "LAS"), target, label=True)
        expected = "axes flipped or swapped: orientation LAS vs the image's RAS"
    else:
        os.replace(target, out / "patient019_es.nii.gz")
        expected = (
            "FAIL patient019_es.nii.gz: name 'patient019_es' does not match the acdc pattern patient\\d{3}_(ED|ES) "
            "(expected patient019_ES.nii.gz instead?)"
        )
    lines = problem_lines(check_submission("acdc", out, images))
    assert any(expected in line for line in lines), lines


@pytest.mark.shared_data
@pytest.mark.parametrize("fmt", ["msd", "rle-csv", "grand-challenge"])
def test_acdc_ground_truth_round_trips_in_other_formats(tmp_path, fmt):
    acdc, images, preds = acdc_links(tmp_path)
    cases = [f"{p}_{phase}" for p in ACDC_PATIENTS for phase in ("ED", "ES")]
    truth = {c: load_volume(acdc / c.split("_")[0] / f"{c}_gt.nii.gz", label=True).array for c in cases}
    out = tmp_path / "sub"
    options = {"rle_per_class": True} if fmt == "rle-csv" else {}
    if fmt == "grand-challenge":
        write_metrics_csv(tmp_path / "metrics.csv", cases)
        options = {"metrics_csv": tmp_path / "metrics.csv"}
    result = prepare_submission(fmt, preds, images, out, zip_path=tmp_path / "sub.zip", **options)
    assert result.ok, problem_lines(result.check)
    if fmt == "rle-csv":
        decoded = {c: np.zeros_like(truth[c]) for c in cases}
        with open(out / "submission.csv", newline="", encoding="utf-8") as handle:
            for row in list(csv.reader(handle))[1:]:
                case, k = row[0].rsplit("_slice_", 1)
                decoded[case][:, :, int(k)][rle_decode(row[2], truth[case].shape[:2]) == 1] = int(row[1])
    else:
        path = "{}.nii.gz" if fmt == "msd" else "predictions/{}.mha"
        decoded = {c: load_volume(out / path.format(c), label=True).array for c in cases}
    for case in cases:
        np.testing.assert_array_equal(decoded[case], truth[case])
    assert check_submission(fmt, tmp_path / "sub.zip", images).ok


# -- no stale or misleading output (issue 15) ------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "not a zip"])
def test_an_unreadable_zip_fails_before_any_case_line(msd_submission, tmp_path, damage):
    root, images, _ = msd_submission
    zip_path = write_submission_zip(root / "clean", tmp_path / "sub.zip", "msd", "test")
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK not really a zip")
    report = check_submission("msd", zip_path, images)
    lines = report.lines()
    assert not report.ok and report.failed_cases() == CASES
    assert not any(line.startswith("PASS") for line in lines)
    assert lines[1].startswith("FAIL sub.zip: not a readable zip file")
    assert lines[-1] == "FAIL: the submission could not be read; 0/3 cases checked"


def test_a_failing_resubmission_removes_the_earlier_zip(tmp_path):
    images, preds, truth = make_dataset(tmp_path)
    out, zip_path = tmp_path / "sub", tmp_path / "sub.zip"
    assert prepare_submission("msd", preds, images, out, zip_path=zip_path).zip_path == zip_path
    with pytest.raises(SubmissionError, match="--overwrite"):  # an existing zip is not replaced silently
        prepare_submission("msd", preds, images, tmp_path / "other", zip_path=zip_path)
    save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), preds / "case_000.nii.gz", label=True)
    save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), preds / "case_001.nii.gz", label=True)
    save_volume(Volume(np.zeros(SHAPE, np.uint8), AFFINE), preds / "case_002.nii.gz", label=True)
    result = prepare_submission("msd", preds, images, out, zip_path=zip_path, overwrite=True)
    assert not result.ok and result.zip_path is None
    assert not zip_path.exists()  # the passing zip of the first run would not match the failing folder
    assert result.check.target == str(out) and no_temporaries(tmp_path)


def test_an_interrupted_check_leaves_no_unchecked_folder(tmp_path, monkeypatch):
    from medseg.submission import prepare

    images, preds, _ = make_dataset(tmp_path)
    out = tmp_path / "sub"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare, "check_submission", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_submission("msd", preds, images, out)
    assert not out.exists() and no_temporaries(tmp_path)


def test_cli_submit_shows_progress_and_check_speaks_json(tmp_path, capsys):
    images, preds, _ = make_dataset(tmp_path)
    out = tmp_path / "sub"
    assert main(["submit", "--format", "msd", "--pred", str(preds), "--images", str(images), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "write: 100%" in captured.err and "check: 100%" in captured.err
    assert f"wrote {CASES[0]}:" in captured.out
    quiet = ["submit", "--format", "msd", "--pred", str(preds), "--images", str(images), "--out", str(out)]
    assert main([*quiet, "--overwrite", "--quiet"]) == 0
    captured = capsys.readouterr()  # --quiet: no bars, no line per case; the summary and the check stay
    assert captured.err == "" and f"wrote {CASES[0]}:" not in captured.out and "wrote msd submission" in captured.out
    assert main(["submit", "check", "--format", "msd", str(out), "--images", str(images), "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] and [c["case"] for c in report["cases"]] == CASES and captured.err == ""
    (out / "case_001.nii.gz").unlink()
    assert main(["submit", "check", "--format", "msd", str(out), "--images", str(images), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = [c for c in report["cases"] if not c["passed"]]
    assert [c["case"] for c in failed] == ["case_001"] and "missing" in failed[0]["problems"][0]["message"]
