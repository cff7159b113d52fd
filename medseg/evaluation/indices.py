"""Clinical indices from label maps: cardiac function and lung volume and density, and their agreement.

**Cardiac** (per subject, from its end-diastole (ED) and end-systole (ES) frames), following the ACDC challenge:

==========  ====  ================================================================================
index       unit  definition
==========  ====  ================================================================================
lv_edv      ml    LV cavity volume at ED
lv_esv      ml    LV cavity volume at ES
lv_sv       ml    stroke volume, lv_edv - lv_esv
lv_ef       %     ejection fraction, 100 * lv_sv / lv_edv
rv_edv ...  ml    the same four for the RV cavity (rv_edv, rv_esv, rv_sv, rv_ef)
myo_mass    g     myocardium volume at ED times 1.05 g/ml (:data:`MYOCARDIUM_DENSITY_G_PER_ML`)
==========  ====  ================================================================================

**Lung** (per scan; ``side`` is ``lung_left``, ``lung_right`` or ``lung_total`` = both lungs together):
``side_volume`` (ml); ``lung_right_left_ratio`` (right volume / left volume); with the CT image in Hounsfield
units: ``side_mean_hu`` (mean lung density, HU), ``side_laa950`` (emphysema index: % of lung voxels strictly
below -950 HU) and ``side_pd15`` (HU at the 15th percentile of the lung voxels' values, linear interpolation
between order statistics as ``numpy.percentile``); ``tumour_volume`` (ml) when a tumour role is given. Lung
indices count the voxels labelled with the lung roles only: a tumour labelled separately inside a lung is not lung.

Volumes are voxel counts times the voxel volume ``|det(affine[:3, :3])|`` (mm^3, / 1000 for ml): every label map
is measured on its own grid, whatever its orientation.

**Label roles** (:func:`parse_roles`): which label value is which structure. Cardiac defaults are ACDC's (``rv=1,
myo=2, lv=3``); lung defaults are medseg's (``lung_left=1, lung_right=2``: :mod:`medseg.classical.lung_ct` and
the chest-CT phantoms); ``--roles lung_right=1,lung_left=2,tumour=3`` fits the NSCLC radiotherapy contours.

**ED/ES pairing** (:func:`medseg.common.cardiac_phases.cardiac_phase`): a case id ending in ``_ED`` / ``_ES``
(any case) is that phase of the subject named by the rest; a case id ending in ``_frameNN`` (ACDC's own
layout) is looked up in the ``Info.cfg`` (``ED: 1``, ``ES: 12``) found in the folder of the case's label map or
image. Frames that are neither ED nor ES
are ignored.

**Empty input, never a silent NaN**: every value that is not an ordinary measurement carries a flag. A missing
frame gives NaN for the indices that need it, flagged ``missing_ed`` / ``missing_es``; a case whose phase cannot
be told gives NaN flagged ``phase_unknown`` (``no_info_cfg`` when an ACDC frame has no Info.cfg beside it); a
structure absent from a frame gives volume 0 flagged ``<role>_absent_ed`` / ``<role>_absent_es`` (lung:
``<role>_absent``), and the ratios that would divide by it (EF, right/left ratio) and the densities of an absent
lung are NaN with the same flag. An absent tumour is volume 0 flagged ``tumour_absent``.

**Agreement** (:func:`agreement_table`), per index over the subjects where both sides are numbers: n, the mean of
each side, the bias (mean of prediction - reference), the SD of the differences, the 95 % limits of agreement
(bias -+ 1.96 SD), Pearson's r and the two-sided p-value of the paired t-test
(:func:`medseg.evaluation.statistics.paired_statistics`, the same statistics as ``medseg evaluate compare``; its
Wilcoxon test is left out here, since importing ``scipy.stats`` would cost more than the indices themselves).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg.common.cardiac_phases import cardiac_phase
from medseg.errors import ConfigError, InvalidArgumentError

log = logging.getLogger(__name__)

KINDS = ("cardiac", "lung")
DEFAULT_ROLES: dict[str, dict[str, int]] = {
    "cardiac": {"rv": 1, "myo": 2, "lv": 3},
    "lung": {"lung_left": 1, "lung_right": 2},
}
#: roles a kind accepts beyond its defaults
OPTIONAL_ROLES: dict[str, tuple[str, ...]] = {"cardiac": (), "lung": ("tumour",)}
MYOCARDIUM_DENSITY_G_PER_ML = 1.05
LAA_THRESHOLD_HU = -950.0
PD_PERCENTILE = 15.0
LUNG_SIDES = ("lung_left", "lung_right", "lung_total")

INDEX_UNITS: dict[str, str] = {
    **{f"{v}_{q}": "%" if q == "ef" else "ml" for v in ("lv", "rv") for q in ("edv", "esv", "sv", "ef")},
    "myo_mass": "g",
    **{f"{side}_volume": "ml" for side in LUNG_SIDES},
    "lung_right_left_ratio": "1",
    **{f"{side}_{q}": unit for q, unit in (("mean_hu", "HU"), ("laa950", "%"), ("pd15", "HU")) for side in LUNG_SIDES},
    "tumour_volume": "ml",
}
INDICES_COLUMNS = ("subject", "index", "unit", "value", "flag")
PAIRED_COLUMNS = ("subject", "index", "unit", "reference", "prediction", "difference", "flag")
AGREEMENT_COLUMNS = (
    "index", "unit", "n", "mean_reference", "mean_prediction", "bias", "sd_difference", "loa_lower", "loa_upper",
    "pearson_r", "ttest_p", "n_flagged",
)  # fmt: skip


@dataclass(frozen=True)
class IndexSpec:
    """Which indices to compute (``kind``: ``"cardiac"`` or ``"lung"``) and the label value of each role."""

    kind: str
    roles: dict[str, int]

    @property
    def needs_image(self) -> bool:
        """Lung density indices need the CT image in HU."""
        return self.kind == "lung"


def parse_roles(kind: str, spec: str | None = None) -> IndexSpec:
    """The :class:`IndexSpec` of ``kind`` with its default roles, overridden by ``spec`` (``"lv=3,rv=1,myo=2"``:
    comma-separated ``role=value`` with whole values >= 1). Raises :class:`InvalidArgumentError` for an unknown
    kind or role (listing the known ones), a bad value, or two roles sharing a value."""
    if kind not in KINDS:
        raise InvalidArgumentError(f"--indices: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    roles = dict(DEFAULT_ROLES[kind])
    known = (*roles, *OPTIONAL_ROLES[kind])
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        role, sep, value = (text.strip() for text in item.partition("="))
        if role not in known:
            raise InvalidArgumentError(f"--roles {item!r}: unknown role for {kind} indices; known: {', '.join(known)}")
        if not sep or not value.isdigit() or int(value) < 1:
            raise InvalidArgumentError(f"--roles {item!r}: expected role=value with a whole value >= 1")
        roles[role] = int(value)
    by_value: dict[int, list[str]] = {}
    for role, value in roles.items():
        by_value.setdefault(value, []).append(role)
    shared = [f"{' and '.join(names)} = {value}" for value, names in by_value.items() if len(names) > 1]
    if shared:
        raise InvalidArgumentError(f"--roles: one label value per role ({'; '.join(shared)}); set each, e.g. --roles "
                                   + ",".join(f"{r}={v}" for r, v in DEFAULT_ROLES[kind].items()))  # fmt: skip
    return IndexSpec(kind, roles)


# -- per case: measurements ------------------------------------------------------------------


def role_volumes_ml(labels: np.ndarray, affine: np.ndarray, roles: dict[str, int]) -> dict[str, float]:
    """Volume in ml of each role's label value in ``labels`` (any axis order): voxel count times
    ``|det(affine[:3, :3])| / 1000``. A value that does not occur gives 0.0."""
    voxel_ml = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0
    flat = _flat(labels, labels)
    return {role: float(np.count_nonzero(flat == value)) * voxel_ml for role, value in roles.items()}


def _flat(array: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``array`` as 1D in the memory order of ``like`` (a view when both share it): two arrays flattened against
    the same ``like`` pair their voxels element by element."""
    return np.asarray(array).ravel(order="F" if np.asarray(like).flags.f_contiguous else "C")


def lung_density(values_hu: np.ndarray) -> dict[str, float]:
    """``mean_hu``, ``laa950`` (% of the values strictly below -950 HU) and ``pd15`` (15th percentile, HU, linear
    interpolation as ``numpy.percentile``) of the lung voxels' values (1D, HU). No values: NaN for all three
    (flagged by :func:`lung_indices`)."""
    if values_hu.size == 0:
        return {"mean_hu": math.nan, "laa950": math.nan, "pd15": math.nan}
    values = values_hu.astype(np.float64, copy=False)
    return {
        "mean_hu": float(values.mean()),
        "laa950": 100.0 * float(np.count_nonzero(values < LAA_THRESHOLD_HU)) / values.size,
        "pd15": float(np.percentile(values, PD_PERCENTILE)),
    }


def measure(spec: IndexSpec, labels, image=None) -> dict[str, float]:
    """What one label map contributes to its indices: role volumes (ml) and, for lung indices, the densities of
    each side (``lung_left_mean_hu``, ...) from ``image`` (a :class:`~medseg.io.Volume` in HU on the same grid).

    ``labels`` is a :class:`~medseg.io.Volume`. Raises :class:`ConfigError` when lung indices lack the image or
    the image lies on another grid (both files named).
    """
    measures = role_volumes_ml(labels.array, labels.affine, spec.roles)
    if spec.kind != "lung":
        return measures
    from medseg.io import grid_mismatch

    if image is None:
        raise ConfigError(f"{labels.name}: lung density indices need the CT image (--images DIR or a manifest)")
    problem = grid_mismatch(labels.affine, labels.shape, image.affine, image.shape, 1e-3, ("label map", "image"))
    if problem:
        raise ConfigError(f"{labels.name} and its image {image.name} are not on one voxel grid ({problem})")
    flat_labels, flat_image = _flat(labels.array, labels.array), _flat(image.array, labels.array)
    values = {side: flat_image[flat_labels == spec.roles[side]] for side in ("lung_left", "lung_right")}
    values["lung_total"] = np.concatenate([values["lung_left"], values["lung_right"]])
    for side, side_values in values.items():
        for name, value in lung_density(side_values).items():
            measures[f"{side}_{name}"] = value
    return measures


def measure_files(spec: IndexSpec, label_path, image_path=None) -> dict[str, float]:
    """:func:`measure` of a label map file (and, for lung indices, its CT image file, read in HU)."""
    from medseg.io import load_volume, read_label_map

    labels = read_label_map(label_path)
    image = load_volume(image_path, ct=True) if spec.needs_image and image_path else None
    return measure(spec, labels, image)


# -- per subject: indices ---------------------------------------------------------------------


def _row(subject: str, index: str, value: float, flag: str = "") -> dict[str, Any]:
    return {"subject": subject, "index": index, "unit": INDEX_UNITS[index], "value": float(value), "flag": flag}


def cardiac_indices(
    subject: str, ed: dict[str, float] | None, es: dict[str, float] | None, flag: str = ""
) -> list[dict]:
    """The nine cardiac index rows of one subject from its ED and ES role volumes (ml; ``None``: frame missing).

    ``flag`` (e.g. ``phase_unknown``) marks every row NaN. See the module docstring for the flags."""
    rows = []
    for v in ("lv", "rv"):
        edv = ed[v] if ed else math.nan
        esv = es[v] if es else math.nan
        flags_ed = flag or ("missing_ed" if ed is None else (f"{v}_absent_ed" if edv == 0 else ""))
        flags_es = flag or ("missing_es" if es is None else (f"{v}_absent_es" if esv == 0 else ""))
        both = ";".join(dict.fromkeys(f for f in (flags_ed, flags_es) if f))
        stroke = edv - esv
        rows += [
            _row(subject, f"{v}_edv", math.nan if flag else edv, flags_ed),
            _row(subject, f"{v}_esv", math.nan if flag else esv, flags_es),
            _row(subject, f"{v}_sv", math.nan if flag else stroke, both),
            _row(subject, f"{v}_ef", 100.0 * stroke / edv if edv > 0 and not flag else math.nan, both),
        ]
    myo = ed["myo"] if ed and not flag else math.nan
    myo_flag = flag or ("missing_ed" if ed is None else ("myo_absent_ed" if myo == 0 else ""))
    rows.append(_row(subject, "myo_mass", myo * MYOCARDIUM_DENSITY_G_PER_ML, myo_flag))
    return rows


def lung_indices(subject: str, measures: dict[str, float], spec: IndexSpec) -> list[dict]:
    """The lung index rows of one scan from its :func:`measure` values (see the module docstring)."""
    left, right = measures["lung_left"], measures["lung_right"]
    absent = {
        "lung_left": "lung_left_absent" if left == 0 else "",
        "lung_right": "lung_right_absent" if right == 0 else "",
    }
    absent["lung_total"] = ";".join(f for f in absent.values() if f) if left == 0 and right == 0 else ""
    rows = [
        _row(subject, "lung_left_volume", left, absent["lung_left"]),
        _row(subject, "lung_right_volume", right, absent["lung_right"]),
        _row(subject, "lung_total_volume", left + right, absent["lung_total"]),
        _row(subject, "lung_right_left_ratio", right / left if left > 0 else math.nan,
             ";".join(f for f in (absent["lung_right"], absent["lung_left"]) if f)),
    ]  # fmt: skip
    for quantity in ("mean_hu", "laa950", "pd15"):
        rows += [
            _row(subject, f"{side}_{quantity}", measures[f"{side}_{quantity}"], absent[side]) for side in LUNG_SIDES
        ]
    if "tumour" in spec.roles:
        tumour = measures["tumour"]
        rows.append(_row(subject, "tumour_volume", tumour, "tumour_absent" if tumour == 0 else ""))
    return rows


def subject_indices(
    spec: IndexSpec, measures: dict[str, dict[str, float] | None], folders: dict[str, list[Path]]
) -> list[dict]:
    """Index rows (:data:`INDICES_COLUMNS`) of every subject.

    Args:
        spec: kind and roles.
        measures: case id -> :func:`measure` values of its label map (``None``: the case failed; its frame counts
            as missing).
        folders: case id -> folders that may hold its ``Info.cfg`` (cardiac ``_frameNN`` cases).

    Returns:
        Rows sorted by subject, in the index order of the kind. Lung: one subject per case. Cardiac: cases are
        grouped by subject; a case whose phase cannot be told becomes a subject of its own, every index NaN and
        flagged; two cases of the same subject and phase are an error (:class:`ConfigError` naming them).
    """
    if spec.kind == "lung":
        rows = []
        for case_id, values in sorted(measures.items()):
            rows += lung_indices(case_id, values, spec) if values is not None else _failed(spec, case_id)
        return rows
    frames: dict[str, dict[str, str]] = {}
    unknown: dict[str, str] = {}
    for case_id in sorted(measures):
        subject, phase, flag = cardiac_phase(case_id, folders.get(case_id, ()))
        if phase is None:
            if flag != "not_ed_or_es":
                unknown[case_id] = flag
            continue
        earlier = frames.setdefault(subject, {}).get(phase)
        if earlier is not None:
            raise ConfigError(f"subject {subject}: two {phase} frames ({earlier}, {case_id}); keep one")
        frames[subject][phase] = case_id
    groups = [
        (subject, cardiac_indices(subject, *(measures.get(cases.get(p, "")) for p in ("ED", "ES"))))
        for subject, cases in frames.items()
    ]
    groups += [(case_id, cardiac_indices(case_id, None, None, flag)) for case_id, flag in unknown.items()]
    return [row for _, rows in sorted(groups, key=lambda group: group[0]) for row in rows]


def _failed(spec: IndexSpec, subject: str) -> list[dict]:
    names = [n for n in INDEX_UNITS if n.startswith("lung_") or (n == "tumour_volume" and "tumour" in spec.roles)]
    return [_row(subject, name, math.nan, "case_failed") for name in names]


# -- agreement ---------------------------------------------------------------------------------


def paired_indices(reference: list[dict], prediction: list[dict]) -> list[dict]:
    """Join reference and prediction index rows on ``(subject, index)`` into rows of :data:`PAIRED_COLUMNS`;
    ``difference`` is prediction - reference; ``flag`` joins both sides' flags, prefixed ``reference:`` /
    ``prediction:``. A row present on one side only gets NaN on the other (flag ``missing``)."""
    keyed = {(r["subject"], r["index"]): r for r in reference}
    predicted = {(r["subject"], r["index"]): r for r in prediction}
    order = list(dict.fromkeys([*keyed, *predicted]))
    rows = []
    for key in order:
        ref, pred = keyed.get(key), predicted.get(key)
        flags = [
            f"{side}:{row['flag'] if row else 'missing'}"
            for side, row in (("reference", ref), ("prediction", pred))
            if row is None or row["flag"]
        ]
        a = ref["value"] if ref else math.nan
        b = pred["value"] if pred else math.nan
        rows.append({"subject": key[0], "index": key[1], "unit": INDEX_UNITS[key[1]], "reference": a, "prediction": b,
                     "difference": b - a, "flag": ";".join(flags)})  # fmt: skip
    return rows


def agreement_table(paired: list[dict]) -> list[dict]:
    """Per index (in first-seen order), the agreement of prediction with reference (:data:`AGREEMENT_COLUMNS`;
    see the module docstring); ``n_flagged`` counts the subjects with a flag on either side (their numeric values
    are used, their NaN ones not)."""
    from medseg.evaluation.statistics import paired_statistics

    table = []
    for index in dict.fromkeys(r["index"] for r in paired):
        rows = [r for r in paired if r["index"] == index]
        s = paired_statistics(
            np.array([r["reference"] for r in rows]), np.array([r["prediction"] for r in rows]), wilcoxon=False
        )
        table.append({"index": index, "unit": INDEX_UNITS[index], "n": s["n"], "mean_reference": s["mean_a"],
                      "mean_prediction": s["mean_b"], "bias": s["mean_diff"], "sd_difference": s["std_diff"],
                      "loa_lower": s["loa_lower"], "loa_upper": s["loa_upper"], "pearson_r": s["pearson_r"],
                      "ttest_p": s["ttest_p"],
                      "n_flagged": sum(1 for r in rows if r["flag"])})  # fmt: skip
    return table


@dataclass
class IndicesResult:
    """Indices of an evaluation: the spec, the paired rows (:data:`PAIRED_COLUMNS`) and the agreement table."""

    spec: IndexSpec
    paired: list[dict]
    agreement: list[dict]


def evaluation_indices(spec: IndexSpec, outcomes) -> IndicesResult:
    """Indices of both sides of an evaluation run (``CaseOutcome`` objects with ``measures`` =
    ``{"reference": ..., "prediction": ...}``) paired and summarised. ``Info.cfg`` files are looked for beside the
    reference, the prediction and the image of each case. A failed case (no ``measures``) has its reference measured
    here, so its reference indices remain; its prediction counts as missing."""
    from medseg.errors import MedsegError

    folders = {o.case_id: [Path(p).parent for p in (o.reference, o.prediction, o.image) if p] for o in outcomes}
    for outcome in outcomes:
        if outcome.measures is None and outcome.reference:  # a failed case: its reference still counts
            try:
                outcome.measures = {
                    "reference": measure_files(spec, outcome.reference, outcome.image),
                    "prediction": None,
                }
            except MedsegError as exc:
                log.warning("%s: reference not measured for the indices: %s", outcome.case_id, exc)
    sides = {}
    for side in ("reference", "prediction"):
        measures = {o.case_id: (o.measures or {}).get(side) for o in outcomes}
        sides[side] = subject_indices(spec, measures, folders)
    paired = paired_indices(sides["reference"], sides["prediction"])
    return IndicesResult(spec, paired, agreement_table(paired))


# -- files -------------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return value


def write_rows(path: Path, rows: list[dict], columns: tuple[str, ...]) -> Path:
    """Write ``rows`` as CSV with ``columns`` (NaN as ``nan``; floats in full precision), atomically."""
    from medseg.io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([_text(row[c]) for c in columns] for row in rows)
    return path


def write_evaluation_indices(out: Path, result: IndicesResult) -> list[Path]:
    """``out/indices.csv`` (:data:`PAIRED_COLUMNS`) and ``out/indices_agreement.csv`` (:data:`AGREEMENT_COLUMNS`)."""
    return [write_rows(out / "indices.csv", result.paired, PAIRED_COLUMNS),
            write_rows(out / "indices_agreement.csv", result.agreement, AGREEMENT_COLUMNS)]  # fmt: skip


def measure_pair(spec: IndexSpec, reference, prediction, image_path=None) -> dict[str, dict[str, float]]:
    """:func:`measure` of a reference and a prediction (:class:`~medseg.io.Volume` label maps on one grid), the
    CT image (lung indices) read once from ``image_path`` in HU. Returns ``{"reference": ..., "prediction": ...}``."""
    image = None
    if spec.needs_image:
        from medseg.io import load_volume

        if image_path is None:
            raise ConfigError(f"{reference.name}: lung density indices need the CT image (--images DIR or a manifest)")
        image = load_volume(image_path, ct=True)
    return {"reference": measure(spec, reference, image), "prediction": measure(spec, prediction, image)}


def quantify(
    spec: IndexSpec,
    labels: dict[str, Path],
    images: dict[str, Path] | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = False,
    overwrite: bool = False,
) -> list[dict]:
    """Indices of label maps alone (no reference): the clinical use, e.g. predictions for new scans.

    Args:
        spec: kind and roles (:func:`parse_roles`).
        labels: case id -> label map file (cardiac cases are paired into subjects by name, see the module
            docstring; ``Info.cfg`` is looked for beside each label map and image).
        images: case id -> CT image file in HU (required for every case by lung indices).
        out_dir: where ``indices.csv`` (:data:`INDICES_COLUMNS`) goes; nothing is written when ``None``. An
            existing ``indices.csv`` is refused unless ``overwrite``.
        progress: show a progress bar.

    Returns:
        The index rows. A case that cannot be read is logged as a warning and counts as missing (cardiac:
        ``missing_ed`` / ``missing_es``; lung: every index NaN flagged ``case_failed``).
    """
    from medseg.common.progress import progress_bar
    from medseg.errors import MedsegError
    from medseg.io import ensure_writable_folder

    images = images or {}
    if not labels:
        raise ConfigError("no label maps to quantify")
    if spec.needs_image:
        missing = sorted(set(labels) - set(images))
        if missing:
            raise ConfigError(f"lung indices need each case's CT image; none for {len(missing)} case(s) "
                              f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}): pass --images DIR or a "
                              "manifest with an image column")  # fmt: skip
    out = None
    if out_dir is not None:
        out = ensure_writable_folder(Path(out_dir).expanduser())
        if (out / "indices.csv").exists() and not overwrite:
            raise InvalidArgumentError(f"{out / 'indices.csv'}: exists; pass --overwrite to replace it")
    measures: dict[str, dict[str, float] | None] = {}
    for case_id in progress_bar(sorted(labels), desc="quantify", unit="case", enabled=progress):
        try:
            measures[case_id] = measure_files(spec, labels[case_id], images.get(case_id))
        except MedsegError as exc:
            log.warning("%s: FAILED: %s", case_id, exc)
            measures[case_id] = None
    folders = {c: [Path(p).parent for p in (labels[c], images.get(c)) if p] for c in labels}
    rows = subject_indices(spec, measures, folders)
    if out is not None:
        write_rows(out / "indices.csv", rows, INDICES_COLUMNS)
    return rows
