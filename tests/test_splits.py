"""Cross-validation splits keep patients together and are reproducible."""

import pytest

from conftest import PROJECT_ROOT
from medseg.data.manifest import CaseEntry, Manifest, load_manifest
from medseg.data.splits import fold_of, kfold_splits
from medseg.errors import ConfigError


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
    split = [CaseEntry("a", (PROJECT_ROOT,), split="train"), CaseEntry("b", (PROJECT_ROOT,), split="val"),
             CaseEntry("t", (PROJECT_ROOT,), split="test")]
    assert kfold_splits(_manifest(split)) == [{"train": ["a"], "val": ["b"]}]
    with pytest.raises(ConfigError, match="fold 3 does not exist"):
        fold_of(kfold_splits(_manifest(folds)), 3)


def test_too_few_groups():
    cases = [CaseEntry(f"c{i}", (PROJECT_ROOT,), group="same") for i in range(6)]
    with pytest.raises(ConfigError, match="1 patients/groups cannot fill 5 folds"):
        kfold_splits(_manifest(cases), 5)
