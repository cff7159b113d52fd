"""Run-length codec, 2D image naming and label maps of medseg.submission."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medseg.errors import InvalidArgumentError
from medseg.submission import (
    parse_allowed_labels,
    parse_label_map,
    parse_slice_image_id,
    remap_labels,
    rle_decode,
    rle_encode,
    slice_image_id,
    volume_rle_rows,
)


def _reference_rle(mask: np.ndarray) -> str:
    """Slow, obviously-correct encoder: walk the pixels in column-major order."""
    runs, start = [], None
    flat = [int(v) for v in mask.T.ravel()]  # transpose + C order = column-major
    for index, value in enumerate(flat + [0]):
        if value and start is None:
            start = index
        if not value and start is not None:
            runs += [start + 1, index - start]
            start = None
    return " ".join(map(str, runs))


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_round_trip_and_match_reference(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 40, size=2))
    mask = rng.random(shape) < rng.uniform(0.05, 0.95)
    encoded = rle_encode(mask)
    assert encoded == _reference_rle(mask)
    decoded = rle_decode(encoded, shape)
    assert decoded.dtype == np.uint8 and decoded.shape == shape
    np.testing.assert_array_equal(decoded, mask.astype(np.uint8))
    assert rle_encode(decoded) == encoded


def test_empty_and_full_masks():
    empty = np.zeros((7, 5), np.uint8)
    assert rle_encode(empty) == ""
    np.testing.assert_array_equal(rle_decode("", (7, 5)), empty)
    np.testing.assert_array_equal(rle_decode("  ", (7, 5)), empty)
    full = np.ones((7, 5), bool)
    assert rle_encode(full) == "1 35"
    np.testing.assert_array_equal(rle_decode("1 35", (7, 5)), full)
    assert rle_encode(np.zeros((0, 4))) == ""


def test_column_major_one_based_convention():
    mask = np.zeros((3, 4), np.uint8)  # 3 rows (axis 0), 4 columns (axis 1)
    mask[0, 0] = 1  # pixel 1
    mask[1:3, 0] = 1  # pixels 2-3: same run as pixel 1 (down the first column)
    mask[2, 1] = 1  # pixel 1 + 2 + 1 * 3 = 6
    mask[0, 3] = 1  # pixel 1 + 0 + 3 * 3 = 10
    assert rle_encode(mask) == "1 3 6 1 10 1"
    assert rle_decode("10 1", (3, 4))[0, 3] == 1


def test_decode_rejects_invalid_runs():
    with pytest.raises(ValueError, match="odd number"):
        rle_decode("1 2 3", (4, 4))
    with pytest.raises(ValueError, match="past the last pixel"):
        rle_decode("15 3", (4, 4))
    with pytest.raises(ValueError, match="1-based"):
        rle_decode("0 2", (4, 4))
    with pytest.raises(ValueError, match="overlaps"):
        rle_decode("1 5 3 2", (4, 4))
    with pytest.raises(ValueError, match="length"):
        rle_decode("3 0", (4, 4))
    with pytest.raises(ValueError, match="non-integers"):
        rle_decode("1 x", (4, 4))
    np.testing.assert_array_equal(rle_decode("1 2 3 2", (4, 1)).ravel(), [1, 1, 1, 1])  # touching runs are valid


def test_encode_rejects_non_binary_and_non_2d():
    with pytest.raises(ValueError, match="binary"):
        rle_encode(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="2D"):
        rle_encode(np.zeros((2, 2, 2)))


def test_slice_names_round_trip_and_volume_rows():
    assert slice_image_id("patient001_ED", 7) == "patient001_ED_slice_007"
    assert parse_slice_image_id("patient001_ED_slice_007") == ("patient001_ED", 7)
    assert parse_slice_image_id("case_slice_1234") == ("case", 1234)
    assert parse_slice_image_id("case_007") is None
    labels = np.zeros((4, 3, 2), np.uint8)
    labels[1, 2, 1] = 2  # slice k=1, pixel 1 + 1 + 2 * 4 = 10
    assert volume_rle_rows("c", labels) == [("c_slice_000", ""), ("c_slice_001", "10 1")]
    assert volume_rle_rows("c", labels, classes=[1, 2])[2:] == [("c_slice_001", 1, ""), ("c_slice_001", 2, "10 1")]


def test_label_map_parsing(tmp_path):
    assert parse_label_map("1:2,2:1") == {1: 2, 2: 1}
    assert parse_label_map(None) == {} and parse_label_map("") == {}
    (tmp_path / "map.json").write_text(json.dumps({"1": 3, "3": 1}), encoding="utf-8")
    assert parse_label_map(tmp_path / "map.json") == {1: 3, 3: 1}
    (tmp_path / "map.yaml").write_text("label_map:\n  1: 0\n  4: 2\n", encoding="utf-8")
    assert parse_label_map(str(tmp_path / "map.yaml")) == {1: 0, 4: 2}
    for bad in ("1-2", "1:2,1:3", "1:300", "a:b"):
        with pytest.raises(InvalidArgumentError):
            parse_label_map(bad)


def test_remap_swaps_and_keeps_unlisted_labels():
    labels = np.array([[0, 1, 2, 3]], np.uint8)
    np.testing.assert_array_equal(remap_labels(labels, {1: 2, 2: 1}), [[0, 2, 1, 3]])
    np.testing.assert_array_equal(remap_labels(labels, {3: 0}), [[0, 1, 2, 0]])
    assert remap_labels(labels, {}) is labels


def test_allowed_label_specs(tmp_path):
    assert parse_allowed_labels("1,2") == {0, 1, 2}
    assert parse_allowed_labels("0-3,7") == {0, 1, 2, 3, 7}
    assert parse_allowed_labels(None) is None
    (tmp_path / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "liver": 1, "tumour": 2}}), encoding="utf-8"
    )
    assert parse_allowed_labels(tmp_path / "dataset.json") == {0, 1, 2}
    (tmp_path / "v1.json").write_text(
        json.dumps({"labels": {"0": "background", "1": "PZ", "2": "TZ"}}), encoding="utf-8"
    )
    assert parse_allowed_labels(str(tmp_path / "v1.json")) == {0, 1, 2}
    with pytest.raises(InvalidArgumentError):
        parse_allowed_labels("3-1")
