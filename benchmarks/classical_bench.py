"""Classical baselines benchmark: each method on a real chest CT, with the library call it wraps as peer.

Data: LIDC-IDRI-0001 (../shared/data/chest_ct_lidc), 512 x 512 x 133, 0.70 x 0.70 x 2.5 mm, in HU.
Peers are the plain library calls on the same voxels (SimpleITK Otsu / multi-Otsu / ConnectedThreshold,
SimpleITK Sobel, SciPy gradient magnitude): they show what medseg's wrapping (geometry, checks, label
ordering, spacing-aware units) costs, and the outputs are compared first. lung-ct, k-means and
split-merge have no installed peer (no scikit-learn; lungmask needs downloaded weights), so only their
times and results are reported. The volume is read once; reading is not timed.

Run: .venv/bin/python benchmarks/classical_bench.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import SHARED_DATA, time_call, write_results  # noqa: E402

from medseg.classical import bht, kmeans, lung_ct, otsu, region_grow, sobel_edges, split_merge, threshold  # noqa: E402
from medseg.io import Volume, load_volume  # noqa: E402

LIDC = SHARED_DATA / "chest_ct_lidc" / "LIDC-IDRI-0001"


def sitk_image(volume: Volume):
    """The peer's input: a SimpleITK image of the same voxels (SimpleITK's [z, y, x] view, spacing reversed)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in volume.spacing_mm))
    return image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1))


def main() -> None:
    import SimpleITK as sitk
    from scipy import ndimage

    volume = load_volume(LIDC)
    image = sitk_image(volume)
    rows, figures = (
        [],
        {"data": f"LIDC-IDRI-0001 {volume.shape} {tuple(round(float(s), 3) for s in volume.spacing_mm)} mm"},
    )

    def record(name, medseg_s, peer_name, peer_s, check):
        ratio = f"{peer_s / medseg_s:.2f}x" if peer_s else "-"
        rows.append(
            f"| {name} | {medseg_s:.2f} | {peer_name} | {f'{peer_s:.2f}' if peer_s else '-'} | {ratio} | {check} |"
        )
        figures[name] = {
            "medseg_s": round(medseg_s, 3),
            "peer": peer_name,
            "peer_s": round(peer_s, 3) if peer_s else None,
            "check": check,
        }
        print(rows[-1], flush=True)

    seconds, out = time_call(lambda: threshold(volume, [-320, 200]))
    record(
        "threshold (2 cuts)",
        seconds,
        "NumPy digitize",
        time_call(lambda: np.digitize(volume.array, [-320, 200]))[0],
        f"identical: {np.array_equal(out.array, np.digitize(volume.array, [-320, 200]))}",
    )

    seconds, out = time_call(lambda: otsu(volume))
    peer = sitk.OtsuThresholdImageFilter()
    peer.SetInsideValue(0), peer.SetOutsideValue(1), peer.SetNumberOfHistogramBins(256)
    peer_s, peer_out = time_call(lambda: peer.Execute(image))
    same = np.array_equal(out.array, sitk.GetArrayFromImage(peer_out).transpose(2, 1, 0))
    record("otsu, 2 classes", seconds, "sitk.OtsuThreshold", peer_s,
           f"threshold {out.meta['segmentation']['thresholds'][0]:.0f} HU; identical: {same}")  # fmt: skip

    seconds, out = time_call(lambda: otsu(volume, classes=3), repeats=1)
    peer3 = sitk.OtsuMultipleThresholdsImageFilter()
    peer3.SetNumberOfThresholds(2), peer3.SetNumberOfHistogramBins(256)
    peer_s, peer_out = time_call(lambda: peer3.Execute(image), repeats=1)
    same = np.array_equal(out.array, sitk.GetArrayFromImage(peer_out).transpose(2, 1, 0))
    cuts = ", ".join(f"{t:.0f}" for t in out.meta["segmentation"]["thresholds"])
    record(
        "otsu, 3 classes", seconds, "sitk.OtsuMultipleThresholds", peer_s, f"thresholds {cuts} HU; identical: {same}"
    )

    seconds, out = time_call(lambda: bht(volume))
    record("bht", seconds, "-", None, f"threshold {out.meta['segmentation']['thresholds'][0]:.0f} HU")

    seconds, out = time_call(lambda: kmeans(volume, k=3, seed=0), repeats=1)
    means = ", ".join(f"{m:.0f}" for m in out.meta["segmentation"]["class_means"])
    record("kmeans, k=3 (intensity)", seconds, "-", None, f"class means {means} HU")
    seconds, out = time_call(lambda: kmeans(volume, k=3, seed=0, position_scale_mm=50), repeats=1)
    record("kmeans, k=3 (+ position, 50 mm)", seconds, "-", None, "")

    seed = (150, 250, 80)  # right lung parenchyma (-880 HU)
    seconds, out = time_call(lambda: region_grow(volume, [seed], lower=-1100, upper=-400), repeats=1)
    seconds, out = time_call(lambda: region_grow(volume, [seed], lower=-1100, upper=-400), repeats=3)  # ITK loaded
    peer_s, peer_out = time_call(
        lambda: sitk.ConnectedThreshold(image, seedList=[seed], lower=-1100, upper=-400), repeats=3
    )
    agreement = dice(out.array > 0, sitk.GetArrayFromImage(peer_out).transpose(2, 1, 0) > 0)
    record(
        "region-grow (ITK, tolerance)",
        seconds,
        "sitk.ConnectedThreshold",
        peer_s,
        f"{np.count_nonzero(out.array) * volume.voxel_volume_ml:.0f} ml grown; Dice with peer {agreement:.4f}",
    )

    seconds, out = time_call(lambda: sobel_edges(volume), repeats=1)
    float_image = sitk.Cast(image, sitk.sitkFloat32)
    peer_s, _ = time_call(lambda: sitk.SobelEdgeDetection(float_image), repeats=1)
    scipy_s, _ = time_call(
        lambda: ndimage.generic_gradient_magnitude(volume.array.astype(np.float32), ndimage.sobel), repeats=1
    )
    record("edges (Sobel, per mm)", seconds, "sitk.SobelEdgeDetection", peer_s,
           f"SciPy generic_gradient_magnitude {scipy_s:.2f} s; both peers ignore the spacing (units per voxel, "
           "unnormalised)")  # fmt: skip

    crop = Volume(np.ascontiguousarray(volume.array[128:384, 128:384, 40:104]), volume.affine)
    seconds, out = time_call(lambda: split_merge(crop), repeats=1)
    info = out.meta["segmentation"]
    record("split-merge (256x256x64 crop)", seconds, "-", None,
           f"{info['leaves']} leaves -> {info['regions']} regions (max_std {info['max_std']:.0f} HU)")  # fmt: skip

    seconds, out = time_call(lambda: lung_ct(volume), repeats=3)
    info = out.meta["segmentation"]
    volumes = info["lung_volume_ml"]
    record("lung-ct", seconds, "-", None,
           f"left {volumes['left'] / 1000:.2f} l, right {volumes['right'] / 1000:.2f} l; airways "
           f"{info['airway_ml']:.0f} ml removed; "
           f"lungs joined and split: {info['lungs_joined']}")  # fmt: skip

    table = (
        "## Classical baselines on a real chest CT\n\n"
        f"{figures['data']}; seconds (median of 3, or 1 run for the slow ones), read time excluded. Peer = the plain "
        "library call medseg wraps, on the same voxels; ratio = peer / medseg (< 1: medseg's geometry handling, "
        "checks and label ordering cost time). Region growing is timed after ITK's one-off ~8 s module load.\n\n"
        "| method | medseg s | peer | peer s | ratio | result / check |\n|---|---|---|---|---|---|\n" + "\n".join(rows)
    )
    write_results("classical", figures, table)


if __name__ == "__main__":
    main()
