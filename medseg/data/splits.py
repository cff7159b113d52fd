"""Cross-validation splits from a manifest, reproducible with a seed.

Cases sharing a ``group`` (e.g. the ED and ES frames of one patient) always land in the same
fold, so no patient is in both training and validation. A manifest whose cases all carry a
``fold`` uses those folds as given; one with ``split`` values uses ``train``/``val`` as the
single split (``test`` cases are left out of training and validation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg.data.manifest import Manifest
from medseg.errors import ConfigError


def kfold_splits(manifest: Manifest, n_folds: int = 5, seed: int = 0) -> list[dict[str, list[str]]]:
    """``[{"train": [case ids], "val": [case ids]}, ...]``, one entry per fold.

    Groups (cases without a group form their own) are shuffled with ``seed`` and dealt to the
    folds largest first, so fold sizes differ by as little as the groups allow. Raises
    :class:`ConfigError` when there are fewer groups than folds.
    """
    cases = [c for c in manifest.cases if c.split != "test"]
    if all(c.split in ("train", "val") for c in cases) and any(c.split == "val" for c in cases):
        return [
            {
                "train": sorted(c.case_id for c in cases if c.split == "train"),
                "val": sorted(c.case_id for c in cases if c.split == "val"),
            }
        ]
    if cases and all(c.fold is not None for c in cases):
        folds = sorted({c.fold for c in cases})
        return [
            {
                "train": sorted(c.case_id for c in cases if c.fold != fold),
                "val": sorted(c.case_id for c in cases if c.fold == fold),
            }
            for fold in folds
        ]
    groups: dict[str, list[str]] = {}
    for case in cases:
        groups.setdefault(case.group or case.case_id, []).append(case.case_id)
    if n_folds < 2:
        raise ConfigError(f"{manifest.path}: need at least 2 folds, got {n_folds}")
    if len(groups) < n_folds:
        raise ConfigError(f"{manifest.path}: {len(groups)} patients/groups cannot fill {n_folds} folds")
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


def fold_of(splits: list[dict[str, Any]], fold: int) -> dict[str, list[str]]:
    """The split of ``fold`` (0-based), with a clear error when it does not exist."""
    if not 0 <= fold < len(splits):
        raise ConfigError(f"fold {fold} does not exist: the splits have folds 0..{len(splits) - 1}")
    return splits[fold]
