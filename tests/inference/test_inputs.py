"""Finding cases to predict, and sharding them across machines."""

import numpy as np
import pytest
from conftest import shared_path

from medseg.errors import MedsegError
from medseg.inference.inputs import discover_inputs, shard
from medseg.io import Volume, save_volume


def test_folder_of_files_and_channels(tmp_path):
    for name in ("b_0000.nii.gz", "b_0001.nii.gz", "a.nrrd", "c_0000.mha"):
        save_volume(Volume(np.zeros((3, 3, 3), np.float32), np.eye(4)), tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
    # no d_0000 beside it: _0001 is part of the case id (as in evaluate and submit), like amos_0001
    save_volume(Volume(np.zeros((3, 3, 3), np.float32), np.eye(4)), tmp_path / "d_0001.nii.gz")
    save_volume(Volume(np.zeros((3, 3, 3), np.uint8), np.eye(4)), tmp_path / "a_gt.nii.gz")  # a label map: left out
    cases = discover_inputs(tmp_path)
    assert [(c.case_id, [p.name for p in c.channels]) for c in cases] == [
        ("a", ["a.nrrd"]),
        ("b", ["b_0000.nii.gz", "b_0001.nii.gz"]),
        ("c", ["c_0000.mha"]),
        ("d_0001", ["d_0001.nii.gz"]),
    ]
    for given in ("b_0000.nii.gz", "b_0001.nii.gz"):  # one file given: its case comes with every channel
        single = discover_inputs(tmp_path / given)
        assert [(c.case_id, [p.name for p in c.channels]) for c in single] == [
            ("b", ["b_0000.nii.gz", "b_0001.nii.gz"])
        ]


def test_dicom_series_folders(tmp_path):
    lidc = shared_path("chest_ct_lidc/LIDC-IDRI-0001")
    assert [c.case_id for c in discover_inputs(lidc)] == ["LIDC-IDRI-0001"]
    parent = lidc.parent
    assert [c.case_id for c in discover_inputs(parent)] == ["LIDC-IDRI-0001"]


def test_duplicates_and_empty(tmp_path):
    for name in ("x.nii.gz", "x_0000.nii.gz"):
        save_volume(Volume(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / name)
    with pytest.raises(MedsegError, match="case id 'x' is used by both"):
        discover_inputs(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedsegError, match="no volumes to predict"):
        discover_inputs(tmp_path / "empty")


def test_shards_partition_the_cohort(tmp_path):
    from medseg.inference.inputs import InputCase

    cases = [InputCase(f"case_{i:03d}", tmp_path / f"case_{i:03d}.nii.gz") for i in range(200)]
    shards = [shard(cases, 4, k) for k in range(4)]
    ids = [c.case_id for s in shards for c in s]
    assert sorted(ids) == [c.case_id for c in cases]  # every case exactly once
    assert min(len(s) for s in shards) > 30  # roughly balanced
    assert shard(cases[:50], 4, 1) == [c for c in shards[1] if c in cases[:50]]  # independent of the others
    with pytest.raises(MedsegError, match="--shard-id must be in 0..3"):
        shard(cases, 4, 4)
