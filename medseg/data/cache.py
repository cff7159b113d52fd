"""The preprocessing cache: every case preprocessed once, stored memory-mappable.

Layout of a cache folder (``medseg preprocess --out CACHE``)::

    CACHE/plan.json            the plan the cache was made with
    CACHE/<case>.npy           image, float32 (or float16) (C, X, Y, Z), channels first
    CACHE/<case>_seg.npy       label map, uint8 (X, Y, Z) (absent for unlabelled cases)
    CACHE/<case>.json          geometry and record: original shape/affine, transform steps,
                               grid affine and spacing, classes present, per-channel min/max,
                               and ``class_locations``: up to N voxel coordinates [x, y, z]
                               per foreground class (for foreground oversampling)
    CACHE/summary.json         what the last run did (done / skipped / failed, timings)
    CACHE/failed.json          cases that failed in the last run and why (absent if none)

Arrays are written with :func:`numpy.save`, so ``np.load(path, mmap_mode="r")`` maps them and
a patch read touches only the patch's pages. Every file is written atomically
(:func:`medseg.io.atomic_path`: temporary file in the same folder, then ``os.replace``;
``plan.json`` with :func:`medseg.config.plan.save_plan`, like every plan) and
the case JSON is written last, so a case counts as done only when all its files are
complete. A case is skipped when its JSON records the same input signature: sizes and
modification times of its input files (every file of a DICOM folder) and the hash of the
plan's ``preprocessing`` section.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.common.jsonio import readable_json
from medseg.common.processes import process_context
from medseg.common.progress import progress_bar
from medseg.config.plan import Plan, load_plan, preprocessing_hash, save_plan
from medseg.data.manifest import CaseEntry, Manifest
from medseg.errors import ConfigError, InvalidArgumentError, MedsegError
from medseg.io import atomic_save_npy, atomic_write_text, spacing_from_affine
from medseg.io.describe import describe_nonfinite, nonfinite_voxels

log = logging.getLogger(__name__)

CACHE_VERSION = 1


# -- signatures -----------------------------------------------------------------------------
def _file_facts(path: Path) -> list[list[Any]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        files = [path]
    facts = []
    for file in files:
        stat = file.stat()
        facts.append([str(file), stat.st_size, stat.st_mtime_ns])
    return facts


def input_signature(entry: CaseEntry, plan: Plan) -> str:
    """Hash of the case's input files (path, size, mtime) and the plan's preprocessing section.

    Raises ``FileNotFoundError`` when an input is missing.
    """
    facts: list[Any] = [CACHE_VERSION, preprocessing_hash(plan)]
    for path in list(entry.images) + ([entry.label] if entry.label else []):
        facts.append(_file_facts(Path(path)))
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:24]


# -- one case ---------------------------------------------------------------------------------
def case_files(cache_dir: str | Path, case_id: str) -> dict[str, Path]:
    """Paths of a cached case's files: ``image`` (.npy), ``label`` (_seg.npy) and ``meta`` (.json)."""
    cache_dir = Path(cache_dir)
    return {
        "image": cache_dir / f"{case_id}.npy",
        "label": cache_dir / f"{case_id}_seg.npy",
        "meta": cache_dir / f"{case_id}.json",
    }


def sample_class_locations(
    label: np.ndarray, per_class: int, seed: int = 0, chunk_voxels: int = 1 << 24
) -> dict[str, list[list[int]]]:
    """Up to ``per_class`` voxel coordinates ``[x, y, z]`` per foreground class (value > 0),
    drawn uniformly without replacement (seeded). Works through the flattened label in chunks
    of ``chunk_voxels`` so memory stays bounded for large volumes. Empty label map: ``{}``."""
    rng = np.random.default_rng(seed)
    flat = label.reshape(-1)
    counts = np.bincount(flat) if flat.dtype == np.uint8 else None
    if counts is None:
        values, value_counts = np.unique(flat, return_counts=True)
        counts_by_value = dict(zip(values.tolist(), value_counts.tolist()))
    else:
        counts_by_value = {v: int(c) for v, c in enumerate(counts) if c}
    locations: dict[str, list[list[int]]] = {}
    for value, count in sorted(counts_by_value.items()):
        if value == 0 or count == 0:
            continue
        ranks = np.sort(rng.choice(count, size=min(per_class, count), replace=False))
        chosen, seen = [], 0
        for start in range(0, flat.size, chunk_voxels):
            index = np.flatnonzero(flat[start : start + chunk_voxels] == value)
            lo, hi = np.searchsorted(ranks, seen), np.searchsorted(ranks, seen + index.size)
            if hi > lo:
                chosen.append(index[ranks[lo:hi] - seen] + start)
            seen += index.size
        flat_index = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        coords = np.stack(np.unravel_index(flat_index, label.shape), axis=1)
        locations[str(int(value))] = coords.astype(int).tolist()
    return locations


def _case_json(meta: Mapping[str, Any], class_locations: Mapping[str, Any]) -> str:
    """Readable JSON, with the (long) class location lists written compactly at the end."""
    head = readable_json(dict(meta))
    locs = json.dumps(class_locations, separators=(",", ":"))
    return head[:-2] + ',\n  "class_locations": ' + locs + "\n}\n"


def preprocess_case_to_cache(
    entry: CaseEntry, plan: Plan, cache_dir: str | Path, signature: str | None = None
) -> dict[str, Any]:
    """Preprocess one case with the plan and write its files (see the module docstring).

    Returns a short summary (case id, shapes, seconds). Errors propagate (the caller names
    the case).
    """
    from medseg.data.transforms import preprocess_case

    start = time.perf_counter()
    pre = plan.preprocessing
    sample = preprocess_case(list(entry.images), pre, label=entry.label, case_id=entry.case_id)
    files = case_files(cache_dir, entry.case_id)
    dtype = np.float16 if pre.cache_dtype == "float16" else np.float32
    image = sample["image"]
    channel_min = [float(c.min()) for c in image]
    channel_max = [float(c.max()) for c in image]
    # NaN propagates into min/max and inf shows there: the extrema already tell whether every voxel is finite
    if not np.all(np.isfinite(channel_min + channel_max)):  # they would poison every batch they are in
        names = ", ".join(str(path) for path in entry.images)
        raise MedsegError(
            f"{names}: the image holds NaN or inf ({describe_nonfinite(nonfinite_voxels(image))} after "
            "preprocessing); training needs finite intensities (medseg validate counts them per image)"
        )
    atomic_save_npy(files["image"], image.astype(dtype, copy=False))
    del image
    label = sample.get("label")
    classes: dict[str, int] = {}
    locations: dict[str, list[list[int]]] = {}
    if label is not None:
        label = label[0]
        if label.dtype != np.uint8:
            if label.max() > 255:
                raise MedsegError(f"{entry.case_id}: label values up to {label.max()} do not fit the cache's uint8")
            label = label.astype(np.uint8)
        counts = np.bincount(label.reshape(-1), minlength=1)
        classes = {str(v): int(c) for v, c in enumerate(counts) if c}
        seed = zlib.crc32(entry.case_id.encode())
        locations = sample_class_locations(label, pre.class_locations_per_class, seed)
        atomic_save_npy(files["label"], label)
    elif files["label"].exists():
        files["label"].unlink()
    meta = sample["meta"]
    affine = np.asarray(meta["affine"], dtype=np.float64)
    record = {
        "case_id": entry.case_id,
        "cache_version": CACHE_VERSION,
        "input_signature": signature or input_signature(entry, plan),
        "plan_hash": preprocessing_hash(plan),
        "image_file": files["image"].name,
        "label_file": files["label"].name if label is not None else None,
        "image_dtype": np.dtype(dtype).name,
        "n_channels": int(len(channel_min)),
        "shape": [int(n) for n in sample["image"].shape[1:]],
        "spacing_mm": [round(float(s), 6) for s in spacing_from_affine(affine)],
        "affine": meta["affine"],
        "ct": bool(meta.get("ct")),
        **({"ct_channels": [bool(v) for v in meta["ct_channels"]]} if "ct_channels" in meta else {}),
        "channel_min": channel_min,
        "channel_max": channel_max,
        "class_voxels": classes,
        "classes_present": sorted(int(v) for v in classes if int(v) != 0),
        "original": meta["original"],
        "steps": meta["steps"],
    }
    atomic_write_text(files["meta"], _case_json(record, locations))
    return {"case_id": entry.case_id, "shape": record["shape"], "seconds": round(time.perf_counter() - start, 3)}


def _job(args: tuple) -> dict[str, Any]:
    entry, plan, cache_dir, signature = args
    try:
        return preprocess_case_to_cache(entry, plan, cache_dir, signature)
    except MedsegError as exc:
        return {"case_id": entry.case_id, "error": str(exc)}
    except Exception as exc:  # any failure in one case is reported, the others go on
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return {
            "case_id": entry.case_id,
            "error": f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})",
        }


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def is_cached(cache_dir: str | Path, case_id: str, signature: str) -> bool:
    """Whether the case's files exist and its JSON records ``signature``."""
    files = case_files(cache_dir, case_id)
    if not files["meta"].exists() or not files["image"].exists():
        return False
    try:
        meta = json.loads(files["meta"].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    if meta.get("input_signature") != signature:
        return False
    return meta.get("label_file") is None or files["label"].exists()


@dataclass
class PreprocessReport:
    """Outcome of :func:`preprocess_dataset`: case ids done, skipped (already cached) and
    failed (with the reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"done": self.done, "skipped": self.skipped, "failed": self.failed, "seconds": round(self.seconds, 2)}


def preprocess_dataset(
    manifest: Manifest,
    plan: Plan | str | Path | Mapping[str, Any],
    cache_dir: str | Path,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    case_ids: Sequence[str] | None = None,
) -> PreprocessReport:
    """Preprocess every case of ``manifest`` into ``cache_dir`` (see the module docstring).

    Cases whose cached JSON records the same input signature are skipped unless
    ``overwrite``. ``workers`` > 1 runs cases in that many processes (each with one torch
    thread). A case that raises, or whose worker process dies (e.g. killed for memory), is
    recorded in ``failed.json`` with the reason while the others complete; the report lists
    it. ``progress`` shows a progress bar. ``plan``: a :class:`~medseg.config.plan.Plan` (or what
    :func:`~medseg.config.plan.load_plan` reads). Raises :class:`ConfigError` for an empty
    manifest or unknown ``case_ids``.
    """
    plan = load_plan(plan)
    started = time.perf_counter()
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    entries = list(manifest.cases)
    if case_ids is not None:
        known = {e.case_id for e in entries}
        unknown = [c for c in case_ids if c not in known]
        if unknown:
            raise InvalidArgumentError(f"{manifest.path}: no case(s) {', '.join(unknown)} in the manifest")
        entries = [e for e in entries if e.case_id in set(case_ids)]
    if not entries:
        raise ConfigError(f"{manifest.path}: manifest lists no cases; nothing to preprocess")
    save_plan(plan, cache_dir / "plan.json")
    report = PreprocessReport()
    jobs = []
    for entry in entries:
        try:
            signature = input_signature(entry, plan)
        except OSError as exc:
            report.failed[entry.case_id] = f"input missing or unreadable: {exc}"
            continue
        if not overwrite and is_cached(cache_dir, entry.case_id, signature):
            report.skipped.append(entry.case_id)
            continue
        jobs.append((entry, plan, str(cache_dir), signature))
    with progress_bar(total=len(jobs), desc="preprocess", enabled=progress and bool(jobs)) as bar:
        for result in _run_jobs(jobs, workers):
            if "error" in result:
                report.failed[result["case_id"]] = result["error"]
                log.warning("case %s failed: %s", result["case_id"], result["error"])
            else:
                report.done.append(result["case_id"])
            bar.update(1)
    report.seconds = time.perf_counter() - started
    summary = {
        "cache_version": CACHE_VERSION,
        "manifest": str(manifest.path),
        "cases": len(entries),
        **report.as_dict(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_text(cache_dir / "summary.json", readable_json(summary) + "\n")
    failed_file = cache_dir / "failed.json"
    if report.failed:
        atomic_write_text(failed_file, json.dumps(report.failed, indent=2) + "\n")
    elif failed_file.exists():
        failed_file.unlink()
    return report


def _run_jobs(jobs: list[tuple], workers: int) -> Iterable[dict[str, Any]]:
    """Results of ``_job`` for every job, in completion order. With workers, a dead worker
    process breaks the pool: the unfinished cases are then retried one per fresh process, so
    the case that kills its process is the one named."""
    if not jobs:
        return
    if workers <= 1:
        for job in jobs:
            yield _job(job)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from medseg.data.transforms import WORKER_PRELOAD

    context = process_context(WORKER_PRELOAD)
    pending = list(jobs)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_worker_init) as pool:
        futures = {pool.submit(_job, job): job for job in pending}
        broken: list[tuple] = []
        for future in as_completed(futures):
            try:
                yield future.result()
            except BrokenProcessPool:
                broken.append(futures[future])
    for job in broken:  # isolate: one fresh process per case
        with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_init) as pool:
            try:
                yield pool.submit(_job, job).result()
            except BrokenProcessPool:
                yield {
                    "case_id": job[0].case_id,
                    "error": "the worker process died while preprocessing this case (killed, e.g. out of memory, or "
                    "crashed)",
                }


# -- reading the cache ----------------------------------------------------------------------
@dataclass
class CachedCase:
    """One preprocessed case in a cache folder. Arrays are opened memory-mapped on demand."""

    case_id: str
    meta: dict[str, Any]
    folder: Path

    @property
    def image_path(self) -> Path:
        return self.folder / self.meta["image_file"]

    @property
    def label_path(self) -> Path | None:
        return self.folder / self.meta["label_file"] if self.meta.get("label_file") else None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (voxels) of the preprocessed grid."""
        return tuple(self.meta["shape"])  # type: ignore[return-value]

    @property
    def spacing_mm(self) -> list[float]:
        return list(self.meta["spacing_mm"])

    @property
    def classes_present(self) -> list[int]:
        return list(self.meta.get("classes_present", []))

    def image(self, mmap: bool = True) -> np.ndarray:
        """``(C, X, Y, Z)`` image; memory-mapped read-only unless ``mmap=False``."""
        return np.load(self.image_path, mmap_mode="r" if mmap else None)

    def label(self, mmap: bool = True) -> np.ndarray | None:
        """``(X, Y, Z)`` uint8 label map (``None`` for an unlabelled case)."""
        return np.load(self.label_path, mmap_mode="r" if mmap else None) if self.label_path else None

    def class_locations(self) -> dict[int, np.ndarray]:
        """Foreground class value -> ``(N, 3)`` int array of voxel coordinates."""
        return {
            int(k): np.asarray(v, dtype=np.int64).reshape(-1, 3)
            for k, v in self.meta.get("class_locations", {}).items()
        }


def open_cache(cache_dir: str | Path, case_ids: Sequence[str] | None = None) -> list[CachedCase]:
    """The cached cases of a folder (all, or those in ``case_ids`` in that order).

    Raises :class:`ConfigError` when the folder holds no cache or a requested case is missing.
    """
    cache_dir = Path(cache_dir).expanduser()
    if not (cache_dir / "plan.json").exists():
        raise ConfigError(f"{cache_dir}: not a preprocessing cache (no plan.json; run `medseg preprocess`)")
    metas = {}
    for path in sorted(cache_dir.glob("*.json")):
        if path.name in ("plan.json", "summary.json", "failed.json"):
            continue
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable cached case JSON ({exc})") from None
        if "case_id" in meta and (cache_dir / meta.get("image_file", "")).exists():
            metas[meta["case_id"]] = meta
    wanted = list(case_ids) if case_ids is not None else sorted(metas)
    missing = [c for c in wanted if c not in metas]
    if missing:
        raise ConfigError(f"{cache_dir}: case(s) {', '.join(missing[:10])} are not in the cache")
    return [CachedCase(c, metas[c], cache_dir) for c in wanted]


def load_cache_plan(cache_dir: str | Path) -> Plan:
    """The plan stored in a cache folder."""
    return load_plan(Path(cache_dir).expanduser() / "plan.json")
