"""Dataset fingerprint: what the planner needs to know about a dataset.

Per case (after reorientation to the canonical orientation, so spacings and shapes are in
the order the network will see): shape and spacing (voxels, mm), shape after cropping to the
body / non-zero region, a random sample of foreground intensities per channel (foreground =
labelled voxels, or the body/non-zero region for cases without a label), label voxel counts,
and how much of the cropped box is non-zero (for the MRI "z-score inside the non-zero mask"
decision). The dataset fingerprint aggregates these: median / 10th percentile / min / max
spacing per axis, median shapes, intensity percentiles 0.5 / 99.5, mean and std of the
foreground (per channel; the CT normalisation uses them) and class voxel frequencies.
Cases are read with the medseg loader (one at a time per worker process).

Whether a channel is CT (read as Hounsfield units) is decided per channel
(:func:`channel_ct_flags`): from the manifest's channel name where it gives one, else from
what the file's values look like. Multi-channel fingerprints carry ``ct_channels`` (one
bool per channel, per case and for the dataset); ``ct`` is channel 0's.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from medseg.common.processes import process_context
from medseg.common.progress import progress_bar
from medseg.data.manifest import CaseEntry, Manifest, undeclared_labels_problem
from medseg.errors import ConfigError, VolumeReadError
from medseg.io import spacing_from_affine
from medseg.io.describe import describe_nonfinite, nonfinite_voxels

log = logging.getLogger(__name__)

#: Foreground intensity samples drawn per case and channel.
SAMPLES_PER_CASE = 10_000


def _name_ct(name: str) -> bool | None:
    """``True`` for the channel name "CT" (any case), ``False`` for another non-empty name,
    ``None`` (look at the data) for an empty one."""
    name = str(name or "").strip().upper()
    if name == "CT":
        return True
    return False if name else None


def channel_ct_flags(manifest: Manifest, n_channels: int) -> list[bool | None]:
    """Per image channel (index 0 .. ``n_channels - 1``): ``True`` when it is CT, ``False``
    when not, ``None`` when the loader should decide from the values (``looks_like_hu``).

    The channel's name in ``manifest.channel_names`` decides: "CT" (any case) is CT, any other
    non-empty name is not, an empty name leaves it to the data. A channel the manifest does
    not name at all (a CSV manifest's ``# modality:`` names only channel 0 but speaks for the
    dataset) takes channel 0's name, as every channel did before names were read per
    channel. ``n_channels`` <= 0 gives an empty list.
    """
    names = manifest.channel_names
    return [_name_ct(names[c] if c in names else manifest.modality) for c in range(max(0, int(n_channels)))]


def _load_ct_argument(flags: list[bool | None]) -> bool | None | list[bool | None]:
    """What :class:`LoadVolumed` gets: one value when every channel agrees (exactly the
    single-flag behaviour), else the per-channel list; ``None`` for no channels."""
    if not flags:
        return None
    return flags[0] if len(set(flags)) == 1 else list(flags)


def case_fingerprint(
    entry: CaseEntry,
    *,
    ct: bool | None | Sequence[bool | None] = None,
    orientation: str = "RAS",
    crop: str = "auto",
    samples: int = SAMPLES_PER_CASE,
    seed: int = 0,
) -> dict[str, Any]:
    """Fingerprint of one case (see the module docstring); plain JSON types.

    ``ct``: as :class:`~medseg.data.transforms.LoadVolumed` takes it (one value for every
    channel, or one per channel; ``None`` looks at the data). ``ct`` in the result is
    channel 0's outcome; a multi-channel case also gets ``ct_channels``.
    Intensity samples are drawn with a generator seeded from ``seed`` and the case id, so a
    re-run gives the same fingerprint. A case without a label (or an empty one) samples the
    body / non-zero region instead of the labelled voxels.
    """
    from medseg.data.transforms import (
        BODY_THRESHOLD_HU,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadVolumed,
        Orientationd,
        mixed_ct_channels,
        mixed_foreground_mask,
    )

    keys = ("image", "label")
    sample = {"image": list(entry.images), "label": entry.label, "meta": {"case_id": entry.case_id}}
    if entry.label is None:
        sample.pop("label")
    sample = LoadVolumed(keys, ct=ct)(sample)
    sample = EnsureChannelFirstd(keys)(sample)
    for path, channel in zip(entry.images, sample["image"]):  # NaN would reach plan.json as non-standard JSON
        if nonfinite := describe_nonfinite(nonfinite_voxels(np.asarray(channel))):
            raise VolumeReadError(
                f"{path}: {nonfinite}; planning needs finite intensities (medseg validate lists them)"
            )
    sample = Orientationd(keys, axcodes=orientation)(sample)
    shape = list(sample["image"].shape[1:])
    cropper = CropForegroundd(keys, mode=crop)
    cropped = cropper(sample)
    image, label = cropped["image"], cropped.get("label")
    meta = cropped["meta"]
    spacing = spacing_from_affine(meta["affine"])
    rng = np.random.default_rng([seed, zlib.crc32(entry.case_id.encode())])
    label_counts: dict[str, int] = {}
    if label is not None:
        counts = np.bincount(label.reshape(-1).astype(np.int64))
        label_counts = {str(v): int(c) for v, c in enumerate(counts) if c}
        foreground = label[0] > 0
    else:
        foreground = None
    if foreground is None or not foreground.any():
        mixed = mixed_ct_channels(meta, image)
        if mixed is not None:
            foreground = mixed_foreground_mask(image, mixed, BODY_THRESHOLD_HU)
        elif meta.get("ct"):
            foreground = image[0] > -500.0
        else:
            foreground = (image != 0).any(axis=0)
    index = np.flatnonzero(foreground.reshape(-1))
    chosen = rng.choice(index, size=min(samples, index.size), replace=False) if index.size else index
    channels = []
    for channel in image:
        flat = channel.reshape(-1)
        values = flat[chosen].astype(np.float64)
        strided = flat[:: max(1, flat.size // 1_000_000)]
        channels.append(
            {
                "samples": [round(float(v), 3) for v in values],
                "nonzero_fraction": float(np.count_nonzero(strided) / max(1, strided.size)),
            }
        )
    result = {
        "case_id": entry.case_id,
        "shape": [int(n) for n in shape],
        "spacing_mm": [round(float(s), 6) for s in spacing],
        "shape_after_crop": [int(n) for n in image.shape[1:]],
        "orientation_original": meta["steps"][0]["orientation"],
        "permutation": [int(a) for a in meta["steps"][1]["permutation"]],
        "spacing_mm_file_order": [round(float(v), 6) for v in meta["steps"][0]["spacing_mm"]],
        "ct": bool(meta.get("ct")),
        "label_voxels": label_counts,
        "channels": channels,
    }
    if len(channels) > 1:
        result["ct_channels"] = [bool(v) for v in meta.get("ct_channels", [meta.get("ct")] * len(channels))]
    return result


def _case_job(args: tuple) -> dict[str, Any]:
    entry, kwargs = args
    try:
        return case_fingerprint(entry, **kwargs)
    except Exception as exc:  # reported per case by the caller
        return {"case_id": entry.case_id, "error": f"{type(exc).__name__}: {exc}"}


def dataset_fingerprint(
    manifest: Manifest,
    *,
    orientation: str = "RAS",
    crop: str = "auto",
    workers: int = 1,
    seed: int = 0,
    progress: bool = False,
    cases: Sequence[CaseEntry] | None = None,
) -> dict[str, Any]:
    """Fingerprint of every case in ``manifest`` (or of ``cases``) and the dataset summary.

    ``workers`` > 1 reads cases in that many processes. Raises
    :class:`~medseg.errors.ConfigError` for an empty manifest and
    :class:`~medseg.errors.MedsegError` listing the cases that could not be read.
    """
    from medseg.errors import ConfigError, MedsegError

    entries = list(cases if cases is not None else manifest.cases)
    if not entries:
        raise ConfigError(f"{manifest.path}: manifest lists no cases; nothing to plan")
    settings = {"orientation": orientation, "crop": crop, "seed": seed}
    jobs = [
        (entry, {"ct": _load_ct_argument(channel_ct_flags(manifest, len(entry.images))), **settings})
        for entry in entries
    ]
    results: list[dict[str, Any]] = []
    if workers > 1:
        from medseg.data.transforms import WORKER_PRELOAD

        with process_context(WORKER_PRELOAD).Pool(workers, initializer=_quiet_worker) as pool:
            iterator = pool.imap(_case_job, jobs)
            results = list(progress_bar(iterator, total=len(jobs), desc="fingerprint", enabled=progress))
    else:
        results = [_case_job(job) for job in progress_bar(jobs, desc="fingerprint", enabled=progress)]
    failed = [r for r in results if "error" in r]
    if failed:
        lines = "; ".join(f"{r['case_id']}: {r['error']}" for r in failed[:5])
        if len(failed) > 5:  # every failed case is named, the reasons of the first five are given
            lines += f"; and {len(failed) - 5} more: {', '.join(r['case_id'] for r in failed[5:])}"
        raise MedsegError(f"{manifest.path}: {len(failed)} case(s) could not be fingerprinted: {lines}")
    return summarize(results, manifest)


def _quiet_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _stats(values: np.ndarray) -> dict[str, list[float]]:
    return {
        "median": [round(float(v), 6) for v in np.median(values, axis=0)],
        "p10": [round(float(v), 6) for v in np.percentile(values, 10, axis=0)],
        "min": [round(float(v), 6) for v in values.min(axis=0)],
        "max": [round(float(v), 6) for v in values.max(axis=0)],
    }


def summarize(cases: list[dict[str, Any]], manifest: Manifest) -> dict[str, Any]:
    """Aggregate per-case fingerprints (see the module docstring). Sample lists are dropped
    from the per-case entries of the result to keep the JSON readable.

    ``ct``: whether most cases read channel 0 as CT; ``ct_channels`` (multi-channel datasets
    only): the same per channel."""
    spacings = np.array([c["spacing_mm"] for c in cases], dtype=np.float64)
    shapes = np.array([c["shape"] for c in cases], dtype=np.float64)
    cropped = np.array([c["shape_after_crop"] for c in cases], dtype=np.float64)
    n_channels = len(cases[0]["channels"])
    intensity = []
    for channel in range(n_channels):
        values = np.concatenate([np.asarray(c["channels"][channel]["samples"], dtype=np.float64) for c in cases])
        if values.size == 0:
            values = np.zeros(1)
        p005, p50, p995 = np.percentile(values, [0.5, 50, 99.5])
        intensity.append(
            {
                "channel": channel,
                "name": manifest.channel_names.get(channel, ""),
                "samples": int(values.size),
                "percentile_00_5": round(float(p005), 4),
                "median": round(float(p50), 4),
                "percentile_99_5": round(float(p995), 4),
                "mean": round(float(values.mean()), 4),
                "std": round(float(values.std()), 4),
                "min": round(float(values.min()), 4),
                "max": round(float(values.max()), 4),
                "median_nonzero_fraction": round(
                    float(np.median([c["channels"][channel]["nonzero_fraction"] for c in cases])), 4
                ),
            }
        )
    totals: dict[int, int] = {}
    present: dict[int, int] = {}
    for case in cases:
        for value, count in case["label_voxels"].items():
            totals[int(value)] = totals.get(int(value), 0) + count
            present[int(value)] = present.get(int(value), 0) + 1
    all_voxels = sum(totals.values()) or 1
    foreground_voxels = sum(c for v, c in totals.items() if v != 0) or 1
    names = manifest.label_names
    classes = {}
    for value in sorted(set(totals) | set(names)):
        count = totals.get(value, 0)
        classes[str(value)] = {
            "name": names.get(value, f"label_{value}"),
            "voxels": int(count),
            "fraction_of_all": round(count / all_voxels, 6),
            "fraction_of_foreground": round(count / foreground_voxels, 6) if value != 0 else None,
            "cases_present": int(present.get(value, 0)),
        }
    undeclared = sorted(v for v in totals if v not in names)
    problem = undeclared_labels_problem(manifest, totals)
    if problem and problem[1]:
        raise ConfigError(f"{manifest.path}: {problem[0]}")
    if problem:
        log.warning("%s: %s", manifest.path, problem[0])
    per_case = [{k: v for k, v in c.items() if k not in ("channels", "ct_channels")} for c in cases]
    per_channel_ct = {}
    if n_channels > 1:  # single-channel fingerprints keep exactly their former keys
        flags = np.array([c.get("ct_channels", [c["ct"]] * n_channels) for c in cases], dtype=bool)
        per_channel_ct = {"ct_channels": [bool(v) for v in flags.mean(axis=0) >= 0.5]}
    return {
        "n_cases": len(cases),
        "ct": bool(np.mean([c["ct"] for c in cases]) >= 0.5),
        **per_channel_ct,
        "orientations_original": sorted({c["orientation_original"] for c in cases}),
        "spacing_mm": _stats(spacings),
        "shape_voxels": _stats(shapes),
        "shape_after_crop_voxels": _stats(cropped),
        "crop_size_fraction_median": round(float(np.median(np.prod(cropped, axis=1) / np.prod(shapes, axis=1))), 4),
        "intensity_foreground": intensity,
        "classes": classes,
        "undeclared_label_values": undeclared,
        "cases": per_case,
    }
