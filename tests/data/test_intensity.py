"""Intensity normalisation schemes (CT window / percentiles + z-score, MRI z-score, percentile)."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.data.intensity import check_scheme, normalize
from medseg.data.transforms import NormalizeIntensityd
from medseg.errors import ConfigError


def test_ct_scheme_clips_to_the_window_then_z_scores():
    hu = np.array([-3000.0, -1000.0, 0.0, 40.0, 1000.0, 3000.0], np.float32).reshape(1, 1, 6)
    used = normalize(hu, {"scheme": "ct", "clip": [-1000, 1000], "mean": 40.0, "std": 20.0})
    np.testing.assert_allclose(hu.ravel(), [-52.0, -52.0, -2.0, 0.0, 48.0, 48.0])
    assert used == {"scheme": "ct", "clip": [-1000.0, 1000.0], "mean": 40.0, "std": 20.0}


def test_window_maps_to_unit_range():
    hu = np.array([-2000.0, -1000.0, -300.0, 400.0, 900.0], np.float32).reshape(1, 1, 5)
    normalize(hu, {"scheme": "window", "clip": [-1000, 400]})
    np.testing.assert_allclose(hu.ravel(), [0.0, 0.0, 0.5, 1.0, 1.0])


def test_zscore_with_and_without_the_nonzero_mask():
    rng = np.random.default_rng(0)
    image = np.zeros((20, 20, 20), np.float32)
    image[5:15, 5:15, 5:15] = rng.normal(300, 50, (10, 10, 10))
    plain = image.copy()
    normalize(plain, {"scheme": "zscore"})
    assert abs(plain.mean()) < 1e-4 and abs(plain.std() - 1) < 1e-3
    masked = image.copy()
    used = normalize(masked, {"scheme": "zscore", "use_nonzero_mask": True})
    inside = masked[5:15, 5:15, 5:15]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3
    assert np.all(masked[:5] == 0) and used["use_nonzero_mask"] is True


def test_percentile_scaling_and_none():
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    normalize(image, {"scheme": "percentile", "percentiles": [1, 99]})
    assert image.min() == 0.0 and image.max() == 1.0
    untouched = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    normalize(untouched, {"scheme": "none"})
    np.testing.assert_array_equal(untouched, np.arange(8).reshape(2, 2, 2))


def test_transform_normalises_each_channel_and_records_parameters():
    image = np.stack([np.full((4, 4, 4), -500, np.int16), np.arange(64, dtype=np.int16).reshape(4, 4, 4)])
    sample = {"image": image, "meta": {"steps": []}}
    out = NormalizeIntensityd(schemes=[{"scheme": "window", "clip": [-1000, 0]}, {"scheme": "zscore"}])(sample)
    assert out["image"].dtype == np.float32 and np.allclose(out["image"][0], 0.5)
    record = out["meta"]["steps"][-1]
    assert record["step"] == "normalize" and [c["scheme"] for c in record["channels"]] == ["window", "zscore"]
    assert image.dtype == np.int16 and image[0, 0, 0, 0] == -500  # the input is not modified


@pytest.mark.parametrize(
    "scheme, key",
    [
        ({"scheme": "ct", "clip": [-1000, 400]}, "mean"),
        ({"scheme": "window", "clip": [400, -1000]}, "clip"),
        ({"scheme": "zscore", "use_mask": True}, "use_mask"),
        ({"scheme": "minmax"}, "scheme"),
    ],
)
def test_bad_schemes_name_the_key(scheme, key):
    with pytest.raises(ConfigError, match=key):
        check_scheme(scheme)
