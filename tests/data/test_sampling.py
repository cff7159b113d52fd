"""Patch sampling from the cache: foreground ratio, class balance, 2D slices, mmap reads,
determinism with a seed, and the DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_synthetic import write_dataset

from medseg.data.cache import open_cache, preprocess_dataset
from medseg.data.manifest import load_manifest
from medseg.data.planning import plan_dataset
from medseg.data.sampling import EpochBatchSampler, PatchBatchDataset, PatchSampler, make_patch_loader, read_region


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    manifest = load_manifest(write_dataset(root / "data", n=4, ct=False))
    plan = plan_dataset(manifest)
    preprocess_dataset(manifest, plan, root / "cache")
    return root / "cache"


@pytest.fixture(scope="module")
def cases(cache_dir):
    return open_cache(cache_dir)


def _contains(label: torch.Tensor, value: int) -> bool:
    return bool((label == value).any())


def test_forced_foreground_share_over_many_batches(cases):
    sampler = PatchSampler(cases, (16, 16, 8), foreground_ratio=1 / 3, augmentation=False)
    rng = np.random.default_rng(0)
    forced = with_foreground = total = 0
    for _ in range(120):
        batch = sampler.sample_batch(3, rng)
        for label, forced_class in zip(batch["label"], batch["forced_class"].tolist()):
            total += 1
            with_foreground += _contains(label, 1) or _contains(label, 2)
            if forced_class >= 0:
                forced += 1
                assert _contains(label, forced_class)  # a forced patch holds its class
        assert int((batch["forced_class"] >= 0).sum()) == 1  # exactly 1 of 3 in every batch
    assert forced / total == pytest.approx(1 / 3)
    assert with_foreground / total >= 1 / 3


def test_fractional_foreground_ratio_holds_in_the_long_run(cases):
    sampler = PatchSampler(cases, (8, 8, 4), foreground_ratio=0.4, augmentation=False)
    rng = np.random.default_rng(1)
    forced = sum(int((sampler.sample_batch(2, rng)["forced_class"] >= 0).sum()) for _ in range(600))
    assert forced / 1200 == pytest.approx(0.4, abs=0.04)


def test_class_balanced_sampling_reaches_a_rare_class(tmp_path):
    manifest = load_manifest(write_dataset(tmp_path / "data", n=4))
    plan = plan_dataset(manifest)
    preprocess_dataset(manifest, plan, tmp_path / "cache")
    cases = open_cache(tmp_path / "cache")
    # make class 2 rare: only case_00 keeps its locations
    for case in cases[1:]:
        case.meta["classes_present"] = [1]
        case.meta["class_locations"] = {"1": case.meta["class_locations"]["1"]}
    shares = {}
    for balanced in (False, True):
        sampler = PatchSampler(cases, (8, 8, 4), foreground_ratio=1.0, class_balanced=balanced, augmentation=False)
        rng = np.random.default_rng(2)
        drawn = [c for _ in range(200) for c in sampler.sample_batch(2, rng)["forced_class"].tolist()]
        shares[balanced] = drawn.count(2) / len(drawn)
    assert shares[False] == pytest.approx(1 / 8, abs=0.05)  # 1 case in 4, then 1 class in 2
    assert shares[True] == pytest.approx(1 / 2, abs=0.07)


def test_2d_slices_come_from_the_3d_cache(cases):
    sampler = PatchSampler(cases, (24, 24), slice_axis=2, foreground_ratio=0.5, augmentation=None)
    batch = sampler.sample_batch(6, np.random.default_rng(3))
    assert batch["image"].shape == (6, 1, 24, 24) and batch["label"].shape == (6, 1, 24, 24)
    assert batch["image"].dtype == torch.float32 and batch["label"].dtype == torch.uint8
    for label, forced_class in zip(batch["label"], batch["forced_class"].tolist()):
        if forced_class >= 0:
            assert _contains(label, forced_class)
    with pytest.raises(Exception, match="slice_axis"):
        PatchSampler(cases, (24, 24))


def test_read_region_reads_only_the_overlap_and_fills_outside(cases):
    image = cases[0].image()
    assert isinstance(image, np.memmap)
    region = read_region(image, (-3, 2, 1), (8, 6, 4), fill=[-7.0])
    assert region.shape == (1, 8, 6, 4) and not isinstance(region, np.memmap)
    np.testing.assert_array_equal(region[:, :3], -7.0)
    np.testing.assert_array_equal(region[:, 3:], image[:, 0:5, 2:8, 1:5])
    label = read_region(cases[0].label(), (0, 0, -2), (4, 4, 4), 0)
    assert label.dtype == np.uint8 and np.all(label[..., :2] == 0)
    inside = read_region(cases[0].label(), (1, 2, 1), (3, 4, 2), 0, np.float32)  # one copy, converted
    assert inside.dtype == np.float32 and inside.flags.c_contiguous and not isinstance(inside, np.memmap)
    np.testing.assert_array_equal(inside, cases[0].label()[1:4, 2:6, 1:3])
    assert np.all(read_region(image, (-50, 0, 0), (4, 4, 4), fill=[-7.0]) == -7.0)  # no overlap at all


def test_patches_larger_than_the_volume_are_padded(cases):
    big = tuple(int(n) + 6 for n in cases[0].shape)
    sampler = PatchSampler(cases[:1], big, foreground_ratio=0.0, augmentation=False)
    batch = sampler.sample_batch(1, np.random.default_rng(0))
    assert batch["image"].shape == (1, 1, *big)
    assert float(batch["image"][0, 0, 0, 0, 0]) == pytest.approx(cases[0].meta["channel_min"][0])
    assert int(batch["label"][0, 0, 0, 0, 0]) == 0


def test_batches_are_deterministic_given_seed_epoch_and_index(cases):
    sampler = PatchSampler(cases, (16, 16, 8), augmentation=None)
    dataset = PatchBatchDataset(sampler, batch_size=2, batches_per_epoch=4, seed=7)
    a, b = dataset[(1, 2)], dataset[(1, 2)]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(dataset[(2, 2)]["image"], a["image"])
    assert not torch.equal(PatchBatchDataset(sampler, 2, 4, seed=8)[(1, 2)]["image"], a["image"])
    keys = EpochBatchSampler(3, rank=1, world_size=2)
    assert list(keys) == [(0, 1), (0, 3), (0, 5)] and list(keys) == [(1, 1), (1, 3), (1, 5)]


def test_loader_with_workers_gives_the_same_batches_as_without(cache_dir):
    common = dict(batches_per_epoch=3, batch_size=2, seed=3, patch_size=(16, 16, 8))
    plain = [b for b in make_patch_loader(cache_dir, num_workers=0, **common)]
    loader = make_patch_loader(cache_dir, num_workers=2, **common)
    first = list(loader)
    second = list(loader)  # next epoch: different batches
    for x, y in zip(plain, first):
        assert (
            torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"]) and x["case_id"] == y["case_id"]
        )
    assert not torch.equal(first[0]["image"], second[0]["image"])
    assert first[0]["image"].shape == (2, 1, 16, 16, 8)
    two_d = next(iter(make_patch_loader(cache_dir, configuration="2d", num_workers=0, batches_per_epoch=1)))
    assert two_d["image"].ndim == 4
