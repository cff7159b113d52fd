"""Agreement of paired values: the statistics shared by ``medseg evaluate compare``, the reports' Bland-Altman
plots and the clinical indices' agreement table (a leaf module: NumPy and scipy.special, scipy.stats only for
the Wilcoxon test)."""

from __future__ import annotations

import math
import warnings

import numpy as np


def paired_statistics(a: np.ndarray, b: np.ndarray, wilcoxon: bool = True) -> dict[str, float | int]:
    """Agreement of paired values ``a`` (e.g. the reference, or method A) and ``b``; differences are ``b - a``.

    Pairs where either value is NaN are dropped first. Returns ``n`` (pairs), ``mean_a``, ``mean_b``,
    ``mean_diff`` (the Bland-Altman bias), ``median_diff``, ``std_diff`` (sample SD, ddof=1), ``loa_lower`` and
    ``loa_upper`` (95 % limits of agreement, bias -+ 1.96 SD), ``pearson_r``, and two-sided p-values of the paired
    t-test (``ttest_p``: t = bias / (SD / sqrt(n)) on n - 1 degrees of freedom, as ``scipy.stats.ttest_rel``) and,
    with ``wilcoxon``, the Wilcoxon signed-rank test (``wilcoxon_p``, ``scipy.stats.wilcoxon``; importing
    scipy.stats takes a second or more, so callers that need no Wilcoxon test pass ``wilcoxon=False`` and get NaN).
    Undefined values are NaN: everything for no pair; SD, limits, r and tests for one pair; r when either side
    is constant; Wilcoxon when every difference is zero; the t-test when all differences are equal.
    """
    from scipy.special import stdtr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = b - a
    n = int(diff.size)
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    bias = float(diff.mean()) if n else math.nan
    ttest = wilcoxon_p = pearson = math.nan
    if n >= 2 and np.std(diff) > 0:
        ttest = float(2.0 * stdtr(n - 1, -abs(bias / (sd / math.sqrt(n)))))
    if n >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
        pearson = float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))
    if wilcoxon and n >= 2 and np.any(diff != 0):
        from scipy import stats

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wilcoxon_p = float(stats.wilcoxon(a, b).pvalue)
    return {
        "n": n, "mean_a": float(a.mean()) if n else math.nan, "mean_b": float(b.mean()) if n else math.nan,
        "mean_diff": bias, "median_diff": float(np.median(diff)) if n else math.nan, "std_diff": sd,
        "loa_lower": bias - 1.96 * sd, "loa_upper": bias + 1.96 * sd, "pearson_r": pearson,
        "wilcoxon_p": wilcoxon_p, "ttest_p": ttest,
    }  # fmt: skip
