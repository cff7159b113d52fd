"""Submission benchmark: run-length codec vs the common Kaggle NumPy snippet, and prepare + check times.

Data: real label maps from ../shared/data: the 40 ACDC ground-truth volumes (ED/ES) and the
KiTS19 kidney/tumour label maps (512 x 512 slices). The peer codec is the widely copied Kaggle
``rle_encode`` / ``rle_decode`` snippet (NumPy, with a Python loop over runs in decode); both
codecs must give identical strings and masks before anything is timed.

Run: .venv/bin/python benchmarks/submission_bench.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import SHARED_DATA, time_call, write_results  # noqa: E402

from medseg.io import load_volume  # noqa: E402
from medseg.submission import check_submission, prepare_submission, rle_decode, rle_encode  # noqa: E402


def kaggle_rle_encode(img: np.ndarray) -> str:
    """The peer: Kaggle's carvana-era snippet (column-major, 1-based)."""
    pixels = img.flatten(order="F")
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def kaggle_rle_decode(mask_rle: str, shape: tuple[int, int]) -> np.ndarray:
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        img[lo:hi] = 1
    return img.reshape(shape, order="F")


def slices_of(paths: list[Path]) -> list[np.ndarray]:
    masks = []
    for path in paths:
        labels = load_volume(path, label=True).array
        masks += [np.ascontiguousarray(labels[:, :, k] > 0).astype(np.uint8) for k in range(labels.shape[2])]
    return masks


def codec_rows(name: str, masks: list[np.ndarray]) -> dict:
    ours = [rle_encode(m) for m in masks]
    peer = [kaggle_rle_encode(m) for m in masks]
    assert ours == peer, f"{name}: encodings differ"
    for mask, text in zip(masks, ours):
        np.testing.assert_array_equal(rle_decode(text, mask.shape), kaggle_rle_decode(text, mask.shape))
    encode_ours, _ = time_call(lambda: [rle_encode(m) for m in masks], repeats=5)
    encode_peer, _ = time_call(lambda: [kaggle_rle_encode(m) for m in masks], repeats=5)
    decode_ours, _ = time_call(lambda: [rle_decode(t, m.shape) for t, m in zip(ours, masks)], repeats=5)
    decode_peer, _ = time_call(lambda: [kaggle_rle_decode(t, m.shape) for t, m in zip(ours, masks)], repeats=5)
    runs = sum(len(t.split()) // 2 for t in ours)
    row = {
        "data": name,
        "slices": len(masks),
        "shapes": sorted({m.shape for m in masks}),
        "runs": runs,
        "encode_medseg_s": encode_ours,
        "encode_peer_s": encode_peer,
        "decode_medseg_s": decode_ours,
        "decode_peer_s": decode_peer,
    }
    row["shapes"] = [list(s) for s in row["shapes"]]
    return row


def main() -> None:
    acdc = SHARED_DATA / "acdc_subset"
    kits = SHARED_DATA / "kits19_labels"
    rows = [codec_rows("ACDC ground truth (40 volumes)", slices_of(sorted(acdc.glob("*/*_gt.nii.gz"))))]
    kits_files = sorted(kits.rglob("*.nii.gz"))[:2]
    if kits_files:
        # KiTS19 volumes are stored (slices, 512, 512): take 2D images across the first axis.
        masks = []
        for path in kits_files:
            labels = load_volume(path, label=True).array
            masks += [np.ascontiguousarray(labels[k] > 0).astype(np.uint8) for k in range(0, labels.shape[0], 4)]
        rows.append(codec_rows(f"KiTS19 labels ({len(kits_files)} volumes, every 4th 512x512 slice)", masks))

    with tempfile.TemporaryDirectory() as tmp:
        prepare_s, result = time_call(
            lambda: prepare_submission(
                "acdc",
                acdc,
                acdc,
                Path(tmp) / "acdc",
                pred_pattern="*_gt.nii.gz",
                overwrite=True,
                zip_path=Path(tmp) / "acdc.zip",
            ),
            repeats=3,
        )
        assert result.ok
        check_s, report = time_call(lambda: check_submission("acdc", Path(tmp) / "acdc.zip", acdc), repeats=3)
        assert report.ok
    pipeline = {"cases": len(result.cases), "prepare_with_check_and_zip_s": prepare_s, "check_zip_s": check_s}

    lines = [
        "## Submission: run-length codec and ACDC submission",
        "",
        "Codec: medseg `rle_encode`/`rle_decode` vs the common Kaggle NumPy snippet (identical output checked first;",
        "medseg's decoder also validates every run). Ratio = peer time / medseg time (> 1: medseg faster).",
        "",
        "| data | 2D images | runs | encode medseg | encode peer | ratio | decode medseg | decode peer | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        sizes = row["shapes"]
        size = (
            f"{sizes[0][0]}x{sizes[0][1]}"
            if len(sizes) == 1
            else f"{len(sizes)} sizes, {sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]}"
        )
        lines.append(
            f"| {row['data']} | {row['slices']} ({size}) | {row['runs']} | "
            f"{row['encode_medseg_s'] * 1e3:.1f} ms | {row['encode_peer_s'] * 1e3:.1f} ms | "
            f"{row['encode_peer_s'] / row['encode_medseg_s']:.2f}x | "
            f"{row['decode_medseg_s'] * 1e3:.1f} ms | {row['decode_peer_s'] * 1e3:.1f} ms | "
            f"{row['decode_peer_s'] / row['decode_medseg_s']:.2f}x |"
        )
    lines += [
        "",
        f"ACDC format, {pipeline['cases']} real ground-truth volumes: `prepare_submission` (read, align, write, "
        f"check, zip) {pipeline['prepare_with_check_and_zip_s']:.2f} s; `check_submission` on the zip "
        f"{pipeline['check_zip_s']:.2f} s.",
    ]
    write_results("submission", {"codec": rows, "acdc_pipeline": pipeline}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
