"""Post-processing rules for the cardiac label maps, compared on one cross-validated arm's probabilities.

The ACDC runs of ``quality_bench.py`` (``ARM/fold_K``, held-out lists ``ARM/held_out_fold_K.csv``) predict their
held-out frames once with ``medseg predict --save-probabilities`` (into ``ARM/probabilities``; skipped where
present), then every rule below turns the same probabilities into a label map, scored with
``medseg.evaluation.evaluate_case`` (Dice per label, whole heart and base / middle / apex regions) against the
frames' own contours. No retraining: the rules differ only after the network.

Rules (RV 1, myocardium 2, LV 3):

* ``argmax``: the arg-max label, nothing removed.
* ``largest_component 1,2,3``: the documented config's rule (``medseg.inference.postprocess``).
* ``largest_component 2,3``: the same on myocardium and LV only.
* ``components >= 2 ml, largest 2,3``: RV components under 2 ml removed instead of keeping the largest.
* ``RV touching heart``: the config's rule, but every RV component that is face-adjacent to the myocardium
  or LV is kept too (the RV cavity lies against the septum; 10 mm slices often cut the apical RV loose).
* ``RV from p >= T``: background voxels whose RV probability reaches ``T`` become RV before the config's rule.

For the config's rule it also splits the apical RV errors (apex third of each frame's RV slices) into misses
and false alarms, and counts the apical RV slices where the network predicts no RV at all.

Run (about a minute per fold to predict on 2 cores, then a minute to score):
  .venv/bin/python benchmarks/postprocess_rules.py \
      --arm "runs/quality_bench/acdc/medseg_acdc_2d_cpu_config_model.deep_supervision=true"
Writes ``benchmarks/results/postprocess_rules.json`` and its table in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_results  # noqa: E402

from medseg.evaluation import evaluate_case
from medseg.evaluation.regions import choose_region_axis, split_regions
from medseg.inference.postprocess import PostprocessConfig, keep_largest_component, postprocess
from medseg.io import load_volume

log = logging.getLogger("postprocess_rules")
RV, MYO, LV = 1, 2, 3
NAMES = {RV: "rv_cavity", MYO: "lv_myocardium", LV: "lv_cavity"}
CONFIG_RULE = PostprocessConfig(largest_component=(RV, MYO, LV))
CONFIG_RULE_NAME = "largest_component 1,2,3 (config)"
RV_THRESHOLDS = (0.4, 0.3, 0.2, 0.1)


def keep_rv_touching_heart(labels: np.ndarray) -> np.ndarray:
    """Largest component of myocardium and LV; of the RV the largest component and every component that is
    face-adjacent to the myocardium or LV. A new array."""
    result = labels.copy()
    for value in (MYO, LV):
        keep_largest_component(result, value)
    rv = result == RV
    components, count = ndimage.label(rv)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        next_to_heart = ndimage.binary_dilation(result >= MYO) & rv
        keep = set(np.unique(components[next_to_heart]).tolist()) | {int(sizes.argmax())}
        result[rv & ~np.isin(components, sorted(keep))] = 0
    return result


def rules(spacing_mm: tuple[float, ...]) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Rule name -> function of (probabilities ``[class, i, j, k]``, arg-max labels) giving a label map."""

    def small_then_largest(_: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return postprocess(labels, spacing_mm, PostprocessConfig(min_component_ml=2.0, largest_component=(MYO, LV)))

    def rv_from(threshold: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        def rule(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
            widened = labels.copy()
            widened[(probabilities[RV] >= threshold) & (labels == 0)] = RV
            return postprocess(widened, spacing_mm, CONFIG_RULE)

        return rule

    return {
        "argmax": lambda _, labels: labels,
        CONFIG_RULE_NAME: lambda _, labels: postprocess(labels, spacing_mm, CONFIG_RULE),
        "largest_component 2,3": lambda _, labels: postprocess(
            labels, spacing_mm, PostprocessConfig(largest_component=(MYO, LV))
        ),
        "components >= 2 ml, largest 2,3": small_then_largest,
        "RV touching heart": lambda _, labels: keep_rv_touching_heart(labels),
        **{f"RV from p >= {t}": rv_from(t) for t in RV_THRESHOLDS},
    }


def apex_rv_errors(reference: np.ndarray, prediction: np.ndarray, slice_axis: int) -> dict[str, int]:
    """Voxel counts of the RV in the apex third of the reference's RV slices (as the evaluation's regions):
    true positives, misses on slices where the prediction has some RV / none, false alarms, and slice counts."""
    ref = np.moveaxis(reference == RV, slice_axis, -1)
    pred = np.moveaxis(prediction == RV, slice_axis, -1)
    split = split_regions(ref.sum(axis=(0, 1)))
    counts = dict.fromkeys(
        ("true_positive", "missed_on_predicted_slices", "missed_on_empty_slices", "false_positive"), 0
    ) | {"reference_slices": 0, "reference_slices_predicted_empty": 0}
    if split is None:
        return counts
    start, stop = split.ranges["apex"]
    for k in range(start, stop):
        ref_k, pred_k = ref[..., k], pred[..., k]
        missed = int((ref_k & ~pred_k).sum())
        counts["true_positive"] += int((ref_k & pred_k).sum())
        counts["false_positive"] += int((pred_k & ~ref_k).sum())
        counts["missed_on_predicted_slices" if pred_k.any() else "missed_on_empty_slices"] += missed
        if ref_k.any():
            counts["reference_slices"] += 1
            counts["reference_slices_predicted_empty"] += int(not pred_k.any())
    return counts


def predict_probabilities(arm: Path, out: Path) -> None:
    """``medseg predict --save-probabilities`` of each fold's run on its held-out frames (finished folds skipped)."""
    medseg = Path(sys.executable).with_name("medseg")
    for held_out in sorted(arm.glob("held_out_fold_*.csv")):
        fold = held_out.stem.removeprefix("held_out_")
        command = [medseg, "predict", "--model", arm / fold / "checkpoint_latest.pt", "--input", held_out]
        command += ["--out", out, "--save-probabilities", "--quiet"]
        log.info("%s: predicting", fold)
        subprocess.run([str(part) for part in command], check=True)  # skips frames already predicted


def score(arm: Path, references: Path) -> dict[str, Any]:
    probabilities_dir = arm / "probabilities"
    predict_probabilities(arm, probabilities_dir)
    dice: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    apex = defaultdict(int)
    files = sorted(probabilities_dir.glob("*_probabilities.npz"))
    if not files:
        raise SystemExit(f"{probabilities_dir}: no *_probabilities.npz; is {arm} a finished ACDC arm?")
    for path in files:
        case = path.name.removesuffix("_probabilities.npz")
        reference_volume = load_volume(references / f"{case}.nii.gz")
        reference = np.asarray(reference_volume.array).astype(np.uint8)
        with np.load(path) as stored:
            probabilities = np.stack([stored[f"class_{c}"].astype(np.float32) for c in range(4)])
        labels = probabilities.argmax(axis=0).astype(np.uint8)
        spacing_mm = tuple(float(s) for s in reference_volume.spacing_mm)
        for name, rule in rules(spacing_mm).items():
            prediction = rule(probabilities, labels)
            result = evaluate_case(
                reference, prediction, spacing_mm, NAMES, affine=reference_volume.affine, metrics="dice", regions=True
            )
            for row in result.rows:
                dice[name][(row["label"], row["region"])].append(float(row["value"]))
            if name == CONFIG_RULE_NAME:
                slice_axis = choose_region_axis(np.asarray(spacing_mm), reference_volume.affine)
                for key, count in apex_rv_errors(reference, prediction, slice_axis).items():
                    apex[key] += count
    table = {
        name: {
            f"{label} {region}": float(np.nanmean(values[(label, region)]))
            for label in NAMES.values()
            for region in ("all", "apex")
        }
        | {
            "mean": float(np.mean([np.nanmean(values[(label, "all")]) for label in NAMES.values()])),
            "lowest frame rv_cavity": float(np.nanmin(values[("rv_cavity", "all")])),
        }
        for name, values in dice.items()
    }
    return {"arm": str(arm), "frames": len(files), "dice": table, "apex_rv_errors_config_rule": dict(apex)}


def markdown(figures: dict[str, Any]) -> str:
    columns = list(next(iter(figures["dice"].values())))
    lines = [
        "### Post-processing rules on the same probabilities (`postprocess_rules.py`)",
        "",
        f"Arm `{Path(figures['arm']).name}`, {figures['frames']} held-out frames, Dice (mean over frames).",
        "",
        "| rule | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, row in figures["dice"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    apex = figures["apex_rv_errors_config_rule"]
    missed = apex["missed_on_predicted_slices"] + apex["missed_on_empty_slices"]
    lines += [
        "",
        f"Apical RV, config rule: {apex['true_positive']} voxels right, {missed} missed "
        f"({apex['missed_on_empty_slices']} on the {apex['reference_slices_predicted_empty']} of "
        f"{apex['reference_slices']} apical RV slices predicted empty), {apex['false_positive']} false alarms.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", type=Path, required=True, help="a finished ACDC medseg arm of quality_bench.py")
    parser.add_argument(
        "--references", type=Path, help="folder of <case>.nii.gz contours (default: the arm's dataset refs)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    arm = args.arm.resolve()
    figures = score(arm, (args.references or arm.parent / "refs").resolve())
    write_results("postprocess_rules", figures, markdown(figures))
    log.info("written: benchmarks/results/postprocess_rules.json and benchmarks/README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
