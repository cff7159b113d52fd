"""Evaluate a whole folder (or manifest) of predictions: matching, per-case checks, outputs.

Per case: both label maps are read (:func:`medseg.io.read_label_map`), their
voxel grids compared (same shape; origin, spacing and axes within ``atol_mm``), and the case
scored with :func:`medseg.evaluation.case.evaluate_case`. A case that cannot be read, whose
grids differ (unless ``resample_pred_to_ref``) or that has no prediction fails with a
message; the run goes on.

Outputs in ``out_dir``:

* ``metrics.csv`` -- long form ``case,label,region,metric,value,flag`` (the schema of
  :mod:`medseg.evaluation.metrics_table`), appended as each case
  finishes (an interrupted run keeps what it had); failed cases have one row with metric
  ``error`` and the message in ``flag``. Sorted by case at the end.
* ``summary.json`` -- per label, region and metric: mean, std, median, min, max, n, n_flagged,
  n_nan, plus the foreground mean over labels, the failures and the options.
* ``regions.csv`` -- with regions: the split of every case and label (axis, reference
  extent, base end chosen and how, slice ranges).
* ``report.md`` and ``figures/`` -- tables and figures (see :mod:`medseg.evaluation.report`).
* ``indices.csv`` and ``indices_agreement.csv`` -- with ``indices``: clinical indices of both sides and their
  agreement (see :mod:`medseg.evaluation.indices`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.common.labels import parse_label_spec, read_dataset_json_labels
from medseg.common.progress import progress_bar
from medseg.errors import GeometryError, InvalidArgumentError, MedsegError
from medseg.evaluation.matching import CasePair, Matching, match_cases
from medseg.evaluation.metrics_table import ERROR_METRIC, MetricsWriter, metrics_frame, write_metrics_csv
from medseg.io import atomic_write_text, ensure_writable_folder

log = logging.getLogger(__name__)

#: how many worst cases get an overlay figure
WORST_CASES = 3


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to evaluate one case (picklable)."""

    labels: dict[int, str] | None
    case_options: dict[str, Any]
    atol_mm: float = 1e-3
    resample_pred_to_ref: bool = False
    snapshot: bool = True
    indices: Any = None  # an IndexSpec: measure what the clinical indices need
    unannotated: dict[str, tuple[int, ...]] = field(default_factory=dict)  # case id -> label values not scored


@dataclass
class CaseOutcome:
    """What one case produced (returned by the worker)."""

    case_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    regions: list[dict[str, Any]] = field(default_factory=list)
    labels_present: list[int] = field(default_factory=list)
    undeclared_prediction_values: list[int] = field(default_factory=list)
    error: str | None = None
    resampled: bool = False
    snapshot: dict[str, Any] | None = None
    seconds: float = 0.0
    reference: str = ""
    prediction: str = ""
    image: str | None = None
    measures: dict[str, dict[str, float]] | None = None  # with indices: {"reference": ..., "prediction": ...}


@dataclass
class FolderRun:
    """Everything :func:`run_folder` produced (plain Python objects)."""

    rows: list[dict[str, Any]]
    outcomes: list[CaseOutcome]
    matching: Matching
    label_names: dict[int, str]
    options: dict[str, Any]
    interrupted: bool = False
    indices: Any = None  # medseg.evaluation.indices.IndicesResult, with indices

    @property
    def failures(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if o.error]

    def labels_absent_everywhere(self) -> list[int]:
        """Scored label values found in no reference and no prediction of any evaluated case: their
        scores are all empty-mask conventions (Dice 1), usually a mistyped ``--labels``."""
        evaluated = [o for o in self.outcomes if not o.error]
        if not evaluated:
            return []
        seen = {v for o in evaluated for v in o.labels_present}
        return [v for v in self.label_names if v not in seen]

    def undeclared_prediction_values(self) -> dict[int, list[str]]:
        """Prediction values that are neither scored labels nor in the case's reference, with the cases holding
        them (values the references hold too are structures left out of ``labels`` on purpose)."""
        found: dict[int, list[str]] = {}
        for outcome in self.outcomes:
            for value in outcome.undeclared_prediction_values:
                found.setdefault(value, []).append(outcome.case_id)
        return dict(sorted(found.items()))

    def label_warnings(self) -> list[str]:
        """One sentence per label problem of :meth:`labels_absent_everywhere` / :meth:`undeclared_prediction_values`."""
        warnings = []
        absent = self.labels_absent_everywhere()
        if absent:
            names = ", ".join(
                f"{v} ({self.label_names[v]})" if self.label_names[v] != str(v) else str(v) for v in absent
            )
            warnings.append(
                f"label(s) {names} occur in no reference and no prediction: their scores are empty-mask conventions "
                "(Dice 1, flagged both_empty); check --labels"
            )
        for value, cases in self.undeclared_prediction_values().items():
            shown = ", ".join(cases[:3]) + (f" and {len(cases) - 3} more" if len(cases) > 3 else "")
            warnings.append(
                f"predictions hold value {value}, which is neither a scored label nor in the reference "
                f"({len(cases)} case(s): {shown})"
            )
        return warnings


def evaluate_pair(pair: CasePair, settings: Settings) -> CaseOutcome:
    """Read, check and score one case; never raises for a bad case (the error is returned)."""
    from medseg.evaluation.case import evaluate_case
    from medseg.evaluation.resampling import resample_nearest
    from medseg.io import grid_mismatch, read_label_map

    start = time.perf_counter()
    outcome = CaseOutcome(
        pair.case_id,
        reference=str(pair.reference),
        prediction=str(pair.prediction or ""),
        image=str(pair.image) if pair.image else None,
    )
    try:
        if pair.prediction is None:
            raise MedsegError(f"no prediction file found for case {pair.case_id} (reference {pair.reference})")
        reference = read_label_map(pair.reference)
        prediction = read_label_map(pair.prediction)
        problem = grid_mismatch(
            reference.affine,
            reference.shape,
            prediction.affine,
            prediction.shape,
            settings.atol_mm,
            ("reference", "prediction"),
        )
        if problem:
            if not settings.resample_pred_to_ref:
                raise GeometryError(
                    f"prediction {pair.prediction.name} is not on the reference's voxel grid ({problem}); "
                    "fix it or pass --resample-pred-to-ref"
                )
            prediction = resample_nearest(prediction, reference)
            outcome.resampled = True
        skipped = set(settings.unannotated.get(pair.case_id, ()))
        labels = settings.labels
        if skipped and labels is not None:
            labels = {value: name for value, name in labels.items() if value not in skipped}
        result = evaluate_case(
            reference.array,
            prediction.array,
            reference.spacing_mm,
            labels,
            affine=reference.affine,
            case_id=pair.case_id,
            **settings.case_options,
        )
        outcome.rows, outcome.regions, outcome.labels_present = result.rows, result.regions, result.labels_present
        if skipped and settings.labels is None:  # labels found in the data are named by their value
            outcome.rows = [row for row in result.rows if row["label"] not in {str(v) for v in skipped}]
            outcome.regions = [info for info in result.regions if info["label_value"] not in skipped]
            outcome.labels_present = [v for v in result.labels_present if v not in skipped]
        outcome.undeclared_prediction_values = [v for v in result.undeclared_prediction_values if v not in skipped]
        if settings.indices is not None:
            from medseg.evaluation.indices import measure_pair

            outcome.measures = measure_pair(settings.indices, reference, prediction, pair.image)
        if settings.snapshot:
            outcome.snapshot = _snapshot(reference, prediction, result.foreground_box)
    except MedsegError as exc:
        outcome.error = str(exc)
    except MemoryError:
        outcome.error = f"{pair.case_id}: out of memory"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _snapshot(reference, prediction, box: tuple[slice, ...] | None) -> dict[str, Any]:
    """A small 2D cut for the overlay figure: the slice (along the region axis) where the two
    label maps disagree most, cropped in-plane to the foreground with a margin. ``box``: the
    foreground box of both maps (``CaseResult.foreground_box``)."""
    from medseg.evaluation.regions import choose_region_axis

    spacing = reference.spacing_mm
    axis = choose_region_axis(spacing, reference.affine, "auto")
    if box is None or len(box) != 3:
        return {}
    ref_crop, pred_crop = reference.array[box], prediction.array[box]
    others = tuple(a for a in range(3) if a != axis)
    disagreement = np.count_nonzero(ref_crop != pred_crop, axis=others)
    weight = disagreement if disagreement.any() else np.count_nonzero(ref_crop, axis=others)
    index = int(np.argmax(weight))
    margin = 8
    cut = [slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, reference.shape)]
    cut[axis] = box[axis].start + index
    take = tuple(cut)
    return {
        "axis": axis,
        "slice": box[axis].start + index,
        "cut": [[c.start, c.stop] if isinstance(c, slice) else c for c in cut],
        "reference": np.ascontiguousarray(reference.array[take]),
        "prediction": np.ascontiguousarray(prediction.array[take]),
        "pixel_mm": [float(spacing[a]) for a in others],
    }


def _find_dataset_json(folder: Path) -> Path | None:
    for candidate in (folder / "dataset.json", folder.parent / "dataset.json"):
        if candidate.is_file():
            return candidate
    return None


def _outcomes(pairs: list[CasePair], settings: Settings, workers: int) -> Iterable[CaseOutcome]:
    if workers <= 1 or len(pairs) <= 1:
        for pair in pairs:
            yield evaluate_pair(pair, settings)
        return
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import nibabel  # noqa: F401

    # import what the workers need before they are forked, so each does not import it again
    import medseg.evaluation.case  # noqa: F401
    import medseg.evaluation.resampling  # noqa: F401
    import medseg.io  # noqa: F401

    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = set()
        queue = iter(pairs)
        for pair in queue:
            pending.add(pool.submit(evaluate_pair, pair, settings))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                next_pair = next(queue, None)
                if next_pair is not None:
                    pending.add(pool.submit(evaluate_pair, next_pair, settings))
                yield future.result()


def run_folder(
    pred_dir: str | Path,
    ref_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    *,
    references: dict[str, Path] | None = None,
    images: dict[str, Path] | None = None,
    known_labels: dict[int, str] | None = None,
    source: str | None = None,
    labels: object = None,
    workers: int = 1,
    progress: bool = False,
    ref_pattern: str | None = None,
    pred_pattern: str | None = None,
    atol_mm: float = 1e-3,
    resample_pred_to_ref: bool = False,
    report: bool = True,
    overwrite: bool = False,
    indices: Any = None,
    unannotated: Mapping[str, Sequence[int]] | None = None,
    **case_options: Any,
) -> FolderRun:
    """Evaluate every case and write the outputs; see :func:`evaluate_folder` (which returns a
    DataFrame) for the arguments. Returns a :class:`FolderRun` of plain Python objects."""
    from medseg.evaluation.metrics import DISTANCE_METRICS, check_metrics, check_policy

    metrics = check_metrics(case_options.get("metrics"))
    check_policy(case_options.get("empty_policy", "worst"))
    if references is not None and not references:
        raise InvalidArgumentError(f"{source or 'references'}: no case with a reference label map")
    known = dict(known_labels or {})
    if references is None and ref_dir is not None and not known:
        found = _find_dataset_json(Path(ref_dir))
        if found is not None:
            known = read_dataset_json_labels(found)
    known = {v: n for v, n in known.items() if v != 0}
    spec = parse_label_spec(labels, known)
    label_names = (dict(known) or None) if spec is None else {v: n for v, n in spec.items() if v != 0}
    if label_names == {}:
        raise InvalidArgumentError(
            f"labels {labels!r}: only background 0, which is never scored; name the labels to score"
        )

    matching = match_cases(
        pred_dir, ref_dir, references=references, images=images, ref_pattern=ref_pattern, pred_pattern=pred_pattern
    )
    if indices is not None and indices.needs_image:
        _require_images(matching)
    unannotated = {case: tuple(int(v) for v in values) for case, values in (unannotated or {}).items() if values}
    settings = Settings(
        label_names,
        dict(case_options),
        atol_mm,
        resample_pred_to_ref,
        snapshot=report,
        indices=indices,
        unannotated=unannotated,
    )
    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None:
        prepare_output_folder(out, overwrite)
    writer = MetricsWriter(out / "metrics.csv") if out is not None else None
    importer = _import_in_background(
        (["scipy.spatial"] if set(metrics) & set(DISTANCE_METRICS) else [])
        + (["matplotlib.figure", "matplotlib.backends.backend_agg"] if out is not None and report else [])
        if workers <= 1  # never fork worker processes while a thread imports (they could inherit its locks)
        else []
    )
    outcomes: list[CaseOutcome] = []
    rows: list[dict[str, Any]] = []
    worst = _WorstCases(WORST_CASES)
    interrupted = False
    bar = progress_bar(total=len(matching.pairs), desc="evaluate", unit="case", enabled=progress)
    try:
        for outcome in _outcomes(matching.pairs, settings, workers):
            outcome.rows = outcome.rows or ([_error_row(outcome)] if outcome.error else [])
            if writer is not None:
                writer.write(outcome.rows)
            rows.extend(outcome.rows)
            worst.offer(outcome)
            outcomes.append(outcome)
            bar.update(1)
            if outcome.error:
                log.warning("%s: FAILED: %s", outcome.case_id, outcome.error)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if importer is not None:
            importer.join()

    all_labels = _fill_absent_labels(outcomes, label_names, case_options, unannotated)
    outcomes.sort(key=lambda o: o.case_id)
    rows = [row for o in outcomes for row in o.rows]
    run = FolderRun(
        rows,
        outcomes,
        matching,
        all_labels,
        _options_record(pred_dir, ref_dir, source, label_names, workers, atol_mm, resample_pred_to_ref, case_options)
        | ({"unannotated": {case: list(values) for case, values in unannotated.items()}} if unannotated else {}),
        interrupted,
    )
    for warning in run.label_warnings():
        log.warning("%s", warning)
    if indices is not None:
        from medseg.evaluation.indices import evaluation_indices, write_evaluation_indices

        run.indices = evaluation_indices(indices, outcomes)
        run.options["indices"] = {"kind": indices.kind, "roles": indices.roles}
        if out is not None:
            write_evaluation_indices(out, run.indices)
    if out is not None:
        write_metrics_csv(out / "metrics.csv", rows)
        _write_regions(out / "regions.csv", outcomes)
        from medseg.evaluation.summary import summary_document

        summary = summary_document(run)
        _write_json(out / "summary.json", summary)
        if report:
            from medseg.evaluation.report import write_report

            write_report(out, run, summary, worst.cases())
    if interrupted:
        if out is not None:  # say where the partial results went and that the next run into `out` must replace them
            log.warning(
                "interrupted after %d of %d matched case(s); partial results in %s (a rerun there needs --overwrite)",
                len(outcomes),
                len(matching.pairs),
                out,
            )
        raise KeyboardInterrupt
    return run


#: What an evaluation writes into its output folder; a new run into the same folder removes all of
#: them first (with ``overwrite``), so no file of an earlier run survives beside the new ones.
OUTPUT_NAMES = (
    "metrics.csv",
    "summary.json",
    "regions.csv",
    "report.md",
    "figures",
    "indices.csv",
    "indices_agreement.csv",
)


def prepare_output_folder(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for an evaluation: created if missing, writable, and free of an earlier run.

    An earlier evaluation's outputs (:data:`OUTPUT_NAMES`) are removed when ``overwrite`` is true and
    refused otherwise (:class:`~medseg.errors.InvalidArgumentError` naming them); other files in the
    folder are never touched. Raises ``OSError`` (naming the path) when the folder cannot be created
    or written, before any case is evaluated.
    """
    import shutil

    ensure_writable_folder(out)
    earlier = [name for name in OUTPUT_NAMES if (out / name).exists()]
    if earlier and not overwrite:
        raise InvalidArgumentError(
            f"{out}: holds an earlier evaluation ({', '.join(earlier)}); pass --overwrite (overwrite=True) to "
            "replace it "
            "or choose another output folder"
        )
    for name in earlier:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()


def evaluate_folder(
    pred_dir: str | Path,
    ref_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    **options: Any,
):
    """Evaluate a folder of predictions against references; returns a ``pandas.DataFrame``.

    Args:
        pred_dir: predicted label maps (searched recursively).
        ref_dir: reference label maps; cases are matched by name (see
            :mod:`medseg.evaluation.matching`). Or pass ``references={case_id: path}`` (and
            optionally ``images={case_id: path}`` for the overlays, ``known_labels={value:
            name}`` and ``source`` naming where they came from), e.g. from a dataset manifest
            (``medseg evaluate --manifest`` does this with :func:`medseg.data.manifest.load_manifest`).
        out_dir: where ``metrics.csv``, ``summary.json``, ``regions.csv`` and ``report.md``
            go (nothing is written when ``None``).
        options: ``labels`` (a label spec, :mod:`medseg.common.labels`: the ``--labels`` text
            (a dataset.json, or values, ranges, ``name=value`` and known names), ``{value: name}``
            or values; 0 is never scored; default: the dataset.json beside the references or the
            manifest's labels, else every label found, with cases lacking one filled in as
            ``both_empty``), ``workers`` (processes; 1 = in this process),
            ``progress`` (tqdm bar), ``ref_pattern`` / ``pred_pattern`` (file-name globs),
            ``atol_mm`` (grid tolerance, default 1e-3 mm), ``resample_pred_to_ref``
            (nearest-neighbour), ``report`` (write report.md and figures, default True),
            ``overwrite`` (replace an earlier evaluation in ``out_dir``; default False: refused), ``indices``
            (an :class:`~medseg.evaluation.indices.IndexSpec` from ``parse_roles``: clinical indices of both sides
            and their agreement, written to ``indices.csv`` and ``indices_agreement.csv``; lung indices need every
            case's CT image, from ``images`` or beside the references), ``unannotated`` (case id -> label
            values that case's reference leaves unmarked, e.g. a manifest's partial annotations: not scored there,
            so a structure nobody contoured does not count as a false positive), and
            every option of :func:`medseg.evaluation.evaluate_case` (``metrics``, ``regions``,
            ``region_axis``, ``base_at``, ``region_mode``, ``region_anchor``,
            ``nsd_tolerance_mm``, ``empty_policy``, ``worst_distance_mm``).

    Returns:
        DataFrame with columns ``case, label, region, metric, value, flag`` (failed cases: one
        row with metric ``error``, the message in ``flag``).
    """
    run = run_folder(pred_dir, ref_dir, out_dir, **options)
    return metrics_frame(run.rows)


# -- helpers ----------------------------------------------------------------------------------


def _require_images(matching: Matching) -> None:
    """Lung density indices need every case's CT image: refuse the run up front, naming the cases without one."""
    missing = [p.case_id for p in matching.pairs if p.image is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InvalidArgumentError(
            f"lung indices need each case's CT image; none found for {len(missing)} case(s) ({shown}): pass --images "
            "DIR (files named by case, nnU-Net's _0000 allowed) or a manifest whose image column lists them"
        )


def _import_in_background(modules: list[str]):
    """Import ``modules`` in a thread while the first cases are read (inflating gzip releases the
    GIL): the KD-tree of the exact distance search and matplotlib for the report cost about a
    second of imports that would otherwise come on top of the evaluation. Whoever needs one of
    them later imports it as usual (and waits for this thread's import to finish if it is running);
    a failure here is left for that import to report. Returns the thread (``None`` for no modules)."""
    import importlib
    import threading

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the real import reports it
                return

    if not modules:
        return None
    thread = threading.Thread(target=work, name="medseg-imports", daemon=True)
    thread.start()
    return thread


def _error_row(outcome: CaseOutcome) -> dict[str, Any]:
    return {
        "case": outcome.case_id,
        "label": "",
        "region": "",
        "metric": ERROR_METRIC,
        "value": math.nan,
        "flag": outcome.error,
    }


def _fill_absent_labels(outcomes: list[CaseOutcome], label_names, case_options, unannotated) -> dict[int, str]:
    """With no fixed label list, give every case rows for every label seen in any case (a label
    absent from both maps of a case is ``both_empty`` there, not silently missing), except the labels
    ``unannotated`` (case id -> values) leaves unscored in that case."""
    if label_names is not None:
        return dict(label_names)
    seen = sorted({v for o in outcomes for v in o.labels_present})
    names = {v: str(v) for v in seen}
    from medseg.evaluation.case import evaluate_case

    for outcome in outcomes:
        if outcome.error:
            continue
        skipped = unannotated.get(outcome.case_id, ())
        missing = [v for v in seen if v not in outcome.labels_present and v not in skipped]
        if not missing:
            continue
        # both maps lack these labels: their values are the both-empty constants everywhere
        options = {k: v for k, v in case_options.items() if k not in ("regions", "region_anchor")}
        blank = np.zeros((2, 2, 2), dtype=np.uint8)
        extra = evaluate_case(
            blank, blank, (1.0, 1.0, 1.0), {v: names[v] for v in missing}, case_id=outcome.case_id, **options
        ).rows
        if case_options.get("regions"):
            defined = str(case_options.get("region_anchor", "label")) != "label" and any(
                info.get("ranges") for info in outcome.regions
            )
            for region in ("base", "middle", "apex"):
                extra += [
                    {**row, "region": region, **({} if defined else {"value": math.nan, "flag": "no_region"})}
                    for row in extra
                    if row["region"] == "all"
                ]
        outcome.rows = outcome.rows + extra
        outcome.rows.sort(key=lambda r: _label_order(r["label"]))
    return names


def _label_order(label: str) -> tuple[int, str]:
    return (int(label), "") if str(label).isdigit() else (1 << 30, str(label))


def _options_record(pred_dir, ref_dir, source, labels, workers, atol_mm, resample, case_options) -> dict[str, Any]:
    from medseg.io.labelmaps import DECOMPRESSOR

    record = {
        "pred": str(pred_dir),
        "ref": str(ref_dir) if ref_dir is not None else None,
        "manifest": str(source) if source is not None else None,
        "labels": {str(k): v for k, v in labels.items()} if labels else "all found",
        "workers": workers,
        "geometry_tolerance_mm": atol_mm,
        "resample_pred_to_ref": resample,
        "regions": bool(case_options.get("regions", False)),
        "region_axis": str(case_options.get("region_axis", "auto")),
        "base_at": case_options.get("base_at", "auto"),
        "region_mode": case_options.get("region_mode", "volumetric"),
        "region_anchor": str(case_options.get("region_anchor", "label")),
        "nsd_tolerance_mm": case_options.get("nsd_tolerance_mm", 1.0),
        "empty_policy": case_options.get("empty_policy", "worst"),
        "worst_distance_mm": case_options.get("worst_distance_mm") or "volume diagonal",
        "metrics": case_options.get("metrics") or "all",
        "gzip": DECOMPRESSOR,
    }
    return record


def _write_regions(path: Path, outcomes: list[CaseOutcome]) -> None:
    entries = [info for o in outcomes for info in o.regions]
    if not entries:
        return
    columns = [
        "case",
        "label",
        "anchor",
        "axis",
        "reference_first",
        "reference_last",
        "base_end",
        "base_rule",
        "base",
        "middle",
        "apex",
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for info in entries:
            ranges = info.get("ranges") or {}
            spans = [
                f"{ranges[name][0]}-{ranges[name][1]}" if name in ranges else "" for name in ("base", "middle", "apex")
            ]
            writer.writerow(
                [
                    info["case"],
                    info["label"],
                    info["anchor"],
                    info["axis"],
                    info["reference_first"],
                    info["reference_last"],
                    info["base_end"],
                    info["base_rule"],
                    *spans,
                ]
            )


def _write_json(path: Path, document: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_jsonable(document), indent=2) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


class _WorstCases:
    """Keeps the snapshots of the few cases with the lowest mean foreground dice (region all)."""

    def __init__(self, k: int):
        self.k = k
        self.kept: list[tuple[float, str, CaseOutcome]] = []

    def offer(self, outcome: CaseOutcome) -> None:
        snapshot = outcome.snapshot
        outcome.snapshot = None  # keep memory bounded: only the worst keep theirs
        if outcome.error or not snapshot:
            return
        dice = [
            r["value"]
            for r in outcome.rows
            if r["metric"] == "dice" and r["region"] == "all" and not math.isnan(r["value"])
        ]
        if not dice:
            return
        score = float(np.mean(dice))
        self.kept.append(
            (
                score,
                outcome.case_id,
                CaseOutcome(outcome.case_id, rows=outcome.rows, snapshot=snapshot, image=outcome.image),
            )
        )
        self.kept.sort(key=lambda item: (item[0], item[1]))
        del self.kept[self.k :]

    def cases(self) -> list[tuple[float, CaseOutcome]]:
        return [(score, outcome) for score, _, outcome in self.kept]
