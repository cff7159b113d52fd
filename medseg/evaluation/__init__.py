"""Evaluation: exact overlap and surface metrics per label and per base / middle / apex region.

Python API (plain Python objects; pandas where a table is the natural answer):

* :func:`evaluate_case` -- two label-map arrays and a spacing -> :class:`CaseResult` (rows of
  ``label, region, metric, value, flag``, and the region splits used).
* :func:`evaluate_volumes` -- the same on two :class:`medseg.io.Volume` (grids checked).
* :func:`evaluate_folder` -- match prediction and reference files by case name, evaluate them
  (optionally in worker processes) and write ``metrics.csv``, ``summary.json`` and
  ``report.md``; returns a ``pandas.DataFrame`` of every value.
* :func:`summarise` -- per label, region and metric: mean, std, median, min, max, n, n_flagged,
  and the foreground mean over labels.
* :func:`compare` -- paired differences between two runs with Wilcoxon and paired t-test
  p-values; :func:`write_comparison` writes them (with Bland-Altman plots) for two
  ``metrics.csv`` files, as ``medseg evaluate compare`` does.
* :func:`parse_roles` / :func:`quantify` -- clinical indices (cardiac EDV, ESV, SV, EF, myocardial mass; lung
  volumes and density) of label maps, see :mod:`medseg.evaluation.indices`; ``evaluate_folder(..., indices=...)``
  also writes their agreement with the reference.
* :func:`case_key` -- the case a file is matched by (:mod:`medseg.common.naming`, shared by every
  command); :func:`bland_altman_axes` -- the
  reports' Bland-Altman plot, for your own figures.

Metric definitions and the empty-mask policy: :mod:`medseg.evaluation.metrics`; surfaces and
distances: :mod:`medseg.evaluation.surfaces`; regions: :mod:`medseg.evaluation.regions`.
"""

from medseg.evaluation.case import CaseResult, evaluate_case, evaluate_volumes
from medseg.evaluation.metrics import ALL_METRICS, DISTANCE_METRICS, OVERLAP_METRICS, VOLUME_METRICS
from medseg.evaluation.regions import RegionSplit, choose_region_axis, split_regions
from medseg.evaluation.surfaces import SurfaceDistances, bounding_box, surface_distances, surface_mask

_LAZY = (
    "evaluate_folder", "summarise", "compare", "write_comparison", "match_cases", "case_key", "bland_altman_axes",
    "parse_roles", "quantify",
)  # fmt: skip


def __getattr__(name: str):
    # the batch layer pulls in more (pandas, the report writers); load it on first use
    if name in _LAZY:
        from medseg.common import naming
        from medseg.evaluation import batch, comparison, indices, matching, report, summary

        return {
            "evaluate_folder": batch.evaluate_folder,
            "summarise": summary.summarise,
            "compare": comparison.compare,
            "write_comparison": comparison.write_comparison,
            "match_cases": matching.match_cases,
            "case_key": naming.case_key,
            "bland_altman_axes": report.bland_altman_axes,
            "parse_roles": indices.parse_roles,
            "quantify": indices.quantify,
        }[name]
    raise AttributeError(f"module 'medseg.evaluation' has no attribute {name!r}")


__all__ = [
    "ALL_METRICS",
    "DISTANCE_METRICS",
    "OVERLAP_METRICS",
    "VOLUME_METRICS",
    "CaseResult",
    "RegionSplit",
    "SurfaceDistances",
    "bland_altman_axes",
    "bounding_box",
    "case_key",
    "choose_region_axis",
    "compare",
    "evaluate_case",
    "evaluate_folder",
    "evaluate_volumes",
    "match_cases",
    "parse_roles",
    "quantify",
    "split_regions",
    "summarise",
    "surface_distances",
    "surface_mask",
    "write_comparison",
]
