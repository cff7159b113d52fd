"""Cross-validation splits keep patients together and are reproducible."""

import pytest
from conftest import PROJECT_ROOT

from medseg.data.manifest import CaseEntry, Manifest, load_manifest
from medseg.data.splits import (
    all_cases_split,
    case_group,
    fold_of,
    given_splits,
    kfold_splits,
    parse_fold,
    suspected_same_patient,
)
from medseg.errors import ConfigError, InvalidArgumentError


def _manifest(cases):
    return Manifest(PROJECT_ROOT / "m.csv", "m", {"background": 0}, {0: ""}, cases)


def test_groups_stay_together_and_folds_cover_everything(shared_data):
    acdc = load_manifest(PROJECT_ROOT / "data_manifests" / "acdc_subset.csv")
    splits = kfold_splits(acdc, n_folds=5, seed=0)
    assert splits == kfold_splits(acdc, n_folds=5, seed=0)  # reproducible
    assert splits != kfold_splits(acdc, n_folds=5, seed=1)
    validation = [case for split in splits for case in split["val"]]
    assert sorted(validation) == sorted(c.case_id for c in acdc)  # each case validated exactly once
    for split in splits:
        assert len(split["val"]) == 8  # 4 patients x ED/ES
        patients_val = {c[:10] for c in split["val"]}
        assert not patients_val & {c[:10] for c in split["train"]}


def test_explicit_folds_and_splits():
    folds = [CaseEntry(f"c{i}", (PROJECT_ROOT / f"c{i}",), fold=i % 2) for i in range(4)]
    assert fold_of(kfold_splits(_manifest(folds)), 1) == {"train": ["c0", "c2"], "val": ["c1", "c3"]}
    split = [
        CaseEntry("a", (PROJECT_ROOT,), split="train"),
        CaseEntry("b", (PROJECT_ROOT,), split="val"),
        CaseEntry("t", (PROJECT_ROOT,), split="test"),
    ]
    assert kfold_splits(_manifest(split)) == [{"train": ["a"], "val": ["b"]}]
    with pytest.raises(InvalidArgumentError, match="fold 3 does not exist"):
        fold_of(kfold_splits(_manifest(folds)), 3)


def test_fold_all_takes_every_case_but_the_test_ones():
    cases = [
        CaseEntry("a", (PROJECT_ROOT,), split="train"),
        CaseEntry("b", (PROJECT_ROOT,), split="val"),
        CaseEntry("t", (PROJECT_ROOT,), split="test"),
        CaseEntry("c", (PROJECT_ROOT,)),
    ]
    assert all_cases_split(_manifest(cases)) == {"train": ["a", "b", "c"], "val": []}
    with pytest.raises(ConfigError, match="m.csv: no case to train on"):
        all_cases_split(_manifest([CaseEntry("t", (PROJECT_ROOT,), split="test")]))
    assert parse_fold("all") == "all" and parse_fold(" ALL ") == "all" and parse_fold("3") == 3 and parse_fold(2) == 2
    for bad in ("-1", "one", "1.5", ""):
        with pytest.raises(ConfigError, match="fold must be a fold number"):
            parse_fold(bad)


def test_too_few_groups():
    cases = [CaseEntry(f"c{i}", (PROJECT_ROOT,), group="same") for i in range(6)]
    with pytest.raises(ConfigError, match="1 patients/groups cannot fill 5 folds; cross-validation needs at least 2"):
        kfold_splits(_manifest(cases), 5)
    four = [CaseEntry(f"c{i}", (PROJECT_ROOT,)) for i in range(4)]
    with pytest.raises(ConfigError, match="4 patients/groups cannot fill 5 folds; set data.folds to 4 or fewer"):
        kfold_splits(_manifest(four), 5)


def _frames(ids):
    return _manifest([CaseEntry(case_id, (PROJECT_ROOT,)) for case_id in ids])


def test_group_pattern_keeps_each_patients_frames_in_one_fold():
    """A dataset.json has no group column: data.group_pattern names the patient from the case id."""
    ids = [f"patient{p:03d}_{frame}" for p in range(10) for frame in ("ED", "ES")]
    assert case_group("patient007_ES", r"^(patient\d+)") == "patient007"
    assert case_group("patient007_ES", r"patient\d+") == "patient007"  # no capture group: the whole match
    for split in kfold_splits(_frames(ids), 5, seed=0, group_pattern=r"^(patient\d+)"):
        assert not {c[:10] for c in split["val"]} & {c[:10] for c in split["train"]}
    ungrouped = kfold_splits(_frames(ids), 5, seed=0)
    assert any(
        {c[:10] for c in s["val"]} & {c[:10] for c in s["train"]} for s in ungrouped
    )  # what the pattern prevents
    with pytest.raises(ConfigError, match="does not match case id 'scan_1'"):
        kfold_splits(_frames(ids + ["scan_1"]), 5, group_pattern=r"^(patient\d+)")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        case_group("patient001_ED", "(patient")


def test_frames_of_one_patient_without_groups_are_noticed():
    alike = suspected_same_patient(_frames(["patient001_ED", "patient001_ES", "patient002_ED", "lung_001", "lung_002"]))
    assert alike == [["patient001_ED", "patient001_ES"]]
    assert suspected_same_patient(_frames(["lung_001", "lung_002", "case_00000", "case_00001"])) == []
    grouped = _manifest([CaseEntry(c, (PROJECT_ROOT,), group="p1") for c in ("p1_ED", "p1_ES")])
    assert suspected_same_patient(grouped) == []


def test_given_splits_only_when_the_manifest_fixes_them():
    """Test cases set aside, or folds on only some cases, still leave the folds to be computed."""
    some_test = [
        CaseEntry("a", (PROJECT_ROOT,), split="test"),
        CaseEntry("b", (PROJECT_ROOT,)),
        CaseEntry("c", (PROJECT_ROOT,)),
    ]
    assert given_splits(_manifest(some_test)) is None
    partial_folds = [CaseEntry("a", (PROJECT_ROOT,), fold=0), CaseEntry("b", (PROJECT_ROOT,))]
    assert given_splits(_manifest(partial_folds)) is None
    fixed = [CaseEntry("a", (PROJECT_ROOT,), split="train"), CaseEntry("b", (PROJECT_ROOT,), split="val")]
    assert given_splits(_manifest(fixed)) == [{"train": ["a"], "val": ["b"]}]
