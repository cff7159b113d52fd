"""Report figures: the worst-case overlays keep one colour per label across panels."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_hex

from medseg.evaluation import report
from medseg.evaluation.batch import CaseOutcome


def _outcome(case_id: str, values: list[int]) -> CaseOutcome:
    labels = np.zeros((12, 12), np.uint8)
    for i, value in enumerate(values):
        labels[2 + 4 * i : 5 + 4 * i, 3:9] = value
    snapshot = {"axis": 2, "slice": 0, "cut": [[0, 12], [0, 12], 0], "reference": labels, "prediction": labels,
                "pixel_mm": [1.0, 1.0]}  # fmt: skip
    return CaseOutcome(case_id, snapshot=snapshot)


def _solid_contour_colours(ax) -> list[str]:
    colours = []
    for artist in ax.collections:
        styles = artist.get_linestyle()
        if styles and styles[0][1] is None:  # solid = reference contour
            colours.append(to_hex(artist.get_edgecolor()[0]))
    return colours


def test_worst_case_overlays_colour_each_label_the_same_in_every_panel(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(report, "_save", lambda fig, path, dpi=80: figures.append(fig) or path)
    # panel 1 shows only label 3 (its slice misses labels 1 and 2); panel 2 shows labels 1 and 3
    worst = [(0.5, _outcome("a", [3])), (0.6, _outcome("b", [1, 3]))]
    report._worst_cases(report._pyplot(), worst, tmp_path, {1: "rv", 2: "myo", 3: "lv"})
    first, second = figures[0].axes[:2]
    only_lv, rv_then_lv = _solid_contour_colours(first), _solid_contour_colours(second)
    assert len(only_lv) == 1 and len(rv_then_lv) == 2
    assert only_lv[0] == rv_then_lv[1] == report._COLOURS[2]  # lv: third scored label, as in the box plots
    assert rv_then_lv[0] == report._COLOURS[0]
    legend = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert legend == ["rv", "lv"]


def test_bland_altman_names_bias_and_limits_and_handles_empty_input():
    from matplotlib.figure import Figure

    from medseg.evaluation import bland_altman_axes

    reference = np.array([10.0, 20.0, 30.0, 40.0])
    predicted = reference + np.array([1.0, 3.0, 1.0, 3.0])  # differences: mean 2, sd 1.1547
    ax = Figure().subplots()
    bland_altman_axes(ax, reference, predicted, "lv", "(ml)", "prediction - reference")
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["bias 2", "95 % limits -0.263 .. 4.26"]
    assert ax.get_ylabel() == "difference (prediction - reference) (ml)"
    empty = Figure().subplots()
    bland_altman_axes(empty, np.array([]), np.array([]), "none", "(ml)")  # no warning, no legend
    assert empty.get_legend() is None
