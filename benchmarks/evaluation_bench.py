"""Evaluation speed: medseg vs MONAI, DeepMind surface-distance and MedPy on real KiTS19 label maps.

Data: six KiTS19 manual label maps (every other file of ``../shared/data/kits19_labels``,
512 x 512 x N, kidney = 1, tumour = 2) and perturbed copies as predictions (kidney dilated by
one voxel into background, tumour shifted by two voxels along array axis 1), written to a
temporary folder.

1. **Per structure, computation alone** (arrays in memory): all distance metrics of one label
   (hd, hd95, asd, nsd at 1 mm). medseg, three ways: (a) one ``evaluate_case`` call for that
   label alone, from the full arrays (it reads both full maps to find the label); (b) the
   structure's own work: the same call on the crop of the structure's box, plus an equal share
   of the case's one pass over the full maps (``bounding_box`` of each map, then
   ``label_boxes`` on the foreground crop: every label's box and voxel count), which a case
   with all its labels pays once; (c) per case, one call for all labels. MONAI: its four
   functions (each extracts the surfaces again); DeepMind: ``compute_surface_distances`` once
   plus its derived metrics; MedPy (hd, hd95, assd; slow) on the smallest case only. Values are
   checked against MONAI (same definitions) to 1e-6 relative, and (b) against (a) exactly.
2. **Whole folder, loading included** (hd + hd95 + asd for both labels): a plain nibabel loop
   reading the twelve files in a fresh process (the reading baseline); ``medseg evaluate``
   (CLI, fresh process) with ``--workers 1`` with and without the report, and with
   ``--workers 2``; DeepMind and MONAI loops (nibabel loading + their metrics).

Run: ``.venv/bin/python benchmarks/evaluation_bench.py [--repeats N] [--pythonpath DIR] [--baseline-src DIR]``
(``--pythonpath``: extra CLI runs with e.g. ``isal`` importable from DIR; ``--baseline-src``:
extra CLI runs of another checkout's ``medseg`` package, e.g. a ``git worktree`` of an earlier
commit, interleaved with the others). Takes a few minutes (MONAI dominates).
"""

from __future__ import annotations

import argparse
import json
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


def medseg_one_pass(ref, pred):
    """What ``evaluate_case`` does once per case before any structure: the foreground box of both
    full maps, then every label's box (and voxel count) on the foreground crop; returns the boxes
    of each label (union of both maps) in full-array indices."""
    from medseg.evaluation.surfaces import bounding_box, label_boxes, union_box

    box = union_box(bounding_box(ref), bounding_box(pred))
    if box is None:
        return {}
    found = [label_boxes(ref[box]), label_boxes(pred[box])]
    labels = sorted(set(found[0]) | set(found[1]))
    boxes = {v: union_box(*(f[v][0] for f in found if v in f)) for v in labels}
    return {v: tuple(slice(o.start + b.start, o.start + b.stop) for o, b in zip(box, b_v)) for v, b_v in boxes.items()}


def medseg_case(ref, pred, spacing):
    from medseg.evaluation import evaluate_case

    return evaluate_case(ref, pred, spacing, metrics=DISTANCE_METRICS)


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


def timed(function, repeats: int) -> tuple[float, float, object]:
    """Medians of wall time and of process CPU time over ``repeats`` calls, and the last result. On a
    shared machine the CPU time of a single-threaded call is the steadier measure of its work (a
    busy neighbour stretches the wall time of short calls most)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus), result


def per_structure(cases, repeats: int) -> list[dict]:
    from medseg.io import read_label_map

    records = []
    smallest = min(cases, key=lambda c: c[1].stat().st_size)[0]
    for case_id, ref_path, pred_path in cases:
        ref_volume, pred_volume = read_label_map(ref_path), read_label_map(pred_path)
        ref, pred, spacing = np.asarray(ref_volume.array), np.asarray(pred_volume.array), ref_volume.spacing_mm
        pass_s, pass_cpu_s, boxes = timed(lambda: medseg_one_pass(ref, pred), repeats)
        case_s, _ = time_call(lambda: medseg_case(ref, pred, spacing), repeats)
        for label in (1, 2):
            record = {
                "case": case_id,
                "label": label,
                "shape": list(ref.shape),
                "one_pass_s": pass_s,
                "one_pass_cpu_s": pass_cpu_s,
                "case_all_labels_s": case_s,
            }
            record["medseg_s"], record["medseg_cpu_s"], ours = timed(
                lambda: medseg_structure(ref, pred, spacing, label), repeats
            )
            # the structure's crop in the frame evaluate_case works in (C order: NIfTI arrays transposed)
            crop = tuple(reversed(boxes[label]))
            ref_t, pred_t, spacing_t = ref.T, pred.T, np.asarray(spacing)[::-1]
            record["medseg_crop_s"], record["medseg_crop_cpu_s"], cropped = timed(
                lambda: medseg_structure(ref_t[crop], pred_t[crop], spacing_t, label), repeats
            )
            if any(abs(cropped[m] - ours[m]) > 1e-12 * abs(ours[m]) for m in ours):
                raise AssertionError(
                    f"{case_id} label {label}: values on the structure's crop differ: {cropped} vs {ours}"
                )
            record["medseg_shared_s"] = record["medseg_crop_s"] + pass_s / len(boxes)
            record["medseg_shared_cpu_s"] = record["medseg_crop_cpu_s"] + pass_cpu_s / len(boxes)
            record["monai_s"], monai = time_call(lambda: monai_structure(ref, pred, spacing, label), 1)
            record["deepmind_s"], record["deepmind_cpu_s"], deepmind = timed(
                lambda: deepmind_structure(ref, pred, spacing, label), max(1, repeats // 2)
            )
            record["values"] = {"medseg": ours, "monai": monai, "deepmind": deepmind}
            record["max_rel_diff_vs_monai"] = max(abs(ours[m] - monai[m]) / max(abs(monai[m]), 1e-12) for m in ours)
            if case_id == smallest:
                record["medpy_s"], medpy = time_call(lambda: medpy_structure(ref, pred, spacing, label), 1)
                record["values"]["medpy"] = medpy
                record["max_rel_diff_vs_medpy_hd_assd"] = max(
                    abs(ours[m] - medpy[m]) / max(abs(medpy[m]), 1e-12) for m in ("hd", "asd")
                )
            fastest = min(record["monai_s"], record["deepmind_s"], record.get("medpy_s", float("inf")))
            record["fastest_peer_s"] = fastest
            record["speedup_vs_fastest_peer"] = fastest / record["medseg_s"]
            record["speedup_shared_vs_fastest_peer"] = fastest / record["medseg_shared_s"]
            record["speedup_vs_monai"] = record["monai_s"] / record["medseg_s"]
            record["cpu_speedup_vs_deepmind_alone"] = record["deepmind_cpu_s"] / record["medseg_cpu_s"]
            record["cpu_speedup_vs_deepmind_shared"] = record["deepmind_cpu_s"] / record["medseg_shared_cpu_s"]
            records.append(record)
            print(f"{case_id} label {label}: medseg {record['medseg_s']:.3f} s alone, "
                  f"{record['medseg_shared_s']:.3f} s "
                  f"(crop {record['medseg_crop_s']:.3f} + pass {pass_s:.3f} / {len(boxes)}), MONAI "
                  f"{record['monai_s']:.2f} s, "
                  f"DeepMind {record['deepmind_s']:.2f} s -> {record['speedup_vs_fastest_peer']:.1f}x alone, "
                  f"{record['speedup_shared_vs_fastest_peer']:.1f}x shared; "
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
            done = subprocess.run(
                command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
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


def folder_commands(
    folder: Path, files: list[str], pythonpath: str | None, baseline_src: str | None = None
) -> dict[str, tuple[list[str], dict | None]]:
    """The timed processes of the whole-folder benchmark; every medseg run writes into the same ``folder/out``
    (``--overwrite``: without it every run after the first would be refused, and its refusal timed)."""
    common = [
        MEDSEG,
        "evaluate",
        "--pred",
        str(folder / "pred"),
        "--ref",
        str(folder / "ref"),
        "--out",
        str(folder / "out"),
        "--overwrite",
        "--quiet",
        "--metrics",
        "hd,hd95,asd",
    ]
    commands = {
        "read_nibabel_process_s": ([PYTHON, "-c", READ_SCRIPT, *files], None),
        "medseg_workers1_s": (common + ["--workers", "1"], None),
        "medseg_workers1_no_report_s": (common + ["--workers", "1", "--no-report"], None),
        "medseg_workers2_s": (common + ["--workers", "2"], None),
        "medseg_all_metrics_workers1_s": (common[:-2] + ["--workers", "1"], None),
    }
    if pythonpath:  # optional accelerators (e.g. isal) installed outside the environment
        commands["medseg_workers1_extra_path_s"] = (common + ["--workers", "1"], {"PYTHONPATH": pythonpath})
        commands["medseg_workers1_no_report_extra_path_s"] = (
            common + ["--workers", "1", "--no-report"],
            {"PYTHONPATH": pythonpath},
        )
    if baseline_src:  # another checkout's medseg package (e.g. the commit before a change), same interpreter
        cli = [PYTHON, "-c", "import sys; from medseg.cli.main import main; sys.exit(main())"]
        commands["baseline_workers1_s"] = (cli + common[1:] + ["--workers", "1"], {"PYTHONPATH": baseline_src})
        commands["baseline_workers1_no_report_s"] = (
            cli + common[1:] + ["--workers", "1", "--no-report"],
            {"PYTHONPATH": baseline_src},
        )
    return commands


def whole_folder(cases, folder: Path, repeats: int, pythonpath: str | None, baseline_src: str | None = None) -> dict:
    files = [str(p) for _, r, q in cases for p in (r, q)]
    figures = run_processes(folder_commands(folder, files, pythonpath, baseline_src), repeats)
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


def table(records: list[dict], folder: dict, decompressor: str, baseline_src: str | None = None) -> str:
    lines = [
        "### Evaluation: medseg vs MONAI, DeepMind surface-distance, MedPy (six KiTS19 label maps, perturbed copies)",
        "",
        "Per structure, computation alone (arrays in memory), all distance metrics (hd, hd95, asd, nsd at 1 mm); "
        "seconds (medians); speed-up = fastest peer / medseg; values checked against MONAI (same definitions). "
        "medseg *alone*: one call for this label from the full arrays (it reads both full maps to find the label). "
        "medseg *shared*: the structure's own work (the same call on its crop) plus an equal share of the case's "
        "one pass over the full maps (foreground box, then every label's box and count), as when a case is "
        "evaluated with all its labels.",
        "",
        "| case | label | shape | medseg alone s | medseg shared s | MONAI s | DeepMind s | MedPy s | vs fastest, "
        "alone "
        "| vs fastest, shared | CPU time: vs DeepMind, alone / shared | vs MONAI (alone) | max rel. diff vs MONAI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        medpy = f"{r['medpy_s']:.2f}" if "medpy_s" in r else "-"
        lines.append(
            f"| {r['case']} | {r['label']} | {'x'.join(map(str, r['shape']))} | {r['medseg_s']:.3f} | "
            f"{r['medseg_shared_s']:.3f} | "
            f"{r['monai_s']:.2f} | {r['deepmind_s']:.2f} | {medpy} | {r['speedup_vs_fastest_peer']:.1f}x | "
            f"{r['speedup_shared_vs_fastest_peer']:.1f}x | {r['cpu_speedup_vs_deepmind_alone']:.1f}x / "
            f"{r['cpu_speedup_vs_deepmind_shared']:.1f}x | {r['speedup_vs_monai']:.0f}x | "
            f"{r['max_rel_diff_vs_monai']:.1e} |"
        )
    alone = [r["speedup_vs_fastest_peer"] for r in records]
    shared = [r["speedup_shared_vs_fastest_peer"] for r in records]
    cpu_alone = [r["cpu_speedup_vs_deepmind_alone"] for r in records]
    cpu_shared = [r["cpu_speedup_vs_deepmind_shared"] for r in records]
    lines += [
        "",
        f"Speed-up per structure (wall time): alone median {statistics.median(alone):.1f}x, minimum "
        f"{min(alone):.1f}x; shared "
        f"median {statistics.median(shared):.1f}x, minimum {min(shared):.1f}x. In CPU time (both single-threaded; "
        f"steadier on a busy machine): alone median {statistics.median(cpu_alone):.1f}x, minimum "
        f"{min(cpu_alone):.1f}x; "
        f"shared median {statistics.median(cpu_shared):.1f}x, minimum {min(cpu_shared):.1f}x. "
        "DeepMind uses surface elements (surfels) rather than surface voxels, so its values differ by definition; "
        "MedPy (hd, hd95, assd) was timed on the smallest case only.",
        "",
        "Per case (both labels): medseg in one call vs the fastest peer's two calls, and the one pass over the full "
        "maps "
        "that the case's structures share:",
        "",
        "| case | shape | one pass s | medseg, one call s | fastest peer, both labels s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    by_case: dict[str, list[dict]] = {}
    for r in records:
        by_case.setdefault(r["case"], []).append(r)
    for case, rows in by_case.items():
        peer = sum(r["fastest_peer_s"] for r in rows)
        lines.append(
            f"| {case} | {'x'.join(map(str, rows[0]['shape']))} | {rows[0]['one_pass_s']:.3f} | "
            f"{rows[0]['case_all_labels_s']:.3f} | "
            f"{peer:.2f} | {peer / rows[0]['case_all_labels_s']:.1f}x |"
        )
    lines += [
        "",
        "Whole folder (12 files), loading included, hd + hd95 + asd for both labels; fresh processes for the CLI "
        "and the "
        f"reading baseline, interleaved repeat by repeat (medians); gzip inflated with {decompressor}:",
        "",
        "| run | seconds | vs reading | speed-up vs fastest peer |",
        "|---|---|---|---|",
    ]
    read = folder["read_nibabel_process_s"]
    fastest = min(folder["deepmind_folder_s"], folder["monai_folder_s"])
    baseline = f"`{baseline_src}` (earlier checkout)" if baseline_src else ""
    for label, key in (
        ("just reading the 12 files (nibabel, fresh process)", "read_nibabel_process_s"),
        ("just reading, in-process", "read_nibabel_in_process_s"),
        ("`medseg evaluate --workers 1` (with report.md and figures)", "medseg_workers1_s"),
        ("`medseg evaluate --workers 1 --no-report`", "medseg_workers1_no_report_s"),
        ("`medseg evaluate --workers 2`", "medseg_workers2_s"),
        ("`medseg evaluate --workers 1`, all 13 metrics", "medseg_all_metrics_workers1_s"),
        ("`medseg evaluate --workers 1` with `isal` importable (extra path)", "medseg_workers1_extra_path_s"),
        ("`medseg evaluate --workers 1 --no-report` with `isal` importable", "medseg_workers1_no_report_extra_path_s"),
        (f"{baseline}: `medseg evaluate --workers 1` (with report)", "baseline_workers1_s"),
        (f"{baseline}: `medseg evaluate --workers 1 --no-report`", "baseline_workers1_no_report_s"),
        ("DeepMind surface-distance loop (nibabel loading)", "deepmind_folder_s"),
        ("MONAI loop (nibabel loading)", "monai_folder_s"),
    ):
        if key not in folder:
            continue
        value = folder[key]
        lines.append(f"| {label} | {value:.2f} | {value / read:.2f}x | {fastest / value:.1f}x |")
    return "\n".join(lines + goals(records, folder))


def goals(records: list[dict], folder: dict) -> list[str]:
    """The issue-17 goals, met or missed by how much."""
    worst = min(records, key=lambda r: r["speedup_shared_vs_fastest_peer"])
    cpu_worst = min(records, key=lambda r: r["cpu_speedup_vs_deepmind_shared"])
    below = [r for r in records if r["cpu_speedup_vs_deepmind_shared"] < 10]
    read, ours = folder["read_nibabel_process_s"], folder["medseg_workers1_s"]
    fastest = min(folder["deepmind_folder_s"], folder["monai_folder_s"])
    limit = 1.5 * read + 1.0
    lines = [
        "",
        "Goals (issue 17):",
        "- every structure >= 10x the fastest peer: shared (one pass per case) minimum "
        f"{worst['speedup_shared_vs_fastest_peer']:.1f}x "
        f"wall / {cpu_worst['cpu_speedup_vs_deepmind_shared']:.1f}x CPU time; {len(below)} of {len(records)} "
        "structures below 10x "
        "in CPU time"
        + (" (" + ", ".join(f"{r['case']} label {r['label']}" for r in below) + ")" if below else "")
        + (
            "."
            if not below
            else ". Not met for small structures in large volumes: there the case's one read of both full label "
            "maps alone "
            f"({worst['one_pass_s'] * 1000:.0f} ms for {worst['case']}, {'x'.join(map(str, worst['shape']))}, two "
            "maps; "
            "memory bandwidth, every voxel must be looked at once) is more than a tenth of what DeepMind needs for the "
            f"whole structure ({worst['fastest_peer_s'] * 1000:.0f} ms); the structure's own work is "
            f"{worst['medseg_crop_s'] * 1000:.0f} ms."
        ),
        f"- whole folder >= 5x the fastest peer with the default report: {fastest / ours:.1f}x "
        f"({'met' if fastest / ours >= 5 else 'not met'}); within 1.5x the reading time + 1 s ({limit:.2f} s): "
        f"{ours:.2f} s ({'met' if ours <= limit else 'not met'}).",
    ]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--pythonpath",
        help="extra PYTHONPATH for additional CLI runs, e.g. a folder where `pip install --target DIR isal` put isal",
    )
    parser.add_argument(
        "--baseline-src",
        help="a checkout (e.g. git worktree) of an earlier commit: its CLI runs interleaved with these",
    )
    parser.add_argument(
        "--from-results", action="store_true", help="rewrite the README section from results/evaluation.json"
    )
    parser.add_argument(
        "--folder-only",
        action="store_true",
        help="re-run the whole-folder part; per-structure figures from results/evaluation.json",
    )
    args = parser.parse_args()
    if args.from_results:
        saved = json.loads(
            (Path(__file__).resolve().parent / "results" / "evaluation.json").read_text(encoding="utf-8")
        )
        figures = {k: saved.get(k) for k in ("structures", "folder", "gzip", "baseline_src")}
        write_results(
            "evaluation", figures, table(saved["structures"], saved["folder"], saved["gzip"], saved.get("baseline_src"))
        )
        return 0
    if not KITS.is_dir():
        print(f"needs {KITS}", file=sys.stderr)
        return 1
    from medseg.io.labelmaps import DECOMPRESSOR

    with tempfile.TemporaryDirectory(prefix="medseg-eval-bench-") as tmp:
        folder = Path(tmp)
        cases = make_data(folder)
        if args.folder_only:
            records = json.loads(
                (Path(__file__).resolve().parent / "results" / "evaluation.json").read_text(encoding="utf-8")
            )["structures"]
        else:
            records = per_structure(cases, args.repeats)
        folder_figures = whole_folder(cases, folder, max(args.repeats, 5), args.pythonpath, args.baseline_src)
    print(folder_figures)
    markdown = table(records, folder_figures, DECOMPRESSOR, args.baseline_src)
    write_results(
        "evaluation",
        {"structures": records, "folder": folder_figures, "gzip": DECOMPRESSOR, "baseline_src": args.baseline_src},
        markdown,
    )
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
