"""Post-processing of label maps on hand-made cases with known answers."""

import numpy as np
import pytest

from medseg.inference.postprocess import PostprocessConfig, postprocess


def _labels():
    labels = np.zeros((20, 20, 10), np.uint8)
    labels[2:10, 2:10, 2:8] = 1  # big component of label 1 (384 voxels)
    labels[14:16, 14:16, 2:4] = 1  # small component of label 1 (8 voxels)
    labels[4:6, 4:6, 4:6] = 0  # a cavity inside the big one
    labels[12:18, 2:8, 2:8] = 2  # label 2
    return labels


def test_largest_component_and_fill_holes():
    out = postprocess(_labels(), (1.0, 1.0, 2.0), PostprocessConfig(largest_component=[1], fill_holes=[1]))
    assert out[14, 14, 2] == 0 and out[4, 4, 4] == 1
    assert (out == 1).sum() == 8 * 8 * 6 and (out == 2).sum() == 6 * 6 * 6  # label 2 untouched


def test_small_components_removed_by_volume_in_ml():
    # spacing 2 x 2 x 2 mm: 8 voxels = 0.064 ml, 384 - 8 voxels = ~3 ml
    out = postprocess(_labels(), (2.0, 2.0, 2.0), PostprocessConfig(min_component_ml=0.1))
    assert out[14, 14, 2] == 0 and out[2, 2, 2] == 1
    kept = postprocess(_labels(), (2.0, 2.0, 2.0), PostprocessConfig(min_component_ml=0.05))
    assert kept[14, 14, 2] == 1


def test_empty_and_bad_config():
    assert postprocess(np.zeros((3, 3, 3), np.uint8), (1, 1, 1), PostprocessConfig(largest_component=[1])).sum() == 0
    with pytest.raises(ValueError, match="min_component_ml"):
        PostprocessConfig(min_component_ml=-1)
