"""GPU check: the CUDA paths that the CPU-only CI never runs, measured in one go (< 8 min on one H100).

Run it through ``benchmarks/gpu_check.sh [OUT_DIR]`` (default ``benchmarks/results/gpu_check``).
On a machine without CUDA it prints one line saying so and exits 0. What it measures, each step
printed as it finishes and all of it written to ``OUT_DIR/gpu_check.json``:

1. **AMP training, 2D**: the ACDC config (``configs/acdc_2d.yaml``, real ACDC from
   ``../shared/data``) or, where those data are absent, the 2D cardiac MRI phantom config;
   2 epochs of a fixed number of iterations (``--iterations``); images (slices) per second
   of the second epoch (the first one warms up), peak GPU memory, the autocast dtype.
2. **AMP training, 3D chest CT**: ``configs/nsclc_lung_3d_cpu.yaml`` (real NSCLC chest CT)
   when that config and its data exist, else the 3D chest CT phantom config; same measures
   (patches per second).
3. **nnU-Net v2 side by side** (when ``nnunetv2`` is installed; otherwise skipped with a
   message): the same cases in nnU-Net's raw format, ``nnUNetv2_plan_and_preprocess`` and
   ``nnUNetv2_train ... -tr nnUNetTrainer_1epoch`` for the 2D and the 3D data, images per
   second from its epoch time (250 iterations x its batch size), each under a time limit.
4. **torchrun**: ``torchrun --standalone --nproc_per_node 1 -m medseg train`` on the 3D config
   for one epoch (DDP/NCCL initialisation, the rank-0 run folder).
5. **Sliding-window prediction** of a 512 x 512 x 300 CT (the chest CT phantom resampled to
   that grid) with the 3D model: end to end (the plan resamples it to the training spacing),
   and the sliding window alone on the full 512 x 512 x 300 grid: seconds, peak GPU memory.
6. **Out-of-memory fallback**: that full-grid sliding window again with the process capped by
   ``torch.cuda.set_per_process_memory_fraction`` at half the peak of step 5: whether the
   stitching fell back to host memory (a failure if not), seconds, agreement with step 5.

``--cpu-smoke`` runs every step except 3 and 6 on the CPU with toy sizes: it tests this script
(the test suite runs it), its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
CONFIGS = ROOT / "configs"
CT_SHAPE = (512, 512, 300)


def say(message: str) -> None:
    print(f"gpu_check: {message}", flush=True)


# -- configs ------------------------------------------------------------------------------------


def derived_config(source: Path, target: Path, overrides: dict[str, dict[str, Any]]) -> Path:
    """``source`` with its relative paths made absolute and ``overrides`` applied, written to ``target``."""
    import yaml

    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    data = config.setdefault("data", {})
    for key in ("manifest", "cache", "plan", "preprocessing", "augmentation"):
        value = data.get(key)
        if isinstance(value, str) and value not in ("default", "none") and not Path(value).is_absolute():
            data[key] = str((source.parent / value).resolve())
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def phantom_manifest(kind: str, n: int, work: Path) -> Path:
    """A phantom manifest (generated on first use) whose cases live under ``work``."""
    path = work / f"phantom_{kind}.yaml"
    path.write_text(
        f"name: gpu_check_{kind.replace('-', '_')}\nphantom: {{kind: {kind}, n: {n}, seed: 0}}\nroot: "
        f"phantoms/{kind}\n",
        encoding="utf-8",
    )
    return path


def pick_configs(work: Path, smoke: bool, iterations: int, workers: int) -> dict[str, dict[str, Any]]:
    """The 2D and 3D training configs to run, derived into ``work`` (fixed iterations, own caches)."""
    train = {"epochs": 2, "iterations_per_epoch": iterations, "val_every": 2, "amp": "auto"}
    chosen: dict[str, dict[str, Any]] = {}
    acdc = CONFIGS / "acdc_2d.yaml"
    if (SHARED_DATA / "acdc_subset").is_dir() and not smoke:
        source, note, data = acdc, "ACDC (real, 20 patients)", {}
    else:
        source = CONFIGS / "phantom_cardiac_mri_2d.yaml"
        note = (
            "2D cardiac MRI phantom (../shared/data/acdc_subset absent)"
            if not smoke
            else "2D cardiac MRI phantom (smoke)"
        )
        data = {"manifest": str(phantom_manifest("cardiac-mri", 6 if smoke else 24, work))}
    data.update(cache=str(work / "cache_2d"), workers=0 if smoke else workers, folds=2 if smoke else 5)
    if smoke:
        data.update(patch_size=[64, 64], batch_size=2)
    chosen["2d"] = {
        "source": str(source.relative_to(ROOT)),
        "data": note,
        "config": derived_config(
            source, work / "train_2d.yaml", {"data": data, "train": train, "validation": {"max_cases": 1}}
        ),
    }
    nsclc = CONFIGS / "nsclc_lung_3d_cpu.yaml"
    if nsclc.is_file() and (SHARED_DATA / "nsclc_lung_ct").is_dir() and not smoke:
        source, note, data = nsclc, "NSCLC chest CT (real, configs/nsclc_lung_3d_cpu.yaml)", {}
    else:
        source = CONFIGS / "phantom_ct_thorax_3d.yaml"
        why = "configs/nsclc_lung_3d_cpu.yaml or ../shared/data/nsclc_lung_ct absent" if not smoke else "smoke"
        note = f"3D chest CT phantom ({why}; configs/chest_ct_lung_3d.yaml is a template without data)"
        data = {"manifest": str(phantom_manifest("ct-thorax", 6 if smoke else 24, work))}
    data.update(cache=str(work / "cache_3d"), workers=0 if smoke else workers, folds=2 if smoke else 5)
    if smoke:
        data.update(patch_size=[32, 32, 16], batch_size=2)
    chosen["3d"] = {
        "source": str(source.relative_to(ROOT)),
        "data": note,
        "config": derived_config(
            source, work / "train_3d.yaml", {"data": data, "train": train, "validation": {"max_cases": 1}}
        ),
    }
    return chosen


# -- steps --------------------------------------------------------------------------------------


def train_step(name: str, choice: dict[str, Any], work: Path, device: str) -> dict[str, Any]:
    import torch

    from medseg.models.precision import autocast_dtype
    from medseg.training.run import train

    run_dir = work / f"run_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(choice["config"], run_dir, fold=0, device=device, progress=False)
    seconds = time.perf_counter() - started
    rows = (run_dir / "training_log.csv").read_text(encoding="utf-8").splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    row = dict(zip(header, last))
    amp = autocast_dtype("auto", torch.device(device))
    result = {
        "config": choice["source"],
        "data": choice["data"],
        "images_per_s": float(row["patches_per_s"]),
        "epoch_seconds": float(row["seconds"]),
        "total_seconds_with_preprocessing_and_validation": round(seconds, 1),
        "autocast": str(amp).replace("torch.", "") if amp is not None else "float32",
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        "run_dir": str(run_dir),
    }
    say(f"AMP training {name} ({choice['data']}): {result['images_per_s']:.1f} images/s (epoch 2), "
        f"autocast {result['autocast']}, peak GPU memory {result['peak_gpu_memory_gib']} GiB")  # fmt: skip
    return result


def nnunet_step(name: str, choice: dict[str, Any], work: Path, dataset_id: int, time_limit_s: int) -> dict[str, Any]:
    """nnU-Net v2 on the same cases: plan, preprocess, one epoch of its trainer (time-limited)."""
    import importlib.util

    if importlib.util.find_spec("nnunetv2") is None:
        say(f"nnU-Net v2 {name}: not installed (pip install nnunetv2), skipped")
        return {"skipped": "nnunetv2 not installed"}
    import yaml

    from medseg.data.manifest import load_manifest

    config = yaml.safe_load(Path(choice["config"]).read_text(encoding="utf-8"))
    manifest = load_manifest(config["data"]["manifest"])
    raw, preprocessed, results = work / "nnUNet_raw", work / "nnUNet_preprocessed", work / "nnUNet_results"
    dataset = raw / f"Dataset{dataset_id:03d}_gpucheck{name}"
    for sub in ("imagesTr", "labelsTr"):
        (dataset / sub).mkdir(parents=True, exist_ok=True)
    for case in manifest.cases:
        for channel, image in enumerate(case.images):
            link = dataset / "imagesTr" / f"{case.case_id}_{channel:04d}.nii.gz"
            link.unlink(missing_ok=True)
            link.symlink_to(Path(image).resolve())
        link = dataset / "labelsTr" / f"{case.case_id}.nii.gz"
        link.unlink(missing_ok=True)
        link.symlink_to(Path(case.label).resolve())  # type: ignore[arg-type]
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {str(k): v for k, v in manifest.channel_names.items()},
        "labels": manifest.labels, "numTraining": len(manifest.cases), "file_ending": ".nii.gz",
    }), encoding="utf-8")  # fmt: skip
    env = {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(preprocessed),
        "nnUNet_results": str(results),
    }
    configuration = "2d" if name == "2d" else "3d_fullres"
    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    commands = [
        [str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration, "-np", "8"],
        [str(bin_dir / "nnUNetv2_train"), str(dataset_id), configuration, "0", "-tr", "nnUNetTrainer_1epoch"],
    ]
    log_path = work / f"nnunet_{name}.log"
    with open(log_path, "w") as log_file:
        for command in commands:
            left = time_limit_s - (time.perf_counter() - started)
            try:
                done = subprocess.run(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                say(f"nnU-Net v2 {name}: stopped after the {time_limit_s} s limit (log: {log_path})")
                return {"not_measured": f"time limit {time_limit_s} s", "log": str(log_path)}
            if done.returncode != 0:
                say(f"nnU-Net v2 {name}: {Path(command[0]).name} failed (log: {log_path})")
                return {"not_measured": f"{Path(command[0]).name} exit {done.returncode}", "log": str(log_path)}
    text = log_path.read_text(encoding="utf-8")
    epoch_times = [float(line.rsplit(":", 1)[1].split()[0]) for line in text.splitlines() if "Epoch time:" in line]
    plans = json.loads((preprocessed / dataset.name / "nnUNetPlans.json").read_text(encoding="utf-8"))
    batch = int(plans["configurations"][configuration]["batch_size"])
    result = {
        "configuration": configuration,
        "batch_size": batch,
        "epoch_seconds": epoch_times[-1] if epoch_times else None,
        "log": str(log_path),
    }
    if epoch_times:
        result["images_per_s"] = round(250 * batch / epoch_times[-1], 1)  # nnUNetTrainer: 250 iterations per epoch
        say(
            f"nnU-Net v2 {name} ({configuration}): {result['images_per_s']} images/s (1 epoch of 250 iterations, "
            f"batch {batch})"
        )
    return result


def torchrun_step(choice: dict[str, Any], work: Path, device: str, time_limit_s: int) -> dict[str, Any]:
    run_dir = work / "run_torchrun"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "1",
        "-m",
        "medseg",
        "train",
        "--quiet",
        "--config",
        str(choice["config"]),
        "--out",
        str(run_dir),
        "--epochs",
        "1",
        "--device",
        device,
    ]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=time_limit_s)
    except subprocess.TimeoutExpired:
        say(f"torchrun (1 process): stopped after {time_limit_s} s")
        return {"ok": False, "error": f"time limit {time_limit_s} s"}
    seconds = time.perf_counter() - started
    ok = done.returncode == 0 and (run_dir / "checkpoint_latest.pt").is_file()
    result: dict[str, Any] = {"ok": ok, "seconds": round(seconds, 1), "returncode": done.returncode}
    if ok:
        rows = (run_dir / "training_log.csv").read_text(encoding="utf-8").splitlines()
        result["images_per_s"] = float(dict(zip(rows[0].split(","), rows[-1].split(",")))["patches_per_s"])
    else:
        result["stderr_tail"] = done.stderr[-2000:]
    say(
        f"torchrun (1 process, {device}): {'ok' if ok else 'FAILED'} in {seconds:.1f} s"
        + (f", {result['images_per_s']:.1f} images/s" if ok else f": {done.stderr.strip().splitlines()[-1:]}")
    )
    return result


def large_ct(work: Path, shape: tuple[int, int, int]) -> Path:
    """The chest CT phantom (default size) resampled linearly to ``shape``, same field of view."""
    import numpy as np
    from scipy import ndimage

    from medseg.io import Volume, save_volume
    from medseg.phantoms.ct_thorax import make_ct_thorax

    path = work / f"ct_{'x'.join(map(str, shape))}.nii.gz"
    if path.is_file():
        return path
    image, _ = make_ct_thorax(123)
    zoom = [n / m for n, m in zip(shape, image.shape)]
    array = ndimage.zoom(image.array.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
    affine = np.array(image.affine, dtype=np.float64)
    affine[:3, :3] = affine[:3, :3] / np.asarray(zoom)[None, :]
    # keep the field of view: the first voxel centre moves half a (new) voxel inwards
    affine[:3, 3] = image.affine[:3, 3] + image.affine[:3, :3] @ (0.5 / np.asarray(zoom) - 0.5)
    save_volume(Volume(np.rint(array).astype(np.int16), affine), path)
    return path


def predict_step(run_dir: Path, ct: Path, device: str) -> tuple[dict[str, Any], Any]:
    """End-to-end prediction of the CT file (the plan resamples it to the training spacing), then
    the sliding window alone on the CT's full 512 x 512 x 300 grid: seconds and peak GPU memory."""
    import numpy as np
    import torch

    from medseg.inference.predict import Predictor
    from medseg.io import load_volume

    predictor = Predictor(run_dir, device=device)
    started = time.perf_counter()
    result = predictor.predict(ct)
    end_to_end = time.perf_counter() - started
    array = load_volume(ct).array
    image = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / 1000.0)[None]  # HU / 1000: any values do
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    logits = predictor._logits(image)  # the sliding window with its GPU / host-memory stitching
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
    figures = {
        "end_to_end_seconds": round(end_to_end, 2), "end_to_end_output_shape": list(result.labels.shape),
        "sliding_window_grid": list(image.shape[1:]), "sliding_window_seconds": round(seconds, 2),
        "peak_gpu_memory_gib": round(peak / 2**30, 2) if peak is not None else None,
        "patch_size": list(predictor.network.patch_size), "batch_size": predictor.batch_size,
        "classes": int(logits.shape[0]),
    }  # fmt: skip
    say(
        f"prediction of a {'x'.join(map(str, array.shape))} CT: end to end {end_to_end:.1f} s (at the plan's spacing); "
        f"sliding window on the full grid {seconds:.1f} s, peak GPU memory {figures['peak_gpu_memory_gib']} GiB"
    )
    return figures, (image, logits.argmax(0))


def oom_step(run_dir: Path, image, uncapped_peak_bytes: float, reference_labels) -> dict[str, Any]:
    """The full-grid sliding window again with the process capped at half the uncapped peak: the
    accumulators no longer fit on the GPU and stitching must fall back to host memory."""
    import torch

    import medseg.models.sliding_window as sliding_window
    from medseg.inference.predict import Predictor

    total = torch.cuda.get_device_properties(0).total_memory
    cap = max(uncapped_peak_bytes * 0.5, 256 * 2**20)
    predictor = Predictor(run_dir, device="cuda")
    outputs: list[str] = []
    original = sliding_window.predict_volume

    def recording(*args, **kwargs):
        outputs.append(str(kwargs.get("output_device")))
        return original(*args, **kwargs)

    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    sliding_window.predict_volume = recording
    try:
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        labels = predictor._logits(image).argmax(0)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    finally:
        sliding_window.predict_volume = original
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    fell_back = len(outputs) > 1 and outputs[-1] == "cpu"
    figures = {
        "cap_gib": round(cap / 2**30, 2), "fell_back_to_host_memory": fell_back, "passes": outputs,
        "seconds": round(seconds, 2), "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "label_agreement_with_uncapped": float((labels == reference_labels).float().mean()),
    }  # fmt: skip
    say(
        f"OOM fallback under a {figures['cap_gib']} GiB cap: "
        f"{'fell back to host memory' if fell_back else 'NO fallback happened'} "
        f"({' -> '.join(outputs)}), {seconds:.1f} s, label agreement {figures['label_agreement_with_uncapped']:.5f}"
    )
    if not fell_back:
        raise RuntimeError(
            f"the sliding window did not fall back to host memory under a {figures['cap_gib']} GiB cap: {figures}"
        )
    return figures


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out", nargs="?", default=str(ROOT / "benchmarks" / "results" / "gpu_check"), help="output folder"
    )
    parser.add_argument("--iterations", type=int, default=40, help="training iterations per epoch (2 epochs)")
    parser.add_argument("--workers", type=int, default=6, help="data-loading workers")
    parser.add_argument("--nnunet-limit-s", type=int, default=120, help="time limit per nnU-Net run")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="run the steps on the CPU at toy sizes (tests this script)"
    )
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False): nothing measured")
        return 0
    import logging

    logging.basicConfig(level=logging.WARNING, format="gpu_check: %(name)s: %(message)s")
    device = "cpu" if args.cpu_smoke else "cuda"
    out = Path(args.out).expanduser().resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (smoke run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "smoke": args.cpu_smoke,
    }
    say(f"device {report['device']}, torch {report['torch']}, CUDA {report['cuda']}; output {out}")
    started = time.perf_counter()

    def step(name: str, function, *step_args):
        try:
            report[name] = function(*step_args)
        except Exception as exc:  # noqa: BLE001 - one failed step must not hide the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            say(f"{name}: FAILED: {type(exc).__name__}: {exc}")
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
        return report[name]

    iterations = 3 if args.cpu_smoke else args.iterations
    choices = pick_configs(work, args.cpu_smoke, iterations, args.workers)
    step("train_2d", train_step, "2d", choices["2d"], work, device)
    step("train_3d", train_step, "3d", choices["3d"], work, device)
    if not args.cpu_smoke:
        step("nnunet_2d", nnunet_step, "2d", choices["2d"], work, 991, args.nnunet_limit_s)
        step("nnunet_3d", nnunet_step, "3d", choices["3d"], work, 992, args.nnunet_limit_s)
    step("torchrun", torchrun_step, choices["3d"], work, device, 240)
    shape = (48, 48, 24) if args.cpu_smoke else CT_SHAPE
    ct = large_ct(work, shape)
    prediction = step("predict_ct", predict_step, work / "run_3d", ct, device)
    if isinstance(prediction, tuple):
        figures, (image, labels) = prediction
        report["predict_ct"] = figures
        if not args.cpu_smoke:
            step("oom_fallback", oom_step, work / "run_3d", image, figures["peak_gpu_memory_gib"] * 2**30, labels)
    report["seconds"] = round(time.perf_counter() - started, 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    failed = [k for k, v in report.items() if isinstance(v, dict) and "error" in v]
    say(f"done in {report['seconds']} s; {'failed steps: ' + ', '.join(failed) if failed else 'every step ran'}; "
        f"figures in {out / 'gpu_check.json'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
