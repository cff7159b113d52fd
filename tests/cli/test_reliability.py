"""No stale or misleading output, no traceback (issue 15, second pass): corrupt zips of every kind, the zip's
location checked before work, progress that follows the work, subset labels, stale comparison figures and
hints that name options the command has."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, shared_path

from medseg.cli.main import build_parser, main
from medseg.io import Volume, save_volume

AFFINE = np.diag([1.5, 1.5, 4.0, 1.0])
SHAPE = (16, 14, 6)
CASES = ["case_000", "case_001", "case_002"]


def _labels(seed: int) -> np.ndarray:
    """Nested boxes: 1 outer, 2 inner, 3 core; shifted by ``seed``."""
    array = np.zeros(SHAPE, np.uint8)
    s = seed % 3
    array[2 + s : 13, 2:12, 1:5] = 1
    array[4 + s : 10, 4:10, 2:4] = 2
    array[6 + s : 8, 6:8, 2:3] = 3
    return array


@pytest.fixture()
def dataset(tmp_path):
    """images/ (float), labels/ (references) and preds/ (copies of the references)."""
    rng = np.random.default_rng(0)
    for seed, case in enumerate(CASES):
        save_volume(Volume(rng.random(SHAPE).astype(np.float32), AFFINE), tmp_path / "images" / f"{case}_0000.nii.gz")
        for folder in ("labels", "preds"):
            save_volume(Volume(_labels(seed), AFFINE), tmp_path / folder / f"{case}.nii.gz", label=True)
    return tmp_path / "images", tmp_path / "labels", tmp_path / "preds"


# -- item 3: a zip that cannot be read fails as a whole, whatever is wrong with it ----------
def _damage(path: Path, how: str) -> None:
    """Damage the first member of a deflated zip: its data, its compression method or its encryption flag."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        first = archive.infolist()[0]
    central = data.index(b"PK\x01\x02")  # the first central-directory entry describes the first member
    if how == "corrupt deflate data":
        start = first.header_offset + 30 + len(first.filename.encode()) + len(first.extra)
        data[start] = 0xFF  # block type 3 does not exist: zlib refuses the stream
    elif how == "unsupported compression":
        data[central + 10 : central + 12] = struct.pack("<H", 99)  # AES, which zipfile cannot read
    else:  # encrypted
        data[central + 8 : central + 10] = struct.pack("<H", first.flag_bits | 0x1)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["corrupt deflate data", "unsupported compression", "encrypted"])
def test_a_zip_that_zipfile_cannot_decode_fails_before_any_case_line(dataset, tmp_path, capsys, how):
    images, _, preds = dataset
    zip_path = tmp_path / "sub.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for case in CASES:
            archive.write(preds / f"{case}.nii.gz", f"{case}.nii.gz")
    _damage(zip_path, how)
    assert main(["submit", "check", "--format", "msd", str(zip_path), "--images", str(images), "--quiet"]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].startswith("FAIL sub.zip: not a readable zip file (") and len(lines) == 3, captured
    assert lines[2] == "FAIL: the submission could not be read; 0/3 cases checked"
    assert "Traceback" not in captured.err


# -- item 6: the zip's location is checked before the submission is written ------------------
def test_submit_refuses_an_unwritable_zip_location_before_writing(dataset, tmp_path, capsys, monkeypatch):
    import medseg.submission

    def never(*args, **kwargs):
        raise AssertionError("the submission was written although its zip cannot be")

    monkeypatch.setattr(medseg.submission, "prepare_submission", never)
    images, _, preds = dataset
    blocker = tmp_path / "results"
    blocker.write_text("not a folder", encoding="utf-8")
    command = [
        "submit",
        "--format",
        "msd",
        "--pred",
        str(preds),
        "--images",
        str(images),
        "--out",
        str(tmp_path / "sub"),
        "--zip",
        str(blocker / "sub.zip"),
        "--quiet",
    ]
    assert main(command) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"medseg submit: error: {blocker}: a file is in the way (a folder is needed here)"
    ]
    assert not (tmp_path / "sub").exists()


# -- expected by users: the check's progress bar advances as cases are checked --------------
def test_the_check_progress_bar_follows_the_cases_checked(dataset, monkeypatch):
    from medseg.submission import check, check_submission

    images, _, preds = dataset
    events = []

    def recording_bar(iterable=None, **kwargs):
        for item in iterable:
            events.append("tick")
            yield item

    real_check_volume = check._check_volume

    def recording_check(*args, **kwargs):
        events.append("check")
        return real_check_volume(*args, **kwargs)

    monkeypatch.setattr(check, "progress_bar", recording_bar)
    monkeypatch.setattr(check, "_check_volume", recording_check)
    assert check_submission("msd", preds, images, progress=True).ok
    assert events == ["tick", "check"] * len(CASES)  # not three ticks first and the checking after


# -- --quiet hides evaluate's progress bar too -------------------------------------------------
def test_evaluate_quiet_shows_no_progress_bar(dataset, tmp_path, capsys):
    _, labels, preds = dataset
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(preds),
                "--ref",
                str(labels),
                "--out",
                str(tmp_path / "ev"),
                "--no-report",
                "--quiet",
            ]
        )
        == 0
    )
    assert "case/s" not in capsys.readouterr().err


# -- item 11: scoring a subset of the labels is not a mistake ----------------------------------
def test_scoring_some_labels_warns_only_about_values_the_reference_lacks(dataset, tmp_path, capsys):
    _, labels, preds = dataset
    command = ["evaluate", "--pred", str(preds), "--ref", str(labels), "--no-report", "--quiet"]
    assert main([*command, "--out", str(tmp_path / "lv"), "--labels", "1"]) == 0
    assert "warning" not in capsys.readouterr().err  # 2 and 3 are in the references: left out on purpose
    stray = _labels(1)
    stray[0, 0, 0] = 7  # a value no reference holds, e.g. a label mapping gone wrong
    save_volume(Volume(stray, AFFINE), preds / "case_001.nii.gz", label=True)
    assert main([*command, "--out", str(tmp_path / "stray"), "--labels", "1"]) == 0
    err = capsys.readouterr().err
    assert "predictions hold value 7, which is neither a scored label nor in the reference (1 case(s): case_001)" in err
    assert "value 2" not in err and "value 3" not in err


# -- item 1: evaluate compare leaves no figure of an earlier comparison ------------------------
def test_compare_removes_the_figure_of_an_earlier_comparison(dataset, tmp_path):
    from medseg.evaluation import evaluate_folder
    from medseg.evaluation.comparison import write_comparison

    _, labels, preds = dataset
    for name, metrics in (("dice", "dice"), ("volumes", "volume_ref_ml,volume_pred_ml")):
        evaluate_folder(preds, labels, tmp_path / name, metrics=metrics, report=False)
    out = tmp_path / "a_vs_b"
    assert "figure" in write_comparison(tmp_path / "dice" / "metrics.csv", tmp_path / "dice" / "metrics.csv", out)
    assert (out / "bland_altman.png").exists()
    volumes = tmp_path / "volumes" / "metrics.csv"
    assert "figure" not in write_comparison(volumes, volumes, out)  # no plotted metric: no figure
    assert not (out / "bland_altman.png").exists()


# -- item 8: a DICOM hint names only options that the named commands have ---------------------
def _options(command: str) -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.choices and command in a.choices).choices
    return set(commands[command]._option_string_actions)


def _check_hint(message: str, option: str) -> None:
    assert "(CLI:" not in message, message
    named = [
        c
        for c in ("inspect", "convert", "segment", "evaluate", "validate", "plan", "predict")
        if f"`{c}`" in message or f"medseg {c}" in message
    ]
    assert named, message
    for command in named:
        assert option in _options(command), f"{message!r} names {command}, which has no {option}"


def test_dicom_hints_name_commands_that_have_the_option(tmp_path, capsys):
    from medseg.io import find_dicom_series, load_volume

    uneven = shared_path("tiny_ct_dicom_uneven")
    with pytest.raises(Exception, match="non-uniform slice spacing") as caught:
        load_volume(uneven)
    _check_hint(str(caught.value), "--resample-nonuniform")

    # a second series: the same slices under another SeriesInstanceUID (same length, last digit changed)
    uid = find_dicom_series(uneven)[0].uid
    other = uid[:-1] + ("1" if uid[-1] != "1" else "2")
    for folder, new_uid in (("a", uid), ("b", other)):
        (tmp_path / folder).mkdir()
        for source in uneven.iterdir():
            (tmp_path / folder / source.name).write_bytes(source.read_bytes().replace(uid.encode(), new_uid.encode()))
    with pytest.raises(Exception, match="holds 2 DICOM series") as caught:
        load_volume(tmp_path)
    _check_hint(str(caught.value), "--series")


# -- item 2: a zip of an earlier submission beside a folder rewritten without --zip is named --------
def test_submit_without_zip_warns_about_an_earlier_zip_beside_the_folder(dataset, tmp_path, capsys):
    images, _, preds = dataset
    command = [
        "submit",
        "--format",
        "msd",
        "--pred",
        str(preds),
        "--images",
        str(images),
        "--out",
        str(tmp_path / "sub"),
        "--quiet",
    ]
    assert main([*command, "--zip"]) == 0 and (tmp_path / "sub.zip").exists()
    capsys.readouterr()
    assert main([*command, "--overwrite"]) == 0
    assert (
        f"medseg submit: warning: {tmp_path / 'sub.zip'} is not from this run (no --zip): it does not hold the "
        f"submission just written to {tmp_path / 'sub'}"
    ) in capsys.readouterr().err
    assert main([*command, "--overwrite", "--zip"]) == 0
    assert "warning" not in capsys.readouterr().err


# -- item 5: an interrupted evaluate says on the terminal what it left behind -------------------------
def test_an_interrupted_evaluate_names_its_partial_results(dataset, tmp_path, capsys, monkeypatch):
    from medseg.evaluation import batch

    _, labels, preds = dataset
    real, calls = batch.evaluate_pair, []

    def interrupt_on_the_second_case(pair, settings):
        calls.append(pair.case_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pair, settings)

    monkeypatch.setattr(batch, "evaluate_pair", interrupt_on_the_second_case)
    out = tmp_path / "ev"
    assert main(["evaluate", "--pred", str(preds), "--ref", str(labels), "--out", str(out), "--quiet"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"medseg evaluate: warning: interrupted after 1 of 3 matched case(s); partial results in {out} (a rerun there "
        "needs --overwrite)",
        "medseg evaluate: interrupted",
    ]


# -- item 1 in the benchmarks: repeated timed runs into one --out time evaluations, not refusals -------
def _benchmark(name: str):
    import importlib.util
    import sys

    path = PROJECT_ROOT / "benchmarks" / f"{name}.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_the_folder_benchmark_times_evaluations_not_refusals(dataset, tmp_path):
    import sys

    bench = _benchmark("evaluation_bench")
    with pytest.raises(SystemExit, match=r"broken: .* failed \(exit 3\)"):  # a failed run is never a timing
        bench.run_processes({"broken": ([sys.executable, "-c", "raise SystemExit(3)"], None)}, repeats=1)
    _, labels, preds = dataset
    (tmp_path / "ref").symlink_to(labels)
    (tmp_path / "pred").symlink_to(preds)
    commands = bench.folder_commands(tmp_path, [], None)
    timed = bench.run_processes({"medseg": commands["medseg_workers1_no_report_s"]}, repeats=2)  # the same --out twice
    assert timed["medseg"] > 0 and (tmp_path / "out" / "summary.json").exists()
