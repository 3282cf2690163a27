"""Figures the lessons show (issue 13, item 4): each is checked against the data it was drawn from."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from medssl.errors import ConfigError
from medssl.plots import overlay_learning_curves


def _log(losses, aurocs):
    return [{"epoch": i + 1, "val_loss": lo, "val_auroc": au} for i, (lo, au) in enumerate(zip(losses, aurocs))]


def test_overlay_has_one_line_per_variant_with_its_own_data():
    logs = {"head": _log([0.7, 0.69, 0.68], [0.5, 0.55, 0.52]),
            "all": _log([0.6, 0.4, 0.5], [0.7, 0.9, 0.8])}
    fig = overlay_learning_curves(logs)
    loss_ax, auroc_ax = fig.axes
    lines = [ln for ln in loss_ax.get_lines() if ln.get_label() in logs]
    assert [ln.get_label() for ln in lines] == ["head", "all"]
    for ln, log in zip(lines, logs.values()):
        np.testing.assert_array_equal(ln.get_xdata(), [1, 2, 3])
        np.testing.assert_allclose(ln.get_ydata(), [r["val_loss"] for r in log])
    auroc_lines = [ln for ln in auroc_ax.get_lines() if ln.get_label() in logs]
    np.testing.assert_allclose(auroc_lines[1].get_ydata(), [0.7, 0.9, 0.8])
    stars = [ln for ln in auroc_ax.get_lines() if ln.get_marker() == "*"]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in stars] == [(2, 0.55), (2, 0.9)]
    plt.close(fig)


def test_threshold_plot_marks_chosen_points_at_their_validation_rates():
    from medssl.plots import sensitivity_specificity_curves, threshold_tradeoff_figure

    val_s = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    val_y = np.array([0, 0, 1, 0, 0, 1, 1, 1])
    test_s, test_y = np.array([0.05, 0.95, 0.5]), np.array([0, 1, 1])   # test would give other rates
    # by hand: t=0.3 -> sens 4/4, spec 2/4 (0.1, 0.2 below); t=0.7 -> sens 3/4, spec 4/4
    fig = threshold_tradeoff_figure(val_s, val_y, {"target_tpr": 0.3, "youden": 0.7}, test_s, test_y)
    (ax,) = fig.axes
    marks = {(ln.get_marker(), ln.get_color()): (ln.get_xdata()[0], ln.get_ydata()[0])
             for ln in ax.get_lines() if ln.get_marker() in ("o", "s")}
    assert marks == {("o", "C2"): (0.3, 1.0), ("s", "C2"): (0.3, 0.5),
                     ("o", "C3"): (0.7, 0.75), ("s", "C3"): (0.7, 1.0)}
    assert sum(ln.get_linestyle() == "--" for ln in ax.get_lines()) == 2
    c = sensitivity_specificity_curves(val_s, val_y)
    np.testing.assert_allclose(c["sensitivity"][[2, 5]], [1.0, 0.75])
    np.testing.assert_allclose(c["specificity"][[2, 5]], [0.5, 1.0])
    plt.close(fig)


def test_error_taxonomy_statistics_match_a_hand_computation():
    from medssl.course.lessons import error_taxonomy_table, grouped_error_gallery, outcome_groups

    # four 1x2x2 images, one per outcome at threshold 0.5
    images = np.array([[[[0, 255], [255, 255]]],      # TP (y=1, s=0.9): mean .75
                       [[[0, 0], [0, 0]]],            # TN (y=0, s=0.1)
                       [[[51, 51], [51, 255]]],       # FP (y=0, s=0.95)
                       [[[255, 255], [255, 0]]]],     # FN (y=1, s=0.4)
                      dtype=np.uint8)
    scores, y = np.array([0.9, 0.1, 0.95, 0.4]), np.array([1, 0, 0, 1])
    assert list(outcome_groups(scores, y, 0.5)) == ["TP", "TN", "FP", "FN"]
    rows = {r["group"]: r for r in error_taxonomy_table(images, scores, y, 0.5)}
    fp = np.array([0.2, 0.2, 0.2, 1.0])
    assert rows["FP"]["n"] == 1 and rows["FP"]["high-confidence"] == 1 and rows["FN"]["high-confidence"] == 0
    np.testing.assert_allclose(rows["FP"]["brightness mean"], fp.mean())
    np.testing.assert_allclose(rows["FP"]["contrast mean"], fp.std())
    # pixels below mean - std: FP: mean .4, std .4 -> threshold 0 -> none; TP: .75 - .433 -> the 0 pixel
    assert rows["FP"]["dark_area mean"] == 0.0 and rows["TP"]["dark_area mean"] == 0.25
    np.testing.assert_allclose(rows["FN"]["brightness mean"], 0.75)
    # "high-confidence" = the called class got P >= 0.9, wherever the threshold is. A high threshold (0.87, as a
    # TPR target picks) must still count an FP at 0.9998 (a margin around the threshold counted none), and an FN
    # at 0.22 is not sure of "normal" (P(normal) 0.78) although it lies far below the threshold.
    hi = {r["group"]: r for r in error_taxonomy_table(np.repeat(images, 2, axis=0),
                                                       np.array([0.95, 0.05, 0.9998, 0.05, 0.88, 0.2, 0.89, 0.22]),
                                                       np.array([1, 0, 0, 1, 1, 0, 0, 1]), 0.87)}
    assert [hi[g]["n"] for g in ("TP", "TN", "FP", "FN")] == [2, 2, 2, 2]
    assert [hi[g]["high-confidence"] for g in ("TP", "TN", "FP", "FN")] == [1, 1, 1, 1]
    with pytest.raises(ConfigError, match="confidence must be in"):
        error_taxonomy_table(images, scores, y, 0.5, confidence=0.3)
    fig = grouped_error_gallery(images, scores, y, 0.5, k=2)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("p=0.95") and titles[1].startswith("p=0.40")   # FP row first, then FN
    plt.close(fig)
