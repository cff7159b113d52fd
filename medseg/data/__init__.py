"""Data: manifests, preprocessing transforms, planning, the preprocessing cache, patch sampling.

Public names are imported lazily (PEP 562), so ``import medseg.data.manifest`` stays light
(no torch / MONAI import) while ``from medseg.data import preprocess_case`` works.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # manifests (the lead's module)
    "CaseEntry": "medseg.data.manifest",
    "Manifest": "medseg.data.manifest",
    "load_manifest": "medseg.data.manifest",
    # transforms and inversion
    "LoadVolumed": "medseg.data.transforms",
    "EnsureChannelFirstd": "medseg.data.transforms",
    "Orientationd": "medseg.data.transforms",
    "CropForegroundd": "medseg.data.transforms",
    "Resampled": "medseg.data.transforms",
    "NormalizeIntensityd": "medseg.data.transforms",
    "PadToSized": "medseg.data.transforms",
    "build_preprocessing": "medseg.data.transforms",
    "preprocess_case": "medseg.data.transforms",
    "restore_to_original": "medseg.data.restore",
    "restore_volume": "medseg.data.restore",
    "restore_labels_from_probabilities": "medseg.data.restore",
    "final_shape": "medseg.data.restore",
    "original_affine": "medseg.data.restore",
    # resampling primitives
    "resample_image": "medseg.data.resample",
    "resample_label": "medseg.data.resample",
    "resample_probabilities": "medseg.data.resample",
    # configs, planning, cache
    "load_augmentation_config": "medseg.data.config",
    "load_preprocessing_config": "medseg.data.config",
    "dataset_fingerprint": "medseg.data.fingerprint",
    "plan_dataset": "medseg.data.planning",
    "make_plan": "medseg.data.planning",
    "load_plan": "medseg.config.plan",
    "save_plan": "medseg.config.plan",
    "preprocess_dataset": "medseg.data.cache",
    "open_cache": "medseg.data.cache",
    "load_cache_plan": "medseg.data.cache",
    "CachedCase": "medseg.data.cache",
    # sampling and augmentation
    "Augmenter": "medseg.data.augment",
    "PatchSampler": "medseg.data.sampling",
    "PatchBatchDataset": "medseg.data.sampling",
    "EpochBatchSampler": "medseg.data.sampling",
    "make_patch_loader": "medseg.data.sampling",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medseg.data' has no attribute {name!r}")
