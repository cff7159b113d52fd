"""Dataset planning: from a fingerprint to preprocessing settings and network configurations.

The plan is a typed :class:`~medseg.config.plan.Plan` (``medseg plan`` writes it with
:func:`~medseg.config.plan.save_plan`; :func:`~medseg.config.plan.load_plan` reads it). It has
four parts:

* ``dataset``: name, manifest, labels, channels.
* ``fingerprint``: see :mod:`medseg.data.fingerprint`.
* ``preprocessing``: what every case goes through (shared by the 3D and 2D configurations,
  so one cache serves both): ``orientation`` (RAS, or the files' voxel order when
  reorienting would scatter the slice axis of oblique stacks; see
  :func:`resolve_orientation`), ``target_spacing_mm`` (per-axis
  median of the dataset; for strongly anisotropic data the low-resolution axis takes the
  10th percentile, as nnU-Net does), ``anisotropy_threshold`` and ``separate_z`` handling,
  interpolation orders, ``crop`` mode, which channels are CT (``ct``: one flag for every
  channel; ``ct_channels``: one per channel, written only when the channels differ, e.g.
  CT + PET; see :func:`channel_is_ct`), per-channel ``normalization`` (CT: clip to the
  foreground 0.5/99.5 percentiles and z-score with the foreground mean/std; MRI and others:
  per-case z-score, inside the non-zero mask when cropping removed >= 25 % of the volume),
  cache dtype and how many voxel coordinates per class to store for oversampling.
* ``configurations``: ``"3d"`` and ``"2d"``: patch size (voxels), batch size, and the U-Net
  topology (per-stage ``strides`` and ``kernel_sizes`` as MONAI ``DynUNet`` takes them,
  ``base_channels``/``max_channels``) chosen so the estimated training memory fits
  ``gpu_memory_gib``; the 2D configuration slices along ``slice_axis`` (the lowest-resolution
  axis). Memory is an estimate (see :func:`estimate_unet_memory_gib`), not a measurement.

Spacings, shapes and patch sizes are in the plan's orientation's axis order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config import from_dict
from medseg.config.plan import DEFAULT_BASE_CHANNELS, DEFAULT_MAX_CHANNELS, PLAN_VERSION, Plan
from medseg.data.config import NetworkSettings, PreprocessingConfig, load_preprocessing_config
from medseg.data.manifest import Manifest

#: Values stored per voxel for backpropagation, relative to one conv output (empirical; puts
#: nnU-Net's reference 128^3 patch, batch 2, 32 base channels at about 9 GiB with AMP).
MEMORY_FACTOR = 24.0
MIN_FEATURE_MAP = 4
MAX_STAGES = 6
#: A batch never holds more than this fraction of the dataset's voxels (nnU-Net's rule).
MAX_BATCH_DATASET_FRACTION = 0.05


# -- network topology and memory ---------------------------------------------------------------
def pool_and_kernels(
    spacing_mm: Sequence[float], patch: Sequence[int], max_stages: int = MAX_STAGES
) -> tuple[list[list[int]], list[list[int]]]:
    """U-Net strides and kernel sizes per stage (nnU-Net's rule, simplified).

    Stage 0 has stride 1. A further stage halves every axis whose current spacing is at most
    twice the finest current spacing and whose size is at least ``2 * MIN_FEATURE_MAP``
    voxels; kernels are 3 along axes within a factor 2 of the finest spacing, else 1 (so
    very coarse slice axes are not convolved across until pooling has caught up).
    Returns ``(strides, kernel_sizes)``, one entry per stage.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64).copy()
    size = np.asarray(patch, dtype=np.float64).copy()
    strides = [[1] * len(size)]
    kernels = [[3 if s <= 2 * spacing.min() else 1 for s in spacing]]
    while len(strides) < max_stages:
        finest = spacing.min()
        can_pool = (spacing <= 2 * finest) & (size >= 2 * MIN_FEATURE_MAP)
        if not can_pool.any():
            break
        stride = [2 if c else 1 for c in can_pool]
        spacing = spacing * stride
        size = np.floor(size / stride)
        strides.append(stride)
        kernels.append([3 if s <= 2 * spacing.min() else 1 for s in spacing])
    return strides, kernels


def divisibility(strides: Sequence[Sequence[int]]) -> list[int]:
    """Per-axis factor the patch size must be divisible by (product of the strides)."""
    return [int(np.prod([s[a] for s in strides])) for a in range(len(strides[0]))]


def estimate_unet_memory_gib(
    patch: Sequence[int],
    strides: Sequence[Sequence[int]],
    *,
    base_channels: int = DEFAULT_BASE_CHANNELS,
    max_channels: int = DEFAULT_MAX_CHANNELS,
    batch_size: int = 2,
    bytes_per_value: int = 2,
) -> float:
    """Rough training memory (GiB) of a U-Net: sum over stages of voxels x channels, times
    ``MEMORY_FACTOR`` (activations kept for backpropagation, encoder and decoder) and the
    batch size, plus 1 GiB for weights, optimiser state and workspace. For ranking patch
    sizes against a budget, not an exact figure."""
    voxels = float(np.prod(patch))
    total = 0.0
    scale = 1.0
    for stage, stride in enumerate(strides):
        scale *= float(np.prod(stride))
        channels = min(base_channels * 2**stage, max_channels)
        total += voxels / scale * channels
    return batch_size * total * MEMORY_FACTOR * bytes_per_value / 2**30 + 1.0


def _fit_patch(
    spacing_mm: Sequence[float],
    median_shape: Sequence[float],
    initial_voxels: float,
    network: NetworkSettings,
    batch_size: int,
) -> dict[str, Any]:
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    median = np.maximum(np.asarray(median_shape, dtype=np.float64), 1)
    inverse = 1.0 / spacing
    patch = inverse * (initial_voxels / np.prod(inverse)) ** (1.0 / len(spacing))
    patch = np.maximum(np.round(np.minimum(patch, median)), 1).astype(int)
    budget = network.gpu_memory_gib
    for _ in range(1000):
        strides, kernels = pool_and_kernels(spacing, patch)
        factors = divisibility(strides)
        patch = np.array([max(f, int(math.ceil(p / f) * f)) for p, f in zip(patch, factors)])
        memory = estimate_unet_memory_gib(
            patch,
            strides,
            base_channels=network.base_channels,
            max_channels=network.max_channels,
            batch_size=batch_size,
        )
        if memory <= budget or np.all(patch <= np.array(factors)):
            break
        ratios = patch / median
        reducible = [a for a in range(len(patch)) if patch[a] > factors[a]]
        axis = max(reducible, key=lambda a: ratios[a])
        patch[axis] -= factors[axis]
    strides, kernels = pool_and_kernels(spacing, patch)
    return {
        "patch_size": [int(p) for p in patch],
        "strides": strides,
        "kernel_sizes": kernels,
        "estimated_memory_gib": round(memory, 2),
    }


def _batch_size(
    config: dict[str, Any], network: NetworkSettings, minimum: int, maximum: int, dataset_voxels: float
) -> int:
    per_sample = (
        estimate_unet_memory_gib(
            config["patch_size"],
            config["strides"],
            base_channels=network.base_channels,
            max_channels=network.max_channels,
            batch_size=1,
        )
        - 1.0
    )
    fits = int((network.gpu_memory_gib - 1.0) // max(per_sample, 1e-9))
    cap = int(MAX_BATCH_DATASET_FRACTION * dataset_voxels // max(1, np.prod(config["patch_size"])))
    return int(max(minimum, min(maximum, fits, cap)))


# -- the plan ---------------------------------------------------------------------------------
def resolve_orientation(fingerprint: Mapping[str, Any], requested: str, threshold: float) -> tuple[str, str]:
    """The orientation the plan uses, and why.

    ``"auto"`` gives ``"RAS"`` unless reorienting would put the slice axis (the largest
    spacing, in cases whose max/min spacing exceeds ``threshold``) on different RAS axes in
    different cases while the files agree on it, as happens with oblique short-axis cardiac
    stacks: then ``"none"`` (keep the file's voxel order), so every case slices along the same
    array axis (which the 2D configuration and the anisotropic resampling rely on).
    """
    if requested != "auto":
        return requested, "given in the preprocessing config"
    ras_axes, file_axes = set(), set()
    for case in fingerprint["cases"]:
        if "permutation" not in case or "spacing_mm_file_order" not in case:
            continue
        spacing = np.asarray(case["spacing_mm_file_order"], dtype=np.float64)
        if spacing.max() / spacing.min() <= threshold:
            continue
        file_axis = int(np.argmax(spacing))
        file_axes.add(file_axis)
        ras_axes.add(list(case["permutation"]).index(file_axis))
    if len(ras_axes) > 1 and len(file_axes) == 1:
        return "none", (
            f"orientation: the files' slice axis (axis {file_axes.pop()}) would become RAS axes {sorted(ras_axes)} in "
            "different cases, so the file voxel order is kept (orientation 'none')"
        )
    return "RAS", "orientation: RAS (auto)"


def _in_file_order(case: Mapping[str, Any]) -> dict[str, Any]:
    """A fingerprinted case with spacing and shapes put back in the file's axis order."""
    permutation = case["permutation"]
    out = dict(case)
    for key in ("spacing_mm", "shape", "shape_after_crop"):
        values = [0] * 3
        for oriented_axis, file_axis in enumerate(permutation):
            values[file_axis] = case[key][oriented_axis]
        out[key] = values
    return out


def target_spacing(fingerprint: Mapping[str, Any], threshold: float) -> tuple[list[float], str]:
    """Median spacing per axis; for anisotropic data the coarse axis may use its 10th
    percentile (nnU-Net's rule). Returns ``(spacing_mm, explanation)``."""
    spacings = np.array([c["spacing_mm"] for c in fingerprint["cases"]], dtype=np.float64)
    shapes = np.array([c["shape_after_crop"] for c in fingerprint["cases"]], dtype=np.float64)
    target = np.median(spacings, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    target_shape = np.median(shapes * spacings / target, axis=0)
    aniso_spacing = target[worst] > threshold * target[others].min()
    aniso_voxels = target_shape[worst] * threshold < target_shape[others].min()
    note = "per-axis median of the case spacings"
    if aniso_spacing and aniso_voxels:
        p10 = float(np.percentile(spacings[:, worst], 10))
        value = max(p10, float(target[others].max()) + 1e-5)
        if value < target[worst]:
            note += (
                f"; axis {worst} is anisotropic and short, so it uses the 10th percentile ({value:.4g} mm) as "
                "nnU-Net does"
            )
            target[worst] = value
    return [round(float(s), 6) for s in target], note


def channel_is_ct(fingerprint: Mapping[str, Any], manifest: Manifest) -> list[bool]:
    """Whether each image channel is CT (one bool per entry of the fingerprint's
    ``intensity_foreground``; empty when it has none).

    A channel named "CT" (any case) in the manifest is CT and one with another non-empty name
    is not (:func:`medseg.data.fingerprint.channel_ct_flags`); an unnamed channel is CT when
    most cases' files looked like Hounsfield units (the fingerprint's ``ct_channels``, or its
    single ``ct`` for fingerprints made before channels were told apart).
    """
    from medseg.data.fingerprint import channel_ct_flags

    n_channels = len(fingerprint["intensity_foreground"])
    detected = fingerprint.get("ct_channels") or [bool(fingerprint["ct"])] * n_channels
    declared = channel_ct_flags(manifest, n_channels)
    return [bool(detected[c]) if declared[c] is None else declared[c] for c in range(n_channels)]


def _ct_settings(flags: list[bool]) -> dict[str, Any]:
    """The plan's CT keys: ``ct`` (channel 0, which the body crop looks at) and, only when
    the channels differ, ``ct_channels`` (one bool per channel). A plan whose channels agree
    keeps the single flag it always had, so its content and :func:`preprocessing_hash` (and
    therefore existing caches) stay as they were."""
    settings: dict[str, Any] = {"ct": bool(flags[0]) if flags else False}
    if len(set(flags)) > 1:
        settings["ct_channels"] = [bool(f) for f in flags]
    return settings


def _normalization(
    fingerprint: Mapping[str, Any], manifest: Manifest, config: PreprocessingConfig
) -> list[dict[str, Any]]:
    schemes = []
    ct_flags = channel_is_ct(fingerprint, manifest)
    for index, channel in enumerate(fingerprint["intensity_foreground"]):
        choice = config.normalization
        is_ct = ct_flags[index]
        if choice == "auto":
            choice = "ct" if is_ct else "zscore"
        entry: dict[str, Any] = {
            "channel": channel["channel"],
            "channel_name": channel.get("name", ""),
            "scheme": choice,
        }
        if choice == "ct":
            clip = config.ct_clip
            if clip == "percentiles":
                clip = [channel["percentile_00_5"], channel["percentile_99_5"]]
            entry.update(
                clip=[float(clip[0]), float(clip[1])], mean=float(channel["mean"]), std=float(max(channel["std"], 1e-6))
            )
        elif choice == "zscore":
            mask_rule = config.zscore_nonzero_mask
            use_mask = mask_rule == "always" or (
                mask_rule == "auto" and fingerprint["crop_size_fraction_median"] < 0.75
            )
            entry["use_nonzero_mask"] = bool(use_mask)
        elif choice == "percentile":
            entry["percentiles"] = [0.5, 99.5]
        schemes.append(entry)
    return schemes


def make_plan(
    fingerprint: Mapping[str, Any], manifest: Manifest, config: PreprocessingConfig | Mapping[str, Any] | None = None
) -> Plan:
    """Derive the plan (see the module docstring) from a dataset fingerprint and the
    preprocessing config (anything :func:`~medseg.data.config.load_preprocessing_config`
    takes; ``None`` for the defaults)."""
    config = load_preprocessing_config(config)
    threshold = config.anisotropy_threshold
    orientation, orientation_note = resolve_orientation(fingerprint, config.orientation, threshold)
    if orientation == "none":
        fingerprint = {
            **fingerprint,
            "cases": [_in_file_order(c) if "permutation" in c else c for c in fingerprint["cases"]],
        }
    if config.target_spacing_mm == "auto":
        spacing, spacing_note = target_spacing(fingerprint, threshold)
    else:
        spacing, spacing_note = [float(s) for s in config.target_spacing_mm], "given in the preprocessing config"
    spacing_arr = np.asarray(spacing)
    anisotropic = bool(spacing_arr.max() / spacing_arr.min() > threshold)
    cases = fingerprint["cases"]
    resampled = np.array([np.asarray(c["shape_after_crop"]) * np.asarray(c["spacing_mm"]) / spacing_arr for c in cases])
    median_shape = np.median(resampled, axis=0)
    dataset_voxels = float(np.sum(np.prod(resampled, axis=1)))
    network = config.network

    three_d = _fit_patch(spacing, median_shape, 256.0**3, network, network.batch_size_3d)
    if network.patch_size_3d:
        three_d["patch_size"] = list(network.patch_size_3d)
        three_d["strides"], three_d["kernel_sizes"] = pool_and_kernels(spacing, three_d["patch_size"])
    three_d["batch_size"] = _batch_size(
        three_d, network, network.batch_size_3d, max(network.batch_size_3d, 2), dataset_voxels
    )
    three_d.update(
        spacing_mm=spacing,
        median_shape_voxels=[int(round(s)) for s in median_shape],
        base_channels=network.base_channels,
        max_channels=network.max_channels,
    )

    slice_axis = int(np.argmax(spacing_arr)) if anisotropic or spacing_arr.max() > spacing_arr.min() * 1.01 else 2
    in_plane = [a for a in range(3) if a != slice_axis]
    two_d = _fit_patch(spacing_arr[in_plane], median_shape[in_plane], 2048.0**2, network, 2)
    if network.patch_size_2d:
        two_d["patch_size"] = list(network.patch_size_2d)
        two_d["strides"], two_d["kernel_sizes"] = pool_and_kernels(
            spacing_arr[in_plane], two_d["patch_size"], max_stages=8
        )
    two_d["batch_size"] = _batch_size(two_d, network, 2, network.max_batch_size_2d, dataset_voxels)
    two_d.update(
        slice_axis=slice_axis,
        in_plane_axes=in_plane,
        spacing_mm=[spacing[a] for a in in_plane],
        median_shape_voxels=[int(round(median_shape[a])) for a in in_plane],
        base_channels=network.base_channels,
        max_channels=network.max_channels,
    )

    preprocessing = {
        "orientation": orientation,
        "target_spacing_mm": spacing,
        "anisotropic": anisotropic,
        "anisotropy_threshold": threshold,
        "separate_z_axis": int(np.argmax(spacing_arr)) if anisotropic else None,
        "image_interpolation": config.image_interpolation,
        "label_interpolation": config.label_interpolation,
        "keep_all_classes": config.keep_all_classes,
        "crop": config.crop,
        "crop_margin_voxels": config.crop_margin_voxels,
        **_ct_settings(channel_is_ct(fingerprint, manifest)),
        "normalization": _normalization(fingerprint, manifest, config),
        "cache_dtype": config.cache_dtype,
        "class_locations_per_class": config.class_locations_per_class,
    }
    axis_order = (
        "the files' voxel order" if orientation == "none" else f"the canonical orientation ({orientation}) axis order"
    )
    notes = [
        orientation_note,
        f"target spacing: {spacing_note}",
        f"spacings, shapes and patch sizes are in {axis_order}; shapes in voxels, spacings in mm "
        "(the fingerprint's dataset summary is in RAS order)",
        "estimated_memory_gib is a rough estimate for training with mixed precision, not a measurement",
    ]
    if anisotropic:
        notes.append(
            f"anisotropic: axis {preprocessing['separate_z_axis']} is resampled with nearest neighbour and "
            "images in-plane with linear interpolation (separate z)"
        )
    plain = {
        "medseg_plan_version": PLAN_VERSION,
        "dataset": {
            "name": manifest.name,
            "manifest": str(manifest.path),
            "n_cases": len(cases),
            "modality": manifest.modality,
            "labels": dict(manifest.labels),
            "channel_names": {str(k): v for k, v in manifest.channel_names.items()},
        },
        "preprocessing": preprocessing,
        "configurations": {"3d": three_d, "2d": two_d},
        "notes": notes,
        "fingerprint": dict(fingerprint),
    }
    return from_dict(Plan, plain, source="<plan>")


def plan_dataset(
    manifest: Manifest,
    config: str | Path | Mapping[str, Any] | PreprocessingConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
    seed: int = 0,
) -> Plan:
    """Fingerprint ``manifest`` and derive its plan (one call for ``medseg plan``)."""
    from medseg.data.fingerprint import dataset_fingerprint

    settings = load_preprocessing_config(config)
    fingerprint_orientation = settings.orientation if settings.orientation not in ("auto", "none") else "RAS"
    fingerprint = dataset_fingerprint(
        manifest, orientation=fingerprint_orientation, crop=settings.crop, workers=workers, seed=seed, progress=progress
    )
    return make_plan(fingerprint, manifest, settings)
