"""Patch sampling from the preprocessing cache, and the training DataLoader.

:class:`PatchSampler` draws batches of 3D patches, or of 2D slices from the 3D cases (the
slice-wise model uses the same cache), reading only the region it needs from the
memory-mapped ``.npy`` files:

* **foreground oversampling** (nnU-Net): in each batch of ``B`` patches,
  ``floor(B * foreground_ratio)`` patches (plus one more with probability equal to the
  fractional part, so the long-run fraction is exactly ``foreground_ratio``) are forced to
  contain a labelled voxel: a class is drawn uniformly among the classes present in the
  chosen case, a voxel uniformly among that class's stored locations, and the patch is
  centred on it (shifted to stay inside the volume where the volume is large enough);
* **class-balanced** option: forced patches first draw the class uniformly among all
  foreground classes of the dataset, then a case containing it, so rare classes are seen
  as often as common ones;
* other patches are placed uniformly at random inside the volume; volumes smaller than the
  patch are padded (image with the channel minimum, label with 0).

Augmentation (:class:`~medseg.data.augment.Augmenter`) is applied per patch, from a crop
only as large as the drawn rotation/scale needs. Every random number comes from a generator
seeded with ``(seed, epoch, batch index)``, so batches are reproducible whatever the number
of workers.

:func:`make_patch_loader` wraps this in a ``torch.utils.data.DataLoader`` (worker
processes, one torch thread each, pinned memory when CUDA is available, per-rank batches for
distributed training). Batches are dicts: ``image`` float32 ``(B, C, *patch)``, ``label``
uint8 ``(B, 1, *patch)`` (cast with ``.long()`` for losses), ``case_id`` (list of str) and
``forced_class`` (int tensor, -1 where not forced).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config.plan import Configuration
from medseg.data.augment import Augmenter
from medseg.data.cache import CachedCase, load_cache_plan, open_cache
from medseg.data.config import AugmentationConfig
from medseg.errors import ConfigError, InvalidArgumentError


def read_region(
    array: np.ndarray, start: Sequence[int], size: Sequence[int], fill: Sequence[float] | float = 0.0, dtype=None
) -> np.ndarray:
    """Copy the box ``[start, start + size)`` of the last three axes of ``array`` (a NumPy or
    memory-mapped array); parts outside the array are ``fill`` (per leading channel, or one
    value). Only the overlapping region is read, and a box inside the array is copied (and
    converted) in one pass. Returns a new array of ``dtype`` (default float32 for floating
    input, else the input dtype)."""
    lead = array.shape[:-3]
    if dtype is None:
        dtype = np.float32 if np.issubdtype(array.dtype, np.floating) else array.dtype
    source: list[slice] | None = []
    target, inside = [], True
    for axis, (s, n) in enumerate(zip(start, size)):
        extent = array.shape[len(lead) + axis]
        lo, hi = max(0, int(s)), min(extent, int(s) + int(n))
        if hi <= lo:
            source = None  # no overlap: all fill
            break
        inside = inside and (lo, hi) == (int(s), int(s) + int(n))
        source.append(slice(lo, hi))  # type: ignore[union-attr]
        target.append(slice(lo - int(s), hi - int(s)))
    if source is not None and inside:
        return np.array(array[(Ellipsis, *source)], dtype=dtype, order="C")
    out = np.empty(lead + tuple(int(s) for s in size), dtype=dtype)
    if np.isscalar(fill):
        out[...] = fill
    else:
        for channel, value in enumerate(fill):
            out[channel] = value
    if source is not None:
        out[(Ellipsis, *target)] = array[(Ellipsis, *source)]
    return out


class PatchSampler:
    """Draws (augmented) training batches from cached cases (see the module docstring).

    Args:
        cases: cached cases (:func:`~medseg.data.cache.open_cache`).
        patch_size: 3 voxel counts for 3D patches, or 2 for slices (then ``slice_axis``).
        slice_axis: for 2D, the axis slices are taken across (the plan's ``2d.slice_axis``).
        foreground_ratio: long-run fraction of patches forced to contain a label (0..1).
        class_balanced: draw the forced class uniformly over the dataset's classes.
        augmentation: an :class:`Augmenter`, a config (path/dict), ``None`` for the default
            config, or ``False`` for no augmentation.
    """

    def __init__(
        self,
        cases: Sequence[CachedCase],
        patch_size: Sequence[int],
        *,
        slice_axis: int | None = None,
        foreground_ratio: float = 1.0 / 3.0,
        class_balanced: bool = False,
        augmentation: Augmenter | AugmentationConfig | str | Path | Mapping[str, Any] | None | bool = None,
    ):
        if not cases:
            raise InvalidArgumentError("PatchSampler: no cached cases to sample from")
        if not 0.0 <= foreground_ratio <= 1.0:
            raise InvalidArgumentError(f"foreground_ratio: expected a number in [0, 1], got {foreground_ratio}")
        self.cases = list(cases)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.dims = len(self.patch_size)
        if self.dims == 2:
            if slice_axis is None:
                raise InvalidArgumentError(
                    "PatchSampler: 2D patches need slice_axis (the plan's configurations.2d.slice_axis)"
                )
            self.slice_axis = int(slice_axis)
            self.in_plane = [a for a in range(3) if a != self.slice_axis]
            box = list(self.patch_size)
            box.insert(self.slice_axis, 1)
            self.box = tuple(box)
        elif self.dims == 3:
            self.slice_axis, self.in_plane, self.box = None, [0, 1, 2], self.patch_size
        else:
            raise InvalidArgumentError(f"patch_size must have 2 or 3 axes, got {list(patch_size)}")
        self.foreground_ratio = float(foreground_ratio)
        self.class_balanced = class_balanced
        spacing = np.median([c.spacing_mm for c in self.cases], axis=0)
        patch_spacing = spacing[self.in_plane]
        if augmentation is False:
            self.augmenter = None
        elif isinstance(augmentation, Augmenter):
            self.augmenter = augmentation
        else:
            self.augmenter = Augmenter(augmentation, self.patch_size, patch_spacing)
        self._locations: list[dict[int, np.ndarray] | None] = [None] * len(self.cases)
        self._class_cases: dict[int, list[int]] = {}
        for index, case in enumerate(self.cases):
            for value in case.classes_present:
                self._class_cases.setdefault(int(value), []).append(index)
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _open(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Memory-mapped arrays of a case (opened once per process, lazily)."""
        if index not in self._arrays:
            case = self.cases[index]
            self._arrays[index] = (case.image(mmap=True), case.label(mmap=True))
        return self._arrays[index]

    def _class_locations(self, index: int) -> dict[int, np.ndarray]:
        if self._locations[index] is None:
            self._locations[index] = self.cases[index].class_locations()
        return self._locations[index]  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:  # memory maps are reopened in each worker
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    def _start_for(self, shape: Sequence[int], voxel: Sequence[int] | None, rng: np.random.Generator) -> list[int]:
        """Box start (voxels) containing ``voxel`` (centred, kept inside) or uniform at random."""
        start = []
        for axis, (n, p) in enumerate(zip(shape, self.box)):
            if n <= p:
                start.append(-((p - n) // 2))
            elif voxel is None:
                start.append(int(rng.integers(0, n - p + 1)))
            else:
                start.append(int(min(max(int(voxel[axis]) - p // 2, 0), n - p)))
        return start

    def _choose(self, rng: np.random.Generator, forced: bool) -> tuple[int, int | None, np.ndarray | None]:
        """(case index, forced class or None, voxel or None)."""
        if forced and self.class_balanced and self._class_cases:
            value = int(rng.choice(sorted(self._class_cases)))
            index = int(rng.choice(self._class_cases[value]))
        else:
            index = int(rng.integers(len(self.cases)))
            value = None
            if forced:
                present = sorted(self._class_locations(index))
                value = int(rng.choice(present)) if present else None
        if value is None:
            return index, None, None
        locations = self._class_locations(index).get(value)
        if locations is None or len(locations) == 0:
            return index, None, None
        return index, value, locations[int(rng.integers(len(locations)))]

    # -- drawing ---------------------------------------------------------------------------
    def sample_patch(self, rng: np.random.Generator, forced: bool) -> dict[str, Any]:
        """One patch: ``image`` (C, *patch) float32 tensor, ``label`` (1, *patch) uint8 tensor
        or ``None``, ``case_id``, ``forced_class`` (-1 if none)."""
        index, value, voxel = self._choose(rng, forced)
        image_array, label_array = self._open(index)
        case = self.cases[index]
        shape = image_array.shape[1:]
        start = self._start_for(shape, voxel, rng)
        params = self.augmenter.draw(rng) if self.augmenter is not None else None
        box = list(self.box)
        crop_start = list(start)
        if params is not None and params.resamples:
            extent = self.augmenter.source_extent(params)  # type: ignore[union-attr]
            for axis_in_patch, axis in enumerate(self.in_plane):
                centre = start[axis] + (self.box[axis] - 1) / 2
                box[axis] = extent[axis_in_patch]
                crop_start[axis] = int(math.floor(centre - (extent[axis_in_patch] - 1) / 2))
        fill = case.meta.get("channel_min", [0.0] * image_array.shape[0])
        image = read_region(image_array, crop_start, box, fill)
        resamples = params is not None and params.resamples
        label = None
        if label_array is not None:  # float32 when it will be resampled (grid_sample needs float)
            label = read_region(label_array, crop_start, box, 0, np.float32 if resamples else None)[None]
        if self.dims == 2:
            image = image.squeeze(self.slice_axis + 1)
            label = label.squeeze(self.slice_axis + 1) if label is not None else None
        image_t = torch.from_numpy(image)
        label_t = torch.from_numpy(label) if label is not None else None
        if params is not None:
            centre = [start[axis] + (self.box[axis] - 1) / 2 - crop_start[axis] for axis in self.in_plane]
            image_t, label_t = self.augmenter(image_t, label_t, params, centre)  # type: ignore[misc]
        return {
            "image": image_t,
            "label": label_t,
            "case_id": case.case_id,
            "forced_class": -1 if value is None else value,
        }

    def sample_batch(self, batch_size: int, rng: np.random.Generator) -> dict[str, Any]:
        """A batch of ``batch_size`` patches (see the module docstring for the forced share)."""
        expected = batch_size * self.foreground_ratio
        n_forced = int(math.floor(expected)) + int(rng.random() < expected - math.floor(expected))
        patches = [self.sample_patch(rng, forced=i >= batch_size - n_forced) for i in range(batch_size)]
        labels = [p["label"] for p in patches]
        return {
            "image": _stack([p["image"] for p in patches]),
            "label": _stack(labels) if all(label is not None for label in labels) else None,
            "case_id": [p["case_id"] for p in patches],
            "forced_class": torch.tensor([p["forced_class"] for p in patches], dtype=torch.int64),
        }


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack``; inside a DataLoader worker the result is allocated in shared memory
    directly, so handing the batch to the main process needs no further copy."""
    if torch.utils.data.get_worker_info() is None:
        return torch.stack(tensors)
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype).share_memory_()
    return torch.stack(tensors, out=out)


class PatchBatchDataset(torch.utils.data.Dataset):
    """Map-style dataset whose item ``(epoch, batch_index)`` is a whole batch, drawn with the
    generator ``numpy.random.default_rng([seed, epoch, batch_index])`` (reproducible with any
    number of workers). A plain integer key means epoch 0."""

    def __init__(self, sampler: PatchSampler, batch_size: int, batches_per_epoch: int, seed: int = 0):
        self.sampler, self.batch_size, self.batches_per_epoch, self.seed = (
            sampler,
            int(batch_size),
            int(batches_per_epoch),
            int(seed),
        )

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        return self.sampler.sample_batch(self.batch_size, rng)


class EpochBatchSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, batch_index)`` keys: ``batches_per_epoch`` per epoch, split across
    ``world_size`` ranks (rank r gets indices r, r + world_size, ...). The epoch advances at
    every new iteration, or is set with :meth:`set_epoch` (e.g. when resuming)."""

    def __init__(self, batches_per_epoch: int, *, epoch: int = 0, rank: int = 0, world_size: int = 1):
        self.batches_per_epoch, self.epoch, self.rank, self.world_size = (
            int(batches_per_epoch),
            int(epoch),
            int(rank),
            int(world_size),
        )
        self._started = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._started = int(epoch), False

    def __len__(self) -> int:
        return len(range(self.rank, self.batches_per_epoch * self.world_size, self.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self._started:
            self.epoch += 1
        self._started = True
        epoch = self.epoch
        for index in range(self.rank, self.batches_per_epoch * self.world_size, self.world_size):
            yield (epoch, index)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_patch_loader(
    cache_dir: str | Path,
    *,
    configuration: str | Configuration = "3d",
    case_ids: Sequence[str] | None = None,
    augmentation: AugmentationConfig | str | Path | Mapping[str, Any] | None | bool = None,
    patch_size: Sequence[int] | None = None,
    batch_size: int | None = None,
    batches_per_epoch: int = 250,
    foreground_ratio: float = 1.0 / 3.0,
    class_balanced: bool = False,
    num_workers: int = 2,
    seed: int = 0,
    epoch: int = 0,
    pin_memory: bool | None = None,
    prefetch_factor: int = 2,
    rank: int = 0,
    world_size: int = 1,
) -> torch.utils.data.DataLoader:
    """Training DataLoader over a preprocessing cache.

    ``configuration``: the network being trained (a :class:`~medseg.config.plan.Configuration`)
    or the name of one in the cache's plan (``"3d"`` or ``"2d"``); it gives the patch size,
    batch size and (2D) slice axis unless ``patch_size`` / ``batch_size`` are given.
    ``case_ids`` restricts to a fold's training cases. ``augmentation``: an
    :class:`~medseg.data.config.AugmentationConfig`, config path or dict, ``None`` (default
    config) or ``False`` (none). Workers use one torch thread each and are
    persistent; ``pin_memory`` defaults to ``torch.cuda.is_available()``. ``rank`` /
    ``world_size`` give each distributed process its own batches. The loader's
    ``batch_sampler``-like ``sampler`` is an :class:`EpochBatchSampler`
    (``loader.sampler.set_epoch(e)`` when resuming).
    """
    if not isinstance(configuration, Configuration):
        try:
            configuration = load_cache_plan(cache_dir).configuration(configuration)
        except ConfigError as error:
            raise ConfigError(f"{cache_dir}: {error}") from None
    cases = open_cache(cache_dir, case_ids)
    sampler = PatchSampler(
        cases,
        patch_size or configuration.patch_size,
        slice_axis=configuration.slice_axis,
        foreground_ratio=foreground_ratio,
        class_balanced=class_balanced,
        augmentation=augmentation,
    )
    dataset = PatchBatchDataset(sampler, batch_size or configuration.batch_size, batches_per_epoch, seed)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=_worker_init)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=EpochBatchSampler(batches_per_epoch, epoch=epoch, rank=rank, world_size=world_size),
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )
