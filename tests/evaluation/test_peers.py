"""Agreement with MedPy and MONAI on real manual masks (KiTS19, MSD prostate, ACDC) against
perturbed copies: dice, jaccard, rvd, hd, asd equal MedPy's dc, jc, ravd, hd, assd and hd95 equals
MONAI's percentile-95 Hausdorff distance, to 1e-6 relative.

The masks are cropped to a box around the structure (real resolution and spacing kept) so the
peers' full distance transforms stay fast; the crop may cut a structure, which then touches the
array border: that case is part of what is checked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import shared_path
from scipy import ndimage

from medseg.evaluation import evaluate_case
from medseg.io import read_label_map

medpy_binary = pytest.importorskip("medpy.metric.binary")
torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")

pytestmark = pytest.mark.shared_data

CASES = [
    ("kits19_labels/case_00061_segmentation.nii.gz", 2),
    ("kits19_labels/case_00010_segmentation.nii.gz", 1),
    ("msd_prostate_labels/prostate_00.nii.gz", 1),
    ("msd_prostate_labels/prostate_04.nii.gz", 2),
    ("acdc_subset/patient001/patient001_ED_gt.nii.gz", 2),
    ("acdc_subset/patient039/patient039_ES_gt.nii.gz", 1),
]
PERTURBATIONS = ("dilate", "erode", "shift")
MAX_EXTENT = 56  # voxels per axis kept around the structure


def _crop(mask: np.ndarray) -> np.ndarray:
    """A box of at most MAX_EXTENT voxels per axis around the largest connected piece of the
    structure (3-voxel margin where it fits)."""
    components, count = ndimage.label(mask)
    sizes = np.bincount(components.ravel())[1:]
    largest = components == (int(np.argmax(sizes)) + 1)
    box = ndimage.find_objects(largest.astype(np.uint8))[0]
    centre = np.round(ndimage.center_of_mass(largest)).astype(int)
    cut = []
    for s, c, n in zip(box, centre, mask.shape):
        start, stop = max(s.start - 3, 0), min(s.stop + 3, n)
        if stop - start > MAX_EXTENT:
            start = min(max(c - MAX_EXTENT // 2, 0), n - MAX_EXTENT)
            stop = start + MAX_EXTENT
        cut.append(slice(start, stop))
    return np.ascontiguousarray(mask[tuple(cut)])


def _perturb(mask: np.ndarray, kind: str) -> np.ndarray:
    if kind == "dilate":
        return ndimage.binary_dilation(mask)
    if kind == "erode":
        eroded = ndimage.binary_erosion(mask)
        return eroded if eroded.any() else mask
    shifted = np.zeros_like(mask)
    shifted[2:, :, 1:] = mask[:-2, :, :-1]  # shift by (2, 0, 1) voxels
    return shifted


@pytest.fixture(scope="module")
def real_pairs():
    pairs = []
    for relative, label in CASES:
        volume = read_label_map(shared_path(relative))
        reference = _crop(np.asarray(volume.array) == label)
        for kind in PERTURBATIONS:
            pairs.append((f"{relative}:{label}:{kind}", reference, _perturb(reference, kind), volume.spacing_mm))
    return pairs


def _medseg(reference, prediction, spacing):
    return evaluate_case(reference.astype(np.uint8), prediction.astype(np.uint8), spacing, labels=[1])


def test_overlap_and_distances_equal_medpy(real_pairs):
    for name, reference, prediction, spacing in real_pairs:
        ours = _medseg(reference, prediction, spacing)
        expected = {
            "dice": medpy_binary.dc(prediction, reference),
            "jaccard": medpy_binary.jc(prediction, reference),
            "rvd": medpy_binary.ravd(prediction, reference),  # (|pred| - |ref|) / |ref|
            "hd": medpy_binary.hd(prediction, reference, voxelspacing=spacing),
            "asd": medpy_binary.assd(prediction, reference, voxelspacing=spacing),
        }
        for metric, value in expected.items():
            assert ours.value(1, metric) == pytest.approx(value, rel=1e-6, abs=1e-12), f"{name} {metric}"


def test_hd95_asd_and_nsd_equal_monai(real_pairs):
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    for name, reference, prediction, spacing in real_pairs:
        ours = _medseg(reference, prediction, spacing)
        y = torch.from_numpy(reference)[None, None]
        y_pred = torch.from_numpy(prediction)[None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = float(compute_hausdorff_distance(y_pred, y, percentile=95, spacing=list(spacing)))
            asd = float(compute_average_surface_distance(y_pred, y, symmetric=True, spacing=list(spacing)))
            nsd = float(compute_surface_dice(y_pred, y, [1.0], spacing=list(spacing)))
        # MONAI returns float32: agreement to float32 precision, well inside 1e-6
        assert ours.value(1, "hd95") == pytest.approx(hd95, rel=1e-6), name
        assert ours.value(1, "asd") == pytest.approx(asd, rel=1e-6), name
        assert ours.value(1, "nsd") == pytest.approx(nsd, rel=1e-6, abs=1e-7), name


def test_whole_label_maps_match_medpy_on_a_small_real_volume():
    """No cropping at all: a full MSD prostate label map (320 x 320 x 15), both labels."""
    volume = read_label_map(shared_path("msd_prostate_labels/prostate_07.nii.gz"))
    reference = np.asarray(volume.array)
    prediction = reference.copy()
    grown = ndimage.binary_dilation(reference == 2) & (reference == 0)
    prediction[grown] = 2
    ours = evaluate_case(reference, prediction, volume.spacing_mm, affine=volume.affine)
    for label in (1, 2):
        a, b = reference == label, prediction == label
        assert ours.value(label, "hd") == pytest.approx(medpy_binary.hd(b, a, voxelspacing=volume.spacing_mm), rel=1e-6)
        assert ours.value(label, "asd") == pytest.approx(
            medpy_binary.assd(b, a, voxelspacing=volume.spacing_mm), rel=1e-6
        )
        assert ours.value(label, "dice") == pytest.approx(medpy_binary.dc(b, a), rel=1e-12)
