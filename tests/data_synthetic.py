"""Small synthetic datasets for the data-pipeline tests (written as NIfTI + a CSV manifest), and the
training config of a tiny U-Net that the training and prediction tests train on them.

Each case is a body (ellipsoid) with two labelled blobs: class 1 (large) and class 2 (small),
on grids of slightly different shapes and spacings; ``ct=True`` gives HU values (air
-1000 HU outside the body), otherwise MRI-like positive intensities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from medseg.io import Volume, save_volume


def make_case(rng: np.random.Generator, shape, spacing, ct: bool, affine_flip: bool = False, swap_yz: bool = False):
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), axis=-1)
    centre = (np.asarray(shape) - 1) / 2
    radii = np.asarray(shape) * 0.42
    body = (((grid - centre) / radii) ** 2).sum(-1) <= 1.0
    label = np.zeros(shape, np.uint8)
    c1 = centre + rng.uniform(-2, 2, 3)
    label[(((grid - c1) / (radii * 0.45)) ** 2).sum(-1) <= 1.0] = 1
    c2 = centre + np.asarray(shape) * np.array([0.18, -0.15, 0.1])
    label[(((grid - c2) / np.maximum(radii * 0.12, 1.2)) ** 2).sum(-1) <= 1.0] = 2
    label[~body] = 0
    if ct:
        image = np.full(shape, -1000.0, np.float32)
        image[body] = 0.0
        image[label == 1] = 60.0
        image[label == 2] = 300.0
        image += rng.normal(0, 10, shape).astype(np.float32)
        image = np.round(image).astype(np.int16)
    else:
        image = np.zeros(shape, np.float32)
        image[body] = 200.0
        image[label == 1] = 400.0
        image[label == 2] = 700.0
        image = (image + rng.normal(0, 15, shape) * body).astype(np.float32)
    affine = np.diag(list(spacing) + [1.0])
    if affine_flip:  # LPS-like axes
        affine[0, 0] *= -1
        affine[1, 1] *= -1
    if swap_yz:  # array axis 1 points Superior, axis 2 Anterior (like a differently tilted stack)
        affine[[1, 2], :3] = affine[[2, 1], :3]
    affine[:3, 3] = [-20.0, 10.0, 5.0]
    return image, label, affine


def write_dataset(
    root: Path, n: int = 4, ct: bool = False, seed: int = 0, shapes=None, spacings=None, unlabelled: int = 0, swap_yz=()
) -> Path:
    """Write ``n`` cases under ``root`` and a CSV manifest; returns the manifest path.
    Cases whose index is in ``swap_yz`` get axes 1 and 2 pointing S and A instead of A and S."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        shape = shapes[i] if shapes else (40 + 2 * (i % 3), 36 + 2 * (i % 2), 16 + (i % 2))
        spacing = spacings[i] if spacings else (1.0 + 0.05 * (i % 2), 1.0, 2.5 + 0.1 * (i % 3))
        image, label, affine = make_case(rng, shape, spacing, ct, affine_flip=bool(i % 2), swap_yz=i in swap_yz)
        case = f"case_{i:02d}"
        save_volume(Volume(image, affine), root / f"{case}_img.nii.gz")
        has_label = i < n - unlabelled
        if has_label:
            save_volume(Volume(label, affine), root / f"{case}_seg.nii.gz", label=True)
        rows.append(f"{case},{case}_img.nii.gz,{case + '_seg.nii.gz' if has_label else ''}")
    manifest = root / "manifest.csv"
    header = [
        "# name: synthetic",
        f"# modality: {'CT' if ct else 'MRI'}",
        "# labels: background=0, big=1, small=2",
        "case_id,image,label",
    ]
    manifest.write_text("\n".join(header + rows) + "\n", encoding="utf-8")
    return manifest


def write_tiny_train_config(
    folder: Path, manifest: str, configuration: str, patch: list[int], *, folds: int, max_channels: int, **train
) -> Path:
    """Write ``folder/train.yaml``: a U-Net with 4 feature maps at full resolution (at most ``max_channels``),
    batch 2, no augmentation, batches made in the training process, trained on ``manifest`` (a path relative to
    ``folder``); ``train`` is the ``train`` section. Returns the config's path."""
    config = {
        "data": {
            "manifest": manifest,
            "cache": "cache",
            "configuration": configuration,
            "patch_size": patch,
            "batch_size": 2,
            "workers": 0,
            "folds": folds,
            "augmentation": "none",
        },
        "model": {"base_channels": 4, "max_channels": max_channels},
        "train": train,
    }
    path = Path(folder) / "train.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
