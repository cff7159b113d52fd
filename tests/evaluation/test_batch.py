"""Folder evaluation: matching, per-case checks, outputs, CLI, compare, nearest-neighbour resampling."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from scipy import ndimage

from medseg.cli.main import main
from medseg.errors import InvalidArgumentError
from medseg.evaluation import case_key, compare, evaluate_folder, match_cases, summarise
from medseg.evaluation.resampling import resample_nearest
from medseg.io import Volume, load_volume, save_volume

AFFINE = np.diag([0.8, 0.8, 4.0, 1.0])


def _label_map(seed: int, shape=(24, 24, 8)) -> np.ndarray:
    array = np.zeros(shape, np.uint8)
    centre = 12 + seed % 3
    array[centre - 6 : centre + 6, 6:18, 1:7] = 1
    array[centre - 3 : centre + 3, 9:15, 2:6] = 2
    return array


def _write(path: Path, array: np.ndarray, affine=AFFINE) -> Path:
    save_volume(Volume(array, affine), path, label=True)
    return path


@pytest.fixture()
def folders(tmp_path):
    """Three cases with reference suffix _gt, prediction suffix _pred / none / _0000."""
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for i, pred_name in enumerate(["case_0_pred.nii.gz", "case_1.nii.gz", "case_2_0000.nii.gz"]):
        reference = _label_map(i)
        _write(ref / f"case_{i}_gt.nii.gz", reference)
        prediction = reference.copy()
        prediction[ndimage.binary_dilation(reference == 2) & (reference == 1)] = 2
        _write(pred / pred_name, prediction)
    return ref, pred


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_case_keys_and_matching(folders, tmp_path):
    assert case_key("patient001_ED_gt.nii.gz") == "patient001_ED"
    assert case_key("case_00000_segmentation.nii.gz") == "case_00000"
    assert case_key("case_00000.nii.gz") == "case_00000"
    ref, pred = folders
    _write(pred / "stray.nii.gz", _label_map(0))
    matching = match_cases(pred, ref)
    assert [p.case_id for p in matching.pairs] == ["case_0", "case_1", "case_2"]
    assert all(p.prediction is not None for p in matching.pairs)
    assert [p.name for p in matching.unmatched_predictions] == ["stray.nii.gz"]
    with pytest.raises(InvalidArgumentError):
        match_cases(pred, tmp_path / "nowhere")


def test_acdc_layout_takes_gt_as_reference_and_image_beside_it(tmp_path):
    ref = tmp_path / "acdc" / "patient001"
    _write(ref / "patient001_ED_gt.nii.gz", _label_map(0))
    save_volume(Volume(np.zeros((24, 24, 8), np.float32), AFFINE), ref / "patient001_ED.nii.gz")
    _write(tmp_path / "pred" / "patient001_ED.nii.gz", _label_map(0))
    pair = match_cases(tmp_path / "pred", tmp_path / "acdc").pairs[0]
    assert pair.reference.name == "patient001_ED_gt.nii.gz" and pair.image.name == "patient001_ED.nii.gz"


def test_folder_run_writes_every_output(folders, tmp_path):
    ref, pred = folders
    out = tmp_path / "out"
    frame = evaluate_folder(pred, ref, out, labels={1: "organ", 2: "lesion"}, regions=True)
    assert set(frame["case"]) == {"case_0", "case_1", "case_2"}
    rows = _rows(out / "metrics.csv")
    assert list(rows[0]) == ["case", "label", "region", "metric", "value", "flag"]
    assert {r["label"] for r in rows} == {"organ", "lesion"}
    assert {r["region"] for r in rows} == {"all", "base", "middle", "apex"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    dice = summary["metrics"]["lesion"]["all"]["dice"]
    assert dice["n"] == 3 and dice["n_flagged"] == 0 and 0 < dice["mean"] < 1
    assert set(dice) == {"mean", "std", "median", "min", "max", "n", "n_flagged", "n_nan"}
    assert "dice" in summary["foreground_mean"]["all"]
    assert summary["base_end_chosen"]["organ"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Summary" in report and "figures/boxplots.png" in report and "figures/worst_cases.png" in report
    for name in ("boxplots.png", "volumes.png", "worst_cases.png"):
        assert (out / "figures" / name).stat().st_size > 1000
    regions = _rows(out / "regions.csv")
    assert len(regions) == 6 and regions[0]["base_end"] in ("first", "last")


def test_values_match_evaluate_case_and_summaries_count_flags(folders, tmp_path):
    ref, pred = folders
    _write(pred / "case_1.nii.gz", np.zeros((24, 24, 8), np.uint8))  # a missed case
    frame = evaluate_folder(pred, ref, tmp_path / "out", labels=[1, 2], report=False, empty_policy="nan")
    hd = frame[(frame.case == "case_1") & (frame.metric == "hd") & (frame.region == "all")]
    assert hd["value"].isna().all() and set(hd["flag"]) == {"pred_empty"}
    table = summarise(frame)
    row = table[(table.label == "1") & (table.region == "all") & (table.metric == "hd")].iloc[0]
    assert row["n"] == 2 and row["n_flagged"] == 1 and row["n_nan"] == 1
    assert "foreground" in set(table["label"])


def test_geometry_mismatch_fails_the_case_and_the_run_goes_on(folders, tmp_path):
    ref, pred = folders
    shifted = AFFINE.copy()
    shifted[0, 3] = 5.0
    _write(pred / "case_1.nii.gz", _label_map(1), shifted)
    out = tmp_path / "out"
    code = main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--quiet"])
    assert code == 1
    rows = _rows(out / "metrics.csv")
    errors = [r for r in rows if r["metric"] == "error"]
    assert [r["case"] for r in errors] == ["case_1"]
    assert "origin: reference (0, 0, 0) mm, prediction (5, 0, 0) mm" in errors[0]["flag"]  # which side is which
    assert {r["case"] for r in rows if r["metric"] == "dice"} == {"case_0", "case_2"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["n_failed"] == 1 and "case_1" in (out / "report.md").read_text(encoding="utf-8")
    # resampling on request: the shifted grid is resampled by nearest neighbour
    code = main(
        [
            "evaluate",
            "--pred",
            str(pred),
            "--ref",
            str(ref),
            "--out",
            str(out),
            "--quiet",
            "--overwrite",
            "--resample-pred-to-ref",
            "--no-report",
        ]
    )
    assert code == 0
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["resampled_cases"] == ["case_1"]


def test_missing_prediction_is_a_failure(folders, tmp_path):
    ref, pred = folders
    (pred / "case_2_0000.nii.gz").unlink()
    frame = evaluate_folder(pred, ref, None, report=False)
    error = frame[frame.metric == "error"]
    assert list(error["case"]) == ["case_2"] and "no prediction" in error["flag"].iloc[0]


def test_labels_from_dataset_json_and_absent_labels_filled(folders, tmp_path):
    ref, pred = folders
    (ref / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2, "cyst": 3}}), encoding="utf-8"
    )
    frame = evaluate_folder(pred, ref, None, report=False, metrics="dice")
    assert set(frame["label"]) == {"liver", "tumour", "cyst"}
    assert set(frame[frame.label == "cyst"]["flag"]) == {"both_empty"}
    # no label list at all: labels found in any case are reported for every case
    (ref / "dataset.json").unlink()
    other = _label_map(0)
    other[0, 0, 0] = 5
    _write(ref / "case_0_gt.nii.gz", other)
    frame = evaluate_folder(pred, ref, None, report=False, metrics="dice")
    five = frame[frame.label == "5"]
    assert len(five) == 3 and set(five[five.case != "case_0"]["flag"]) == {"both_empty"}


def test_manifest_gives_references_label_names_and_images(folders, tmp_path):
    ref, pred = folders
    images = tmp_path / "images"
    training = []
    for i in range(3):
        save_volume(
            Volume(np.random.default_rng(i).random((24, 24, 8)).astype(np.float32), AFFINE),
            images / f"case_{i}_0000.nii.gz",
        )
        training.append({"image": f"images/case_{i}_0000.nii.gz", "label": f"ref/case_{i}_gt.nii.gz"})
    manifest = tmp_path / "dataset.json"
    manifest.write_text(
        json.dumps({"labels": {"background": 0, "organ": 1, "lesion": 2}, "training": training}), encoding="utf-8"
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--manifest",
                str(manifest),
                "--out",
                str(out),
                "--quiet",
                "--labels",
                "lesion",
            ]
        )
        == 0
    )
    rows = _rows(out / "metrics.csv")
    assert {r["label"] for r in rows} == {"lesion"} and {r["case"] for r in rows} == {"case_0", "case_1", "case_2"}
    assert (out / "figures" / "worst_cases.png").exists()


def test_labels_a_manifest_leaves_unannotated_are_not_scored(folders, tmp_path):
    """case_1's reference does not contour the lesion although the prediction finds one: with the
    manifest's unannotated column that pair is left out instead of scoring Dice 0."""
    ref, pred = folders
    reference = _label_map(1)
    reference[reference == 2] = 1  # lesion not contoured (counted in the organ, as a clinic might)
    _write(ref / "case_1_gt.nii.gz", reference)
    rows = ["case_id,image,label,unannotated"] + [
        f"case_{i},ref/case_{i}_gt.nii.gz,ref/case_{i}_gt.nii.gz,{'lesion' if i == 1 else ''}" for i in range(3)
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("# labels: background=0, organ=1, lesion=2\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred), "--manifest", str(manifest), "--out", str(out), "--quiet"]) == 0
    scored = {(r["case"], r["label"]) for r in _rows(out / "metrics.csv") if r["metric"] == "dice"}
    assert ("case_1", "lesion") not in scored
    assert {("case_0", "lesion"), ("case_2", "lesion"), ("case_1", "organ")} <= scored
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["options"]["unannotated"] == {"case_1": [2]}
    unscored = evaluate_folder(pred, references={f"case_{i}": ref / f"case_{i}_gt.nii.gz" for i in range(3)})
    lesion_1 = unscored[(unscored.case == "case_1") & (unscored.label == "2") & (unscored.metric == "dice")]
    assert lesion_1.value.iloc[0] == 0.0  # without the manifest's word, the uncontoured lesion is a false positive
    found = evaluate_folder(
        pred, references={f"case_{i}": ref / f"case_{i}_gt.nii.gz" for i in range(3)}, unannotated={"case_1": [2]}
    )
    assert set(found[found.case == "case_1"].label) == {"1"}


def test_workers_and_cli_compare(folders, tmp_path):
    ref, pred = folders
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--ref",
                str(ref),
                "--out",
                str(a),
                "--workers",
                "2",
                "--quiet",
                "--no-report",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(ref),
                "--ref",
                str(ref),
                "--out",
                str(b),
                "--quiet",
                "--no-report",
                "--ref-pattern",
                "*_gt.nii.gz",
            ]
        )
        == 0
    )
    serial = evaluate_folder(pred, ref, None, report=False)
    parallel = _rows(a / "metrics.csv")
    assert len(parallel) == len(serial)
    assert [float(r["value"]) for r in parallel] == pytest.approx(list(serial["value"]), nan_ok=True)
    out = tmp_path / "cmp"
    assert main(["evaluate", "compare", str(a / "metrics.csv"), str(b / "metrics.csv"), "--out", str(out)]) == 0
    table = _rows(out / "comparison.csv")
    dice = next(r for r in table if r["label"] == "2" and r["region"] == "all" and r["metric"] == "dice")
    assert float(dice["mean_b"]) == 1.0 and float(dice["mean_diff"]) > 0 and int(dice["n"]) == 3
    assert (out / "bland_altman.png").exists() and "Wilcoxon" in (out / "comparison.md").read_text(encoding="utf-8")
    frame = compare(a / "metrics.csv", b / "metrics.csv")
    assert {"wilcoxon_p", "ttest_p"} <= set(frame.columns)


def test_cli_errors_are_config_errors(tmp_path, capsys):
    assert main(["evaluate", "--pred", str(tmp_path)]) == 1
    assert "need --pred" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path),
                "--ref",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
                "--labels",
                "organ",
            ]
        )
        == 1
    )


# -- resampling ------------------------------------------------------------------------------------


def test_resample_nearest_onto_a_shifted_grid():
    array = np.zeros((10, 10, 4), np.uint8)
    array[2:5, 3:6, 1:3] = 1
    source = Volume(array, np.diag([1.0, 1.0, 2.0, 1.0]))
    target_affine = np.diag([1.0, 1.0, 2.0, 1.0])
    target_affine[0, 3] = 1.0  # target voxel i sits at source voxel i + 1
    target = Volume(np.zeros((10, 10, 4), np.uint8), target_affine)
    moved = resample_nearest(source, target)
    assert np.array_equal(moved.array[1:4], array[2:5]) and moved.array.sum() == array.sum()


@pytest.mark.shared_data
def test_acdc_ground_truth_against_perturbed_copies(tmp_path):
    root = shared_path("acdc_subset")
    pred = tmp_path / "pred"
    gts = sorted(root.glob("patient00*/*_gt.nii.gz"))  # patients 001, 002, 008: ED and ES
    for path in gts:
        volume = load_volume(path, label=True)
        array = volume.array.copy()
        array[ndimage.binary_dilation(array == 3) & (array == 2)] = 3
        save_volume(volume.with_array(array), pred / path.name.replace("_gt", ""), label=True)
    out = tmp_path / "out"
    code = main(["evaluate", "--pred", str(pred), "--ref", str(root), "--out", str(out), "--labels", "rv=1,myo=2,lv=3",
                 "--regions", "--quiet", "--ref-pattern", "patient00*"])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["n_evaluated"] == len(gts) == 6 and summary["unmatched_predictions"] == []
    assert summary["metrics"]["rv"]["all"]["dice"]["mean"] == 1.0
    assert summary["metrics"]["lv"]["all"]["rvd"]["mean"] > 0 > summary["metrics"]["myo"]["all"]["rvd"]["mean"]
    assert not math.isnan(summary["metrics"]["myo"]["apex"]["hd95"]["mean"])
    assert (out / "figures" / "worst_cases.png").exists()


def test_a_second_run_into_the_same_folder_is_refused_or_replaces_every_earlier_output(folders, tmp_path):
    ref, pred = folders
    out = tmp_path / "out"
    evaluate_folder(pred, ref, out, labels=[1, 2], regions=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert (out / "regions.csv").exists() and (out / "figures").is_dir()
    with pytest.raises(ValueError, match="earlier evaluation .*regions.csv"):
        evaluate_folder(pred, ref, out, labels=[1, 2], report=False)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--quiet"]) == 1
    # without --regions and --no-report: no regions.csv, report.md or figures of the first run may stay
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--ref",
                str(ref),
                "--out",
                str(out),
                "--overwrite",
                "--no-report",
                "--quiet",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "notes.txt", "summary.json"]


def test_an_interrupted_run_says_how_many_cases_were_matched(folders, tmp_path, monkeypatch):
    from medseg.evaluation import batch

    ref, pred = folders
    real = batch.evaluate_pair
    calls = []

    def interrupt_on_the_second_case(pair, settings):
        calls.append(pair.case_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pair, settings)

    monkeypatch.setattr(batch, "evaluate_pair", interrupt_on_the_second_case)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        evaluate_folder(pred, ref, out, labels=[1, 2])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] and summary["n_matched"] == 3 and summary["n_cases"] == 1
    assert (
        "- cases: 3 matched, 1 done (1 evaluated, 0 failed) -- **interrupted: partial results, 2 case(s) not "
        "evaluated**" in (out / "report.md").read_text(encoding="utf-8")
    )


def test_a_mistyped_label_is_flagged_not_scored_as_perfect(folders, tmp_path, capsys):
    ref, pred = folders
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--ref",
                str(ref),
                "--out",
                str(out),
                "--labels",
                "organ=1,typo=9",
                "--quiet",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "label(s) 9 (typo) occur in no reference and no prediction" in err
    assert "value 2" not in err  # the references hold 2 as well: left out of --labels on purpose
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["label_warnings"]) == 1 and summary["metrics"]["typo"]["all"]["dice"]["n_flagged"] == 3
    assert "**warning**: label(s) 9 (typo)" in (out / "report.md").read_text(encoding="utf-8")
    # the right labels: no warning
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(pred),
                "--ref",
                str(ref),
                "--out",
                str(tmp_path / "ok"),
                "--labels",
                "organ=1,lesion=2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "warning" not in capsys.readouterr().err


def test_cli_prints_region_means_and_the_report_explains_the_ranges(folders, tmp_path, capsys):
    ref, pred = folders
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out), "--regions", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "label",
        "mean",
        "Dice",
        "mean",
        "HD95",
        "mm",
        "base",
        "Dice",
        "middle",
        "Dice",
        "apex",
        "Dice",
        "cases",
        "(flagged)",
    ]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    base = summary["metrics"]["1"]["base"]["dice"]["mean"]
    assert lines[1].split()[:1] == ["1"] and float(lines[1].split()[3]) == pytest.approx(base, abs=5e-4)
    assert "`0-4` is slices 0, 1, 2 and 3" in (out / "report.md").read_text(encoding="utf-8")
