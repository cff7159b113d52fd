"""Cross-validation splits from a manifest, reproducible with a seed.

Cases sharing a ``group`` (e.g. the ED and ES frames of one patient) always land in the same
fold, so no patient is in both training and validation. A manifest whose cases all carry a
``fold`` uses those folds as given; one with ``split`` values uses ``train``/``val`` as the
single split (``test`` cases are left out of training and validation).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from medseg.data.manifest import Manifest
from medseg.errors import ConfigError, InvalidArgumentError


def case_group(case_id: str, group_pattern: str) -> str:
    """The patient/group a case id belongs to under ``group_pattern``, a regular expression searched
    in the id: its first capture group if it has one, else the whole match
    (``r"^(patient\\d+)"``: ``patient001_ED`` -> ``patient001``).

    Raises:
        ConfigError: the pattern does not compile or does not match ``case_id``.
    """
    try:
        match = re.search(group_pattern, case_id)
    except re.error as error:
        raise ConfigError(f"data.group_pattern {group_pattern!r} is not a valid regular expression: {error}") from None
    if match is None:
        raise ConfigError(f"data.group_pattern {group_pattern!r} does not match case id {case_id!r}")
    return match.group(1) if match.re.groups else match.group(0)


def suspected_same_patient(manifest: Manifest) -> list[list[str]]:
    """Cases without a group whose ids differ only in a last ``_word`` holding letters, like the
    frames of one patient (``patient001_ED`` / ``patient001_ES``, ``case7_T1`` / ``case7_T2``):
    lists of two or more such case ids. Ids ending in a number (``lung_001``) never count. Empty
    when every case has a group or nothing looks alike."""
    stems: dict[str, list[str]] = {}
    for case in manifest.cases:
        stem, sep, last = case.case_id.rpartition("_")
        if case.group is None and sep and any(ch.isalpha() for ch in last) and any(ch.isdigit() for ch in stem):
            stems.setdefault(stem, []).append(case.case_id)
    return [sorted(ids) for ids in stems.values() if len(ids) > 1]


def given_splits(manifest: Manifest) -> list[dict[str, list[str]]] | None:
    """The splits the manifest fixes itself, or ``None`` when folds are to be computed from groups:
    ``split`` values (every non-test case ``train`` or ``val``, at least one ``val``) give one split;
    a ``fold`` on every non-test case gives one split per fold value."""
    cases = [c for c in manifest.cases if c.split != "test"]
    if all(c.split in ("train", "val") for c in cases) and any(c.split == "val" for c in cases):
        return [
            {
                "train": sorted(c.case_id for c in cases if c.split == "train"),
                "val": sorted(c.case_id for c in cases if c.split == "val"),
            }
        ]
    if cases and all(c.fold is not None for c in cases):
        return [
            {
                "train": sorted(c.case_id for c in cases if c.fold != fold),
                "val": sorted(c.case_id for c in cases if c.fold == fold),
            }
            for fold in sorted({c.fold for c in cases})
        ]
    return None


def kfold_splits(
    manifest: Manifest, n_folds: int = 5, seed: int = 0, group_pattern: str | None = None
) -> list[dict[str, list[str]]]:
    """``[{"train": [case ids], "val": [case ids]}, ...]``, one entry per fold.

    Groups (a case's ``group``; else, with ``group_pattern``, :func:`case_group` of its id; else
    the case alone) are shuffled with ``seed`` and dealt to the folds largest first, so fold
    sizes differ by as little as the groups allow. Raises :class:`ConfigError` when there are
    fewer groups than folds, or ``group_pattern`` does not match a case id.
    """
    given = given_splits(manifest)
    if given is not None:
        return given
    cases = [c for c in manifest.cases if c.split != "test"]
    groups: dict[str, list[str]] = {}
    for case in cases:
        name = case.group or (case_group(case.case_id, group_pattern) if group_pattern else case.case_id)
        groups.setdefault(name, []).append(case.case_id)
    if n_folds < 2:
        raise ConfigError(f"{manifest.path}: need at least 2 folds, got {n_folds}")
    if len(groups) < n_folds:
        fix = (
            f"set data.folds to {len(groups)} or fewer in the training config"
            if len(groups) >= 2
            else "cross-validation needs at least 2"
        )
        raise ConfigError(f"{manifest.path}: {len(groups)} patients/groups cannot fill {n_folds} folds; {fix}")
    rng = np.random.default_rng(seed)
    names = sorted(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    order.sort(key=lambda g: -len(groups[g]))  # stable: ties keep the shuffled order
    members: list[list[str]] = [[] for _ in range(n_folds)]
    for group in order:
        smallest = min(range(n_folds), key=lambda f: (len(members[f]), f))
        members[smallest].extend(groups[group])
    all_ids = sorted(c.case_id for c in cases)
    return [{"train": sorted(set(all_ids) - set(m)), "val": sorted(m)} for m in members]


ALL_FOLDS = "all"


def parse_fold(value: str | int) -> int | str:
    """A fold as given on a command line or in code: a 0-based fold number, or ``"all"``
    (:data:`ALL_FOLDS`: train on every case, no validation, as nnU-Net's ``all``).

    Raises:
        ConfigError: anything else (a negative number, a word other than ``all``).
    """
    text = str(value).strip().lower()
    if text == ALL_FOLDS:
        return ALL_FOLDS
    if text.isdigit():
        return int(text)
    raise ConfigError(f"fold must be a fold number (0, 1, ...) or 'all', got {value!r}")


def all_cases_split(manifest: Manifest) -> dict[str, list[str]]:
    """Every case except those marked ``split: test`` for training, none for validation
    (``--fold all``). Raises :class:`ConfigError` when no case is left to train on."""
    train = sorted(c.case_id for c in manifest.cases if c.split != "test")
    if not train:
        raise ConfigError(f"{manifest.path}: no case to train on (every case is marked split=test)")
    return {"train": train, "val": []}


def fold_of(splits: list[dict[str, Any]], fold: int) -> dict[str, list[str]]:
    """The split of ``fold`` (0-based), with a clear error when it does not exist."""
    if not 0 <= fold < len(splits):
        raise InvalidArgumentError(f"fold {fold} does not exist: the splits have folds 0..{len(splits) - 1}")
    return splits[fold]
