"""Evaluation speed: medseg vs MONAI, DeepMind surface-distance and MedPy on real KiTS19 label maps.

Data: six KiTS19 manual label maps (every other file of ``../shared/data/kits19_labels``,
512 x 512 x N, kidney = 1, tumour = 2) and perturbed copies as predictions (kidney dilated by
one voxel into background, tumour shifted by two voxels along array axis 1), written to a
temporary folder.

1. **Per structure, computation alone** (arrays in memory): all distance metrics of one label
   (hd, hd95, asd, nsd at 1 mm). medseg: one ``evaluate_case`` call restricted to those
   metrics (it finds the bounding boxes on the full arrays itself); MONAI: its four functions
   (each extracts the surfaces again); DeepMind: ``compute_surface_distances`` once plus its
   derived metrics; MedPy (hd, hd95, assd; slow) on the smallest case only. Values are checked
   against MONAI (same definitions) to 1e-6 relative.
2. **Whole folder, loading included** (hd + hd95 + asd for both labels): a plain nibabel loop
   reading the twelve files in a fresh process (the reading baseline); ``medseg evaluate``
   (CLI, fresh process) with ``--workers 1`` with and without the report, and with
   ``--workers 2``; DeepMind and MONAI loops (nibabel loading + their metrics).

Run: ``.venv/bin/python benchmarks/evaluation_bench.py [--repeats N] [--pythonpath DIR]``
(``--pythonpath``: extra CLI runs with e.g. ``isal`` importable from DIR). Takes a few minutes
(MONAI dominates).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import SHARED_DATA, time_call, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MEDSEG = str(Path(PYTHON).with_name("medseg"))
KITS = SHARED_DATA / "kits19_labels"
DISTANCE_METRICS = "hd,hd95,asd,nsd"


def make_data(folder: Path) -> list[tuple[str, Path, Path]]:
    """Copy six KiTS19 label maps to ``folder/ref`` and write perturbed copies to ``folder/pred``."""
    from scipy import ndimage

    from medseg.io import load_volume, save_volume

    cases = []
    for path in sorted(KITS.glob("case_*_segmentation.nii.gz"))[::2]:
        case_id = path.name.replace("_segmentation.nii.gz", "")
        ref_path = folder / "ref" / path.name
        ref_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, ref_path)
        volume = load_volume(path, label=True)
        array = np.array(volume.array)
        box = ndimage.find_objects(array)[0]
        kidney = array[box]
        kidney[ndimage.binary_dilation(kidney == 1) & (kidney == 0)] = 1
        tumour = np.roll(array == 2, 2, axis=1)
        array[array == 2] = 1
        array[tumour] = 2
        pred_path = save_volume(volume.with_array(array), folder / "pred" / f"{case_id}.nii.gz", label=True)
        cases.append((case_id, ref_path, pred_path))
    return cases


# -- per-structure computation -----------------------------------------------------------------


def medseg_structure(ref, pred, spacing, label):
    from medseg.evaluation import evaluate_case

    result = evaluate_case(ref, pred, spacing, labels=[label], metrics=DISTANCE_METRICS)
    return {m: result.value(label, m) for m in ("hd", "hd95", "asd", "nsd")}


def monai_structure(ref, pred, spacing, label):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance, compute_surface_dice

    y = torch.from_numpy(np.ascontiguousarray(ref == label))[None, None]
    y_pred = torch.from_numpy(np.ascontiguousarray(pred == label))[None, None]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "hd": float(compute_hausdorff_distance(y_pred, y, spacing=spacing)),
            "hd95": float(compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)),
            "asd": float(compute_average_surface_distance(y_pred, y, symmetric=True, spacing=spacing)),
            "nsd": float(compute_surface_dice(y_pred, y, [1.0], spacing=spacing)),
        }


def deepmind_structure(ref, pred, spacing, label):
    import surface_distance as sd

    distances = sd.compute_surface_distances(ref == label, pred == label, tuple(float(s) for s in spacing))
    return {
        "hd": sd.compute_robust_hausdorff(distances, 100),
        "hd95": sd.compute_robust_hausdorff(distances, 95),
        "asd": float(np.mean(sd.compute_average_surface_distance(distances))),
        "nsd": sd.compute_surface_dice_at_tolerance(distances, 1.0),
    }


def medpy_structure(ref, pred, spacing, label):
    from medpy.metric import binary

    a, b = ref == label, pred == label
    return {
        "hd": binary.hd(b, a, voxelspacing=spacing),
        "hd95": binary.hd95(b, a, voxelspacing=spacing),
        "asd": binary.assd(b, a, voxelspacing=spacing),
    }


def per_structure(cases, repeats: int) -> list[dict]:
    from medseg.io import read_label_map

    records = []
    smallest = min(cases, key=lambda c: c[1].stat().st_size)[0]
    for case_id, ref_path, pred_path in cases:
        ref_volume, pred_volume = read_label_map(ref_path), read_label_map(pred_path)
        ref, pred, spacing = np.asarray(ref_volume.array), np.asarray(pred_volume.array), ref_volume.spacing_mm
        for label in (1, 2):
            record = {"case": case_id, "label": label, "shape": list(ref.shape)}
            record["medseg_s"], ours = time_call(lambda: medseg_structure(ref, pred, spacing, label), repeats)
            record["monai_s"], monai = time_call(lambda: monai_structure(ref, pred, spacing, label), 1)
            record["deepmind_s"], deepmind = time_call(lambda: deepmind_structure(ref, pred, spacing, label), max(1, repeats // 2))
            record["values"] = {"medseg": ours, "monai": monai, "deepmind": deepmind}
            record["max_rel_diff_vs_monai"] = max(abs(ours[m] - monai[m]) / max(abs(monai[m]), 1e-12) for m in ours)
            if case_id == smallest:
                record["medpy_s"], medpy = time_call(lambda: medpy_structure(ref, pred, spacing, label), 1)
                record["values"]["medpy"] = medpy
                record["max_rel_diff_vs_medpy_hd_assd"] = max(abs(ours[m] - medpy[m]) / max(abs(medpy[m]), 1e-12) for m in ("hd", "asd"))
            fastest = min(record["monai_s"], record["deepmind_s"], record.get("medpy_s", float("inf")))
            record["speedup_vs_fastest_peer"] = fastest / record["medseg_s"]
            record["speedup_vs_monai"] = record["monai_s"] / record["medseg_s"]
            records.append(record)
            print(f"{case_id} label {label}: medseg {record['medseg_s']:.3f} s, MONAI {record['monai_s']:.2f} s, "
                  f"DeepMind {record['deepmind_s']:.2f} s -> {record['speedup_vs_fastest_peer']:.1f}x; "
                  f"max rel diff vs MONAI {record['max_rel_diff_vs_monai']:.1e}", flush=True)  # fmt: skip
    return records


# -- whole folder --------------------------------------------------------------------------------


def run_processes(commands: dict[str, tuple[list[str], dict | None]], repeats: int) -> dict[str, float]:
    """Median wall time of each command, run in fresh processes, interleaved repeat by repeat
    (so a busy moment on a shared machine hits every variant alike)."""
    import os

    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, extra_env) in commands.items():
            env = {**os.environ, **(extra_env or {})}
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:  # a failed run is no timing: stop rather than report it
                raise SystemExit(f"{name}: {' '.join(command)} failed (exit {done.returncode}):\n{done.stderr}")
    return {name: statistics.median(values) for name, values in times.items()}


READ_SCRIPT = """
import sys, numpy as np, nibabel as nib
for path in sys.argv[1:]:
    np.asarray(nib.load(path).dataobj)
"""


def folder_peer_loop(cases, structure_fn) -> float:
    import nibabel as nib

    start = time.perf_counter()
    for _, ref_path, pred_path in cases:
        ref_image = nib.load(ref_path)
        ref, pred = np.asarray(ref_image.dataobj), np.asarray(nib.load(pred_path).dataobj)
        spacing = ref_image.header.get_zooms()[:3]
        for label in (1, 2):
            structure_fn(ref, pred, spacing, label)
    return time.perf_counter() - start


def folder_commands(folder: Path, files: list[str], pythonpath: str | None) -> dict[str, tuple[list[str], dict | None]]:
    """The timed processes of the whole-folder benchmark; every medseg run writes into the same ``folder/out``
    (``--overwrite``: without it every run after the first would be refused, and its refusal timed)."""
    common = [MEDSEG, "evaluate", "--pred", str(folder / "pred"), "--ref", str(folder / "ref"), "--out", str(folder / "out"),
              "--overwrite", "--quiet", "--metrics", "hd,hd95,asd"]  # fmt: skip
    commands = {
        "read_nibabel_process_s": ([PYTHON, "-c", READ_SCRIPT, *files], None),
        "medseg_workers1_s": (common + ["--workers", "1"], None),
        "medseg_workers1_no_report_s": (common + ["--workers", "1", "--no-report"], None),
        "medseg_workers2_s": (common + ["--workers", "2"], None),
        "medseg_all_metrics_workers1_s": (common[:-2] + ["--workers", "1"], None),
    }
    if pythonpath:  # optional accelerators (e.g. isal) installed outside the environment
        commands["medseg_workers1_extra_path_s"] = (common + ["--workers", "1"], {"PYTHONPATH": pythonpath})
        commands["medseg_workers1_no_report_extra_path_s"] = (common + ["--workers", "1", "--no-report"], {"PYTHONPATH": pythonpath})
    return commands


def whole_folder(cases, folder: Path, repeats: int, pythonpath: str | None) -> dict:
    files = [str(p) for _, r, q in cases for p in (r, q)]
    figures = run_processes(folder_commands(folder, files, pythonpath), repeats)
    import nibabel as nib

    start = time.perf_counter()
    for path in files:
        np.asarray(nib.load(path).dataobj)
    figures["read_nibabel_in_process_s"] = time.perf_counter() - start
    figures["deepmind_folder_s"] = folder_peer_loop(cases, deepmind_structure)  # its nsd costs nothing extra
    figures["monai_folder_s"] = folder_peer_loop(cases, _monai_three)
    return figures


def _monai_three(ref, pred, spacing, label):
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    y = torch.from_numpy(np.ascontiguousarray(ref == label))[None, None]
    y_pred = torch.from_numpy(np.ascontiguousarray(pred == label))[None, None]
    spacing = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compute_hausdorff_distance(y_pred, y, spacing=spacing)
        compute_hausdorff_distance(y_pred, y, percentile=95, spacing=spacing)
        compute_average_surface_distance(y_pred, y, symmetric=True, spacing=spacing)


def table(records: list[dict], folder: dict, decompressor: str) -> str:
    lines = [
        "### Evaluation: medseg vs MONAI, DeepMind surface-distance, MedPy (six KiTS19 label maps, perturbed copies)",
        "",
        "Per structure, computation alone (arrays in memory), all distance metrics (hd, hd95, asd, nsd at 1 mm); "
        "seconds (medians); speed-up = fastest peer / medseg; values checked against MONAI (same definitions).",
        "",
        "| case | label | shape | medseg s | MONAI s | DeepMind s | MedPy s | vs fastest peer | vs MONAI | max rel. diff vs MONAI |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        medpy = f"{r['medpy_s']:.2f}" if "medpy_s" in r else "-"
        lines.append(
            f"| {r['case']} | {r['label']} | {'x'.join(map(str, r['shape']))} | {r['medseg_s']:.3f} | {r['monai_s']:.2f} | "
            f"{r['deepmind_s']:.2f} | {medpy} | {r['speedup_vs_fastest_peer']:.1f}x | {r['speedup_vs_monai']:.0f}x | {r['max_rel_diff_vs_monai']:.1e} |"
        )
    speedups = [r["speedup_vs_fastest_peer"] for r in records]
    lines += [
        "",
        f"Speed-up per structure: median {statistics.median(speedups):.1f}x, minimum {min(speedups):.1f}x. "
        "DeepMind uses surface elements (surfels) rather than surface voxels, so its values differ by definition; "
        "MedPy (hd, hd95, assd) was timed on the smallest case only.",
        "",
        f"Whole folder (12 files), loading included, hd + hd95 + asd for both labels; fresh processes for the CLI and the "
        f"reading baseline (medians); gzip inflated with {decompressor}:",
        "",
        "| run | seconds | vs reading | speed-up vs fastest peer |",
        "|---|---|---|---|",
    ]
    read = folder["read_nibabel_process_s"]
    fastest = min(folder["deepmind_folder_s"], folder["monai_folder_s"])
    for label, key in (
        ("just reading the 12 files (nibabel, fresh process)", "read_nibabel_process_s"),
        ("just reading, in-process", "read_nibabel_in_process_s"),
        ("`medseg evaluate --workers 1` (with report.md and figures)", "medseg_workers1_s"),
        ("`medseg evaluate --workers 1 --no-report`", "medseg_workers1_no_report_s"),
        ("`medseg evaluate --workers 2`", "medseg_workers2_s"),
        ("`medseg evaluate --workers 1`, all 13 metrics", "medseg_all_metrics_workers1_s"),
        ("`medseg evaluate --workers 1` with `isal` importable (extra path)", "medseg_workers1_extra_path_s"),
        ("`medseg evaluate --workers 1 --no-report` with `isal` importable", "medseg_workers1_no_report_extra_path_s"),
        ("DeepMind surface-distance loop (nibabel loading)", "deepmind_folder_s"),
        ("MONAI loop (nibabel loading)", "monai_folder_s"),
    ):
        if key not in folder:
            continue
        value = folder[key]
        lines.append(f"| {label} | {value:.2f} | {value / read:.2f}x | {fastest / value:.1f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pythonpath", help="extra PYTHONPATH for additional CLI runs, e.g. a folder where `pip install --target DIR isal` put isal")
    args = parser.parse_args()
    if not KITS.is_dir():
        print(f"needs {KITS}", file=sys.stderr)
        return 1
    from medseg.io.labelmaps import DECOMPRESSOR

    with tempfile.TemporaryDirectory(prefix="medseg-eval-bench-") as tmp:
        folder = Path(tmp)
        cases = make_data(folder)
        records = per_structure(cases, args.repeats)
        folder_figures = whole_folder(cases, folder, max(args.repeats, 5), args.pythonpath)
    print(folder_figures)
    markdown = table(records, folder_figures, DECOMPRESSOR)
    write_results("evaluation", {"structures": records, "folder": folder_figures, "gzip": DECOMPRESSOR}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
