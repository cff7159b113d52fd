"""Metric definitions and the empty-mask policy.

Reference ``A``, prediction ``B`` (voxel sets of one label), ``|.|`` = number of voxels:

=================  ==========================================================================
dice               ``2|A∩B| / (|A| + |B|)``
jaccard            ``|A∩B| / |A∪B|``
voe                volumetric overlap error, ``1 - jaccard``
rvd                relative volume difference ``(|B| - |A|) / |A|``, signed: positive means
                   over-segmentation (MedPy's ``ravd`` is ``(|A| - |B|)/|B|`` with A=result)
sensitivity        ``|A∩B| / |A|`` (recall, true-positive rate)
specificity        ``TN / (TN + |B \\ A|)``, TN = voxels in neither mask (in the evaluated
                   volume or region)
precision          ``|A∩B| / |B|`` (positive predictive value)
volume_ref_ml      ``|A|`` x voxel volume, in millilitres
volume_pred_ml     ``|B|`` x voxel volume, in millilitres
hd                 Hausdorff distance (mm): max of both directed maxima
hd95               max of the two directed 95th percentiles (mm) (MONAI / MetricsReloaded;
                   ``numpy.percentile`` with linear interpolation, as ``torch.quantile``)
asd                average symmetric surface distance (mm), pooled over both surfaces:
                   ``(Σ d(a, S(B)) + Σ d(b, S(A))) / (|S(A)| + |S(B)|)`` (= MedPy ``assd`` and
                   MONAI ``compute_average_surface_distance(symmetric=True)``)
nsd                normalised surface Dice at tolerance τ mm: surface voxels of either mask
                   within τ (``<=``) of the other surface, divided by ``|S(A)| + |S(B)|``
                   (MONAI ``compute_surface_dice`` on voxel centres)
=================  ==========================================================================

Empty masks (a value that follows from a convention, not a measurement, carries a flag):

* both empty (``both_empty``): dice, jaccard, sensitivity, precision, nsd 1; voe, rvd 0;
  distances 0.
* reference empty, prediction not (``ref_empty``) or the reverse (``pred_empty``): dice,
  jaccard, nsd 0; voe 1; sensitivity (ref empty) / precision (pred empty) NaN (undefined), the
  other one 0; rvd NaN when the reference is empty, -1 when the prediction is; distances = the
  worst-case distance (default: the diagonal of the volume in mm), or NaN with
  ``empty_policy="nan"``.
* volumes and specificity are always measurements and never flagged.
"""

from __future__ import annotations

import math

import numpy as np

OVERLAP_METRICS = ("dice", "jaccard", "voe", "rvd", "sensitivity", "specificity", "precision")
VOLUME_METRICS = ("volume_ref_ml", "volume_pred_ml")
DISTANCE_METRICS = ("hd", "hd95", "asd", "nsd")
#: every metric, in the order rows are written
ALL_METRICS = OVERLAP_METRICS + VOLUME_METRICS + DISTANCE_METRICS
EMPTY_POLICIES = ("worst", "nan")
#: metrics whose value under an empty mask is a convention (these carry the flag)
_CONVENTION_METRICS = frozenset(ALL_METRICS) - {"volume_ref_ml", "volume_pred_ml", "specificity"}


def empty_state(n_ref: int, n_pred: int) -> str:
    """``""`` when both masks have voxels, else ``"both_empty"``, ``"ref_empty"`` or ``"pred_empty"``."""
    if n_ref and n_pred:
        return ""
    if not n_ref and not n_pred:
        return "both_empty"
    return "ref_empty" if not n_ref else "pred_empty"


def overlap_values(n_ref: int, n_pred: int, n_both: int, n_total: int, voxel_ml: float) -> dict[str, float]:
    """Overlap and volume metrics from voxel counts.

    Args:
        n_ref, n_pred, n_both: voxels in ``A``, ``B`` and ``A∩B``.
        n_total: voxels in the evaluated volume (or region), for the true negatives.
        voxel_ml: volume of one voxel in millilitres.

    Returns:
        ``{metric: value}`` for :data:`OVERLAP_METRICS` and :data:`VOLUME_METRICS`, with the
        empty-mask conventions of the module docstring (NaN where undefined).
    """
    n_union = n_ref + n_pred - n_both
    n_negative = n_total - n_ref  # voxels outside A
    values = {
        "volume_ref_ml": n_ref * voxel_ml,
        "volume_pred_ml": n_pred * voxel_ml,
        "specificity": (n_total - n_union) / n_negative if n_negative else math.nan,
    }
    state = empty_state(n_ref, n_pred)
    if state == "both_empty":
        values.update(dice=1.0, jaccard=1.0, voe=0.0, rvd=0.0, sensitivity=1.0, precision=1.0)
    else:
        jaccard = n_both / n_union
        values.update(
            dice=2.0 * n_both / (n_ref + n_pred),
            jaccard=jaccard,
            voe=1.0 - jaccard,
            rvd=(n_pred - n_ref) / n_ref if n_ref else math.nan,
            sensitivity=n_both / n_ref if n_ref else math.nan,
            precision=n_both / n_pred if n_pred else math.nan,
        )
    return values


def distance_values(
    ref_to_pred_mm: np.ndarray,
    pred_to_ref_mm: np.ndarray,
    nsd_tolerance_mm: float,
) -> dict[str, float]:
    """hd, hd95, asd and nsd from the two directed distance sets (both non-empty; mm)."""
    forward = np.asarray(ref_to_pred_mm, dtype=np.float64)
    backward = np.asarray(pred_to_ref_mm, dtype=np.float64)
    n_points = forward.size + backward.size
    parts = [d for d in (forward, backward) if d.size]
    return {
        "hd": float(max(d.max() for d in parts)),
        "hd95": float(max(np.percentile(d, 95) for d in parts)),
        "asd": float((forward.sum() + backward.sum()) / n_points),
        "nsd": float(
            (np.count_nonzero(forward <= nsd_tolerance_mm) + np.count_nonzero(backward <= nsd_tolerance_mm)) / n_points
        ),
    }


def empty_distance_values(state: str, worst_distance_mm: float, empty_policy: str) -> dict[str, float]:
    """hd, hd95, asd, nsd for a structure where a mask is empty (see the module docstring)."""
    if state == "both_empty":
        return {"hd": 0.0, "hd95": 0.0, "asd": 0.0, "nsd": 1.0}
    worst = math.nan if empty_policy == "nan" else float(worst_distance_mm)
    return {"hd": worst, "hd95": worst, "asd": worst, "nsd": 0.0}


def flag_for(metric: str, state: str) -> str:
    """The flag a metric's value carries under an empty-mask ``state`` (``""`` for none)."""
    return state if state and metric in _CONVENTION_METRICS else ""


def check_policy(empty_policy: str) -> str:
    """Validate an empty-mask policy name (``"worst"`` or ``"nan"``)."""
    from medseg.errors import InvalidArgumentError

    if empty_policy not in EMPTY_POLICIES:
        raise InvalidArgumentError(f"empty_policy must be one of {', '.join(EMPTY_POLICIES)}, got {empty_policy!r}")
    return empty_policy


def check_metrics(metrics: object) -> tuple[str, ...]:
    """Validate a metric selection (``None`` = all); returns names in :data:`ALL_METRICS` order."""
    from medseg.errors import InvalidArgumentError

    if metrics is None:
        return ALL_METRICS
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m) for m in metrics]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise InvalidArgumentError(f"unknown metric(s) {', '.join(unknown)}; available: {', '.join(ALL_METRICS)}")
    return tuple(m for m in ALL_METRICS if m in names)
