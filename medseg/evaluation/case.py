"""Evaluate one case: every label, region ``all`` and optionally base / middle / apex.

:func:`evaluate_case` works on arrays (indexed ``[i, j, k]``, spacing in mm per axis);
:func:`evaluate_volumes` takes two :class:`medseg.io.Volume` and checks their grids first.
Both return a :class:`CaseResult`: plain rows ``{label, region, metric, value, flag}`` (see
:mod:`medseg.evaluation.metrics` for definitions, flags and the empty-mask policy) plus the
region splits that were used.

Speed: each full label map is read once (its foreground box,
:func:`medseg.evaluation.surfaces.bounding_box`); one pass over the foreground crop then gives
every label's box and voxel count (:func:`medseg.evaluation.surfaces.label_boxes`), and each
structure touches only its own box. The surface distances of a structure are computed once
(:func:`medseg.evaluation.surfaces.surface_distances`); every distance metric of every region
is derived from them. No full-volume float or boolean arrays are made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medseg.common.labels import parse_label_spec
from medseg.errors import GeometryError, InvalidArgumentError
from medseg.evaluation.metrics import (
    ALL_METRICS,
    DISTANCE_METRICS,
    check_metrics,
    check_policy,
    distance_values,
    empty_distance_values,
    empty_state,
    flag_for,
    overlap_values,
)
from medseg.evaluation.regions import REGION_NAMES, RegionSplit, choose_region_axis, split_regions
from medseg.evaluation.surfaces import bounding_box, label_boxes, surface_distances, union_box

REGION_MODES = ("volumetric", "slicewise")
#: metrics averaged over slices in the slice-wise mode (the others are pooled over the region)
SLICEWISE_AVERAGED = ("dice", "jaccard", "voe", "hd", "hd95", "asd", "nsd")


@dataclass
class CaseResult:
    """What :func:`evaluate_case` returns.

    Attributes:
        rows: one dict per value: ``case`` (when a case id was given), ``label`` (name, or the
            value as text), ``region`` (``all``, ``base``, ``middle``, ``apex``), ``metric``,
            ``value`` (float; NaN where undefined), ``flag`` (``""`` or why the value is a
            convention: ``both_empty``, ``ref_empty``, ``pred_empty``, ``no_region``,
            ``empty_region``, or slice counts in the slice-wise mode).
        regions: one dict per label when regions were requested: the label, the anchor, the
            region axis, the reference's first/last slice, the base end chosen and each
            region's slice range (``None`` entries when the anchor's reference is empty).
        labels_present: label values found in the reference or the prediction (non-zero; when
            ``labels`` were given, only those of them that occur).
        undeclared_prediction_values: non-zero values in the prediction that are neither among the
            given ``labels`` nor in the reference (never scored, and not a structure left out on
            purpose; ``[]`` when no labels were given).
        foreground_box: the smallest box (one ``slice`` per array axis, voxel indices, stop
            exclusive) holding every non-zero voxel of either map; ``None`` when both are empty.
    """

    rows: list[dict[str, Any]]
    regions: list[dict[str, Any]] = field(default_factory=list)
    labels_present: list[int] = field(default_factory=list)
    undeclared_prediction_values: list[int] = field(default_factory=list)
    foreground_box: tuple[slice, ...] | None = None

    def value(self, label: object, metric: str, region: str = "all") -> float:
        """The value of one metric (label given as name or value); KeyError if absent."""
        for row in self.rows:
            if str(row["label"]) == str(label) and row["metric"] == metric and row["region"] == region:
                return row["value"]
        raise KeyError(f"no value for label {label!r}, metric {metric!r}, region {region!r}")

    def flag(self, label: object, metric: str, region: str = "all") -> str:
        """The flag of one value (``""`` when it is a plain measurement)."""
        for row in self.rows:
            if str(row["label"]) == str(label) and row["metric"] == metric and row["region"] == region:
                return row["flag"]
        raise KeyError(f"no value for label {label!r}, metric {metric!r}, region {region!r}")

    def to_frame(self):
        """The rows as a ``pandas.DataFrame`` (columns as in ``metrics.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.rows)


@dataclass(frozen=True)
class _Options:
    metrics: tuple[str, ...]
    regions: bool
    region_mode: str
    base_at: str
    nsd_tolerance_mm: float
    empty_policy: str
    worst_distance_mm: float | None


def normalise_labels(labels: object) -> dict[int, str] | None:
    """``None``, a label spec (:func:`medseg.common.labels.parse_label_spec`: ``{value: name}``, values, or the
    ``--labels`` text) -> ``{value: name}`` sorted by value (or ``None``); 0 (background) is refused."""
    names = parse_label_spec(labels)
    if names is None:
        return None
    if 0 in names:
        raise InvalidArgumentError(f"labels must be positive values (0 is background), got {sorted(names)}")
    return names


def evaluate_case(
    reference: np.ndarray,
    prediction: np.ndarray,
    spacing_mm: Iterable[float] = (1.0, 1.0, 1.0),
    labels: object = None,
    *,
    affine: np.ndarray | None = None,
    case_id: str | None = None,
    metrics: object = None,
    regions: bool = False,
    region_axis: object = "auto",
    base_at: str = "auto",
    region_mode: str = "volumetric",
    region_anchor: object = "label",
    nsd_tolerance_mm: float = 1.0,
    empty_policy: str = "worst",
    worst_distance_mm: float | None = None,
) -> CaseResult:
    """Score a predicted label map against a reference label map on the same voxel grid.

    Args:
        reference, prediction: integer label maps of one shape, 3D ``[i, j, k]`` (2D arrays
            are taken as one slice; regions need 3D). 0 is background.
        spacing_mm: voxel size along each array axis in mm (distances and volumes use it).
        labels: which labels to score: ``None`` (every non-zero value present in either map),
            an iterable of values, or ``{value: name}``; names are used in the rows.
        affine: optional 4 x 4 voxel-to-RAS+ matrix: gives the voxel volume (|det|) and the
            superior-inferior axis for ``region_axis="auto"`` on isotropic volumes.
        case_id: added to every row as ``case`` when given.
        metrics: subset of :data:`medseg.evaluation.metrics.ALL_METRICS` (names or a
            comma-separated string); default all. Surfaces are computed only when a distance
            metric is requested.
        regions: also report base / middle / apex (see :mod:`medseg.evaluation.regions`).
        region_axis: ``"auto"`` or 0/1/2.
        base_at: ``"auto"``, ``"first"`` or ``"last"``.
        region_mode: ``"volumetric"`` (3D metrics on each region's slices; surfaces of the full
            3D masks, surface voxels counted in the region, distances to the other full
            surface) or ``"slicewise"`` (2D metrics per slice, averaged over the slices of the
            region holding either mask: dice, jaccard, voe, hd, hd95, asd, nsd; volumes, rvd,
            sensitivity, specificity and precision pooled over the region's voxels). The mode
            applies to region ``all`` too.
        region_anchor: whose reference extent defines the regions: ``"label"`` (each label's
            own), ``"foreground"`` (all non-zero reference voxels) or one label (value or name).
        nsd_tolerance_mm: tolerance of the normalised surface Dice (mm).
        empty_policy: ``"worst"`` (distances of a structure missing on one side are
            ``worst_distance_mm``) or ``"nan"`` (NaN instead); flagged either way.
        worst_distance_mm: default the diagonal of the volume in mm (of a slice, slice-wise).

    Returns:
        A :class:`CaseResult`. Rows come label by label, region by region (``all`` first),
        metric by metric in :data:`ALL_METRICS` order.

    Raises:
        GeometryError: shapes differ. InvalidArgumentError: invalid options.
    """
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise GeometryError(
            f"{case_id or 'case'}: reference shape {reference.shape} != prediction shape {prediction.shape}"
        )
    spacing = np.asarray(tuple(spacing_mm), dtype=np.float64)
    flat_case = reference.ndim == 2
    if flat_case:
        if regions:
            raise InvalidArgumentError(f"{case_id or 'case'}: regions need a 3D volume, got a 2D array")
        reference, prediction = reference[:, :, None], prediction[:, :, None]
        spacing = np.append(spacing[:2], 1.0)
    if reference.ndim != 3 or spacing.size != 3:
        raise GeometryError(
            f"{case_id or 'case'}: need 3D arrays and 3 spacings, got {reference.shape} and {spacing.tolist()}"
        )
    if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise InvalidArgumentError(f"{case_id or 'case'}: voxel spacing must be positive, got {spacing.tolist()}")
    if region_mode not in REGION_MODES:
        raise InvalidArgumentError(f"region_mode must be volumetric or slicewise, got {region_mode!r}")
    if flat_case and region_mode == "slicewise":
        region_mode = "volumetric"  # one slice: the same thing
    options = _Options(
        check_metrics(metrics),
        bool(regions),
        region_mode,
        base_at,
        float(nsd_tolerance_mm),
        check_policy(empty_policy),
        worst_distance_mm,
    )
    label_names = normalise_labels(labels)

    voxel_ml = (
        abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3]))) / 1000.0
        if affine is not None
        else float(np.prod(spacing)) / 1000.0
    )
    axis = choose_region_axis(spacing, affine, region_axis) if (regions or region_mode == "slicewise") else None
    if flat_case:
        axis = 2 if region_mode == "slicewise" else axis
    reported_axis = axis
    transposed = not flat_case and reference.flags.f_contiguous and not reference.flags.c_contiguous
    if transposed:
        # NIfTI data are Fortran-ordered: work on the (C-ordered) transposed views, axes reversed
        reference, prediction, spacing = reference.T, prediction.T, spacing[::-1].copy()
        axis = None if axis is None else 2 - axis
    # the one read of the full maps; everything after it works on crops
    box = union_box(bounding_box(reference), bounding_box(prediction))
    ref_crop = reference[box] if box is not None else None
    pred_crop = prediction[box] if box is not None else None
    ref_boxes = label_boxes(ref_crop) if box is not None else {}
    pred_boxes = label_boxes(pred_crop) if box is not None else {}
    if label_names is None:
        label_names = {v: str(v) for v in sorted(set(ref_boxes) | set(pred_boxes))}
        undeclared: list[int] = []
    else:  # labels were given: what else was predicted is never scored
        undeclared = [v for v in pred_boxes if v not in label_names and v not in ref_boxes]
    present = [v for v in label_names if v in ref_boxes or v in pred_boxes]
    geometry = _Geometry(reference.shape, spacing, voxel_ml, axis, box, flat_case, reported_axis)
    anchor_counts = _anchor_counts(region_anchor, reference, box, geometry, label_names) if regions else None

    rows: list[dict[str, Any]] = []
    region_info: list[dict[str, Any]] = []
    for value, name in label_names.items():
        label_box = union_box(*(found[value][0] for found in (ref_boxes, pred_boxes) if value in found))
        label_rows, info = _evaluate_label(
            value, name, ref_crop, pred_crop, label_box, geometry, options, anchor_counts, region_anchor
        )
        rows.extend(label_rows)
        if info is not None:
            region_info.append(info)
    if case_id is not None:
        rows = [{"case": case_id, **row} for row in rows]
        region_info = [{"case": case_id, **info} for info in region_info]
    if box is not None:
        box = tuple(reversed(box)) if transposed else box[:2] if flat_case else box
    return CaseResult(rows, region_info, present, undeclared, box)


def evaluate_volumes(
    reference, prediction, labels: object = None, *, atol_mm: float = 1e-3, case_id: str | None = None, **options: Any
) -> CaseResult:
    """:func:`evaluate_case` on two :class:`medseg.io.Volume` objects after checking their grids.

    Spacing and affine come from the reference volume. ``options`` are those of
    :func:`evaluate_case`. Raises :class:`GeometryError` (naming both files) when the volumes
    do not share a voxel grid within ``atol_mm`` (resample first, e.g. with
    :func:`medseg.evaluation.resampling.resample_nearest`).
    """
    from medseg.io import check_same_grid

    check_same_grid(reference, prediction, atol_mm, ("reference", "prediction"))
    return evaluate_case(
        reference.array,
        prediction.array,
        reference.spacing_mm,
        labels,
        affine=reference.affine,
        case_id=case_id,
        **options,
    )


# -- internals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    shape: tuple[int, ...]
    spacing: np.ndarray
    voxel_ml: float
    axis: int | None
    box: tuple[slice, ...] | None
    flat_case: bool
    reported_axis: int | None  # the region axis in the caller's axis order

    @property
    def offset(self) -> tuple[int, ...]:
        return tuple(s.start for s in self.box) if self.box is not None else (0, 0, 0)

    def diagonal_mm(self, in_plane: bool = False) -> float:
        extent = np.asarray(self.shape, float) * self.spacing
        if in_plane or self.flat_case:
            extent = np.delete(extent, self.axis if self.axis is not None else 2)
        return float(np.sqrt((extent**2).sum()))

    def slice_area(self) -> int:
        return int(np.prod(self.shape)) // self.shape[self.axis]


def _slice_counts(mask: np.ndarray, offset: tuple[int, ...], geometry: _Geometry) -> np.ndarray:
    """Voxels of ``mask`` (a crop starting at ``offset``) per slice along the region axis, full length."""
    axis = geometry.axis
    counts = np.zeros(geometry.shape[axis], dtype=np.int64)
    others = tuple(a for a in range(3) if a != axis)
    counts[offset[axis] : offset[axis] + mask.shape[axis]] = np.count_nonzero(mask, axis=others)
    return counts


def _anchor_counts(anchor: object, reference: np.ndarray, box, geometry: _Geometry, names: dict[int, str]):
    """Per-slice reference counts of the anchor (``None`` for the per-label anchor)."""
    if str(anchor) == "label":
        return None
    if box is None:
        return np.zeros(geometry.shape[geometry.axis], dtype=np.int64)
    crop = reference[box]
    if str(anchor) == "foreground":
        return _slice_counts(crop != 0, geometry.offset, geometry)
    value = None
    if isinstance(anchor, (int, np.integer)) or str(anchor).isdigit():
        value = int(anchor)  # type: ignore[arg-type]
    else:
        value = next((v for v, n in names.items() if n == str(anchor)), None)
    if value is None:
        raise InvalidArgumentError(
            f"region anchor {anchor!r} is not label, foreground, a label value or a known label name"
        )
    return _slice_counts(crop == value, geometry.offset, geometry)


def _evaluate_label(
    value, name, ref_crop, pred_crop, box, geometry: _Geometry, options: _Options, anchor_counts, anchor
):
    """Rows (and the region split) of one label; ``box``: the label's box in the foreground crops (None: absent)."""
    if box is None:
        ref_mask = pred_mask = np.zeros((0, 0, 0), dtype=bool)
        offset = (0, 0, 0)
    else:
        ref_mask = np.ascontiguousarray(ref_crop[box] == value)
        pred_mask = np.ascontiguousarray(pred_crop[box] == value)
        offset = tuple(o + s.start for o, s in zip(geometry.offset, box))
    structure = _Structure(ref_mask, pred_mask, offset, geometry, options)

    split: RegionSplit | None = None
    info = None
    if options.regions:
        counts = anchor_counts if anchor_counts is not None else structure.slice_counts()[0]
        split = split_regions(counts, options.base_at)
        anchor_name = "label" if str(anchor) == "label" else str(anchor)
        if split is not None:
            split = dataclasses.replace(split, axis=geometry.reported_axis)
            info = {"label": name, "label_value": value, "anchor": anchor_name, **split.to_dict()}
        else:
            info = {
                "label": name, "label_value": value, "anchor": anchor_name, "axis": geometry.reported_axis,
                "reference_first": None, "reference_last": None, "base_end": None, "base_rule": None,
                "ranges": None,
            }  # fmt: skip

    rows: list[dict[str, Any]] = []
    ranges: list[tuple[str, tuple[int, int] | None]] = [("all", None)]
    if options.regions:
        ranges += [(r, split.ranges[r] if split is not None else "none") for r in REGION_NAMES]  # type: ignore[misc]
    for region, extent in ranges:
        if extent == "none":
            values = {m: (math.nan, "no_region") for m in options.metrics}
        elif extent is not None and extent[0] >= extent[1]:
            values = {m: (math.nan, "empty_region") for m in options.metrics}
        else:
            values = structure.region_values(extent)
        rows.extend(
            {"label": name, "region": region, "metric": m, "value": float(values[m][0]), "flag": values[m][1]}
            for m in options.metrics
        )
    return rows, info


class _Structure:
    """One label of one case: its masks on their bounding box, counts and surface distances."""

    def __init__(self, ref_mask, pred_mask, offset, geometry: _Geometry, options: _Options):
        self.ref, self.pred, self.offset = ref_mask, pred_mask, offset
        self.geometry, self.options = geometry, options
        self.n_ref = int(np.count_nonzero(ref_mask))
        self.n_pred = int(np.count_nonzero(pred_mask))
        self.n_both = int(np.count_nonzero(ref_mask & pred_mask)) if self.n_ref and self.n_pred else 0
        self._counts = None
        self._distances = None
        self.want_distances = any(m in DISTANCE_METRICS for m in options.metrics)

    # per-slice voxel counts along the region axis: ref, pred, both (full length)
    def slice_counts(self):
        if self._counts is None:
            g = self.geometry
            if self.ref.size == 0:
                zero = np.zeros(g.shape[g.axis], dtype=np.int64)
                self._counts = (zero, zero, zero)
            else:
                self._counts = (
                    _slice_counts(self.ref, self.offset, g),
                    _slice_counts(self.pred, self.offset, g),
                    _slice_counts(self.ref & self.pred, self.offset, g),
                )
        return self._counts

    def distances(self):
        """Surface distances (3D, or per slice in the slice-wise mode), computed once."""
        if self._distances is None:
            g = self.geometry
            if self.options.region_mode == "slicewise":
                spacing = g.spacing.copy()
                spacing[g.axis] = 1e3 * (g.diagonal_mm() + 1.0)  # keeps nearest neighbours in-slice
                axes = tuple(a for a in range(3) if a != g.axis)
            else:
                spacing, axes = g.spacing, (None if not g.flat_case else (0, 1))
            self._distances = surface_distances(self.ref, self.pred, spacing, offset=self.offset, surface_axes=axes)
        return self._distances

    def region_values(self, extent: tuple[int, int] | None) -> dict[str, tuple[float, str]]:
        if self.options.region_mode == "slicewise":
            return self._slicewise_values(extent)
        return self._volumetric_values(extent)

    # -- volumetric ------------------------------------------------------------------------
    def _volumetric_values(self, extent):
        g, o = self.geometry, self.options
        if extent is None:
            n_ref, n_pred, n_both, n_total = self.n_ref, self.n_pred, self.n_both, int(np.prod(g.shape))
        else:
            ref_c, pred_c, both_c = self.slice_counts()
            start, stop = extent
            n_ref, n_pred, n_both = (int(c[start:stop].sum()) for c in (ref_c, pred_c, both_c))
            n_total = (stop - start) * g.slice_area()
        state = empty_state(n_ref, n_pred)
        values = overlap_values(n_ref, n_pred, n_both, n_total, g.voxel_ml)
        out = {m: (values[m], flag_for(m, state)) for m in values}
        if self.want_distances:
            out.update(self._volumetric_distances(extent, state))
        return {m: out[m] for m in o.metrics}

    def _volumetric_distances(self, extent, state):
        o = self.options
        global_state = empty_state(self.n_ref, self.n_pred)
        if global_state or state == "both_empty":
            # a mask is empty in the whole volume, or both are empty in this region
            region_state = state if state else global_state
            values = empty_distance_values(region_state, self._worst(), o.empty_policy)
            return {m: (values[m], region_state) for m in DISTANCE_METRICS}
        d = self.distances()
        forward, backward = d.ref_to_pred_mm, d.pred_to_ref_mm
        if extent is not None:
            axis = self.geometry.axis
            start, stop = extent
            forward = forward[(d.ref_points[axis] >= start) & (d.ref_points[axis] < stop)]
            backward = backward[(d.pred_points[axis] >= start) & (d.pred_points[axis] < stop)]
        values = distance_values(forward, backward, o.nsd_tolerance_mm)
        return {m: (values[m], "") for m in DISTANCE_METRICS}

    def _worst(self, in_plane: bool = False) -> float:
        if self.options.worst_distance_mm is not None:
            return float(self.options.worst_distance_mm)
        return self.geometry.diagonal_mm(in_plane)

    # -- slice-wise ------------------------------------------------------------------------
    def _slicewise_values(self, extent):
        g, o = self.geometry, self.options
        start, stop = extent if extent is not None else (0, g.shape[g.axis])
        ref_c, pred_c, both_c = self.slice_counts()
        n_ref, n_pred, n_both = (int(c[start:stop].sum()) for c in (ref_c, pred_c, both_c))
        pooled = overlap_values(n_ref, n_pred, n_both, (stop - start) * g.slice_area(), g.voxel_ml)
        pooled_state = empty_state(n_ref, n_pred)
        out = {m: (pooled[m], flag_for(m, pooled_state)) for m in pooled}
        slices = [s for s in range(start, stop) if ref_c[s] or pred_c[s]]
        if not slices:  # neither mask in this range
            both = {
                **overlap_values(0, 0, 0, 1, g.voxel_ml),
                **empty_distance_values("both_empty", 0.0, o.empty_policy),
            }
            out.update({m: (both[m], "both_empty") for m in SLICEWISE_AVERAGED})
            return {m: out[m] for m in o.metrics}
        per_slice = self._per_slice_values(slices)
        states = [empty_state(int(ref_c[s]), int(pred_c[s])) for s in slices]
        tokens = [f"{kind}_slices={states.count(kind)}" for kind in ("ref_empty", "pred_empty") if states.count(kind)]
        flag = ";".join(tokens)
        for metric in SLICEWISE_AVERAGED:
            if metric in DISTANCE_METRICS and not self.want_distances:
                continue
            column = np.array([row[metric] for row in per_slice], dtype=np.float64)
            finite = column[~np.isnan(column)]
            out[metric] = (float(finite.mean()) if finite.size else math.nan, flag)
        return {m: out[m] for m in o.metrics}

    def _per_slice_values(self, slices: list[int]) -> list[dict[str, float]]:
        g, o = self.geometry, self.options
        ref_c, pred_c, both_c = self.slice_counts()
        axis = g.axis
        by_slice: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if self.want_distances and self.n_ref and self.n_pred:
            d = self.distances()
            forward = _split_by_slice(d.ref_to_pred_mm, d.ref_points[axis])
            backward = _split_by_slice(d.pred_to_ref_mm, d.pred_points[axis])
            by_slice = {s: (forward.get(s, _EMPTY), backward.get(s, _EMPTY)) for s in slices}
        area = g.slice_area()
        worst = self._worst(in_plane=True)
        out = []
        for s in slices:
            n_ref, n_pred, n_both = int(ref_c[s]), int(pred_c[s]), int(both_c[s])
            values = overlap_values(n_ref, n_pred, n_both, area, g.voxel_ml)
            if self.want_distances:
                state = empty_state(n_ref, n_pred)
                if state:
                    values.update(empty_distance_values(state, worst, o.empty_policy))
                else:
                    values.update(distance_values(*by_slice[s], o.nsd_tolerance_mm))
            out.append(values)
        return out


_EMPTY = np.zeros(0, dtype=np.float64)


def _split_by_slice(distances: np.ndarray, slice_index: np.ndarray) -> dict[int, np.ndarray]:
    order = np.argsort(slice_index, kind="stable")
    keys, starts = np.unique(slice_index[order], return_index=True)
    parts = np.split(distances[order], starts[1:])
    return {int(k): p for k, p in zip(keys, parts)}


__all__ = ["ALL_METRICS", "CaseResult", "evaluate_case", "evaluate_volumes", "normalise_labels"]
