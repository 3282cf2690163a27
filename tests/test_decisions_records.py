"""Week 7's records and tables, whole: each key, each column and each line that a student reads or a later step
parses (the operating-point table is parsed by the course smoke test and the class aggregate; the error table is
where students write their notes). Expected values are worked out by hand on cases small enough to check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medssl import decisions
from medssl.errors import ConfigError, UnsupportedTaskError
from medssl.registry import get_spec

PNEU = get_spec("pneumoniamnist")         # positive class 1 = pneumonia
SYN = get_spec("synthetic")               # positive class 0 = lesion


def test_metrics_at_threshold_whole_record_with_the_default_positive_class():
    #            TP   FN   FP   TN   TN   TP
    scores = [0.9, 0.2, 0.7, 0.1, 0.3, 0.6]
    y = [1, 1, 0, 0, 0, 1]
    m = decisions.metrics_at_threshold(scores, y, 0.5)          # positive_class defaults to 1: label-order matrix
    assert m == {"threshold": 0.5, "sensitivity": 2 / 3, "specificity": 2 / 3, "ppv": 2 / 3, "npv": 2 / 3,
                 "f1": 2 / 3, "accuracy": 4 / 6, "balanced_accuracy": 2 / 3, "tp": 2, "fp": 1, "tn": 2, "fn": 1,
                 "n": 6, "confusion_matrix": [[2, 1], [1, 2]]}
    m = decisions.metrics_at_threshold(scores, y, 0.65)
    # at 0.65 the positive scored 0.6 is missed too: TP 1, FN 2, FP 1 (0.7), TN 2
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (1, 2, 1, 2)
    assert m["balanced_accuracy"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert m["confusion_matrix"] == [[2, 1], [2, 1]]


def test_float32_scores_are_compared_in_float64():
    """A float32 P(positive) of exactly 0.5 is not above the positive-class-1 default threshold (the next float64
    after 0.5); compared in float32, that threshold rounds down to 0.5 and the tie would be called positive."""
    t = decisions.default_threshold(1)
    scores, y = np.array([0.5, 0.9, 0.1], dtype=np.float32), np.array([1, 1, 0])
    assert decisions.metrics_at_threshold(scores, y, t)["tp"] == 1
    errs = decisions.high_confidence_errors(scores, y, t, k=5)
    assert errs[["kind", "index"]].values.tolist() == [["FN", 0]]
    # the FN's confidence is 1 - P(positive) in float64 (float32 arithmetic would round it)
    scores = np.array([0.3, 0.9, 0.1], dtype=np.float32)
    errs = decisions.high_confidence_errors(scores, y, 0.5, k=5)
    assert errs["confidence"].tolist() == [1 - float(np.float32(0.3))]
    frame = decisions.errors_frame(scores, [], [0])
    assert frame["confidence"].tolist() == [1 - float(np.float32(0.3))]


def test_threshold_scan_columns_against_a_hand_count():
    scores, y = [0.9, 0.8, 0.8, 0.3], [1, 0, 1, 0]
    scan = decisions.threshold_scan(scores, y)
    assert scan["threshold"].tolist() == [float(np.nextafter(0.9, np.inf)), 0.9, 0.8, 0.3]
    assert scan["tp"].tolist() == [0, 1, 2, 2] and scan["fp"].tolist() == [0, 0, 1, 2]
    assert scan["fn"].tolist() == [2, 1, 0, 0] and scan["tn"].tolist() == [2, 2, 1, 0]
    assert scan["tpr"].tolist() == [0, 0.5, 1, 1] and scan["fpr"].tolist() == [0, 0, 0.5, 1]
    assert scan["f1"].tolist() == pytest.approx([0, 2 / 3, 0.8, 2 / 3])


def test_operating_point_row_whole_record():
    val = decisions.metrics_at_threshold([0.9, 0.2, 0.7, 0.1], [1, 1, 0, 0], 0.5)
    test = decisions.metrics_at_threshold([0.9, 0.6, 0.4, 0.1], [1, 0, 1, 0], 0.5)
    row = decisions.OperatingPoint("youden", "max J", 0.5, val, test).row()
    assert row == {"point": "youden", "rule": "max J", "threshold": 0.5, "val_tpr": 0.5, "val_fpr": 0.5,
                   "test_sensitivity": 0.5, "test_specificity": 0.5, "test_ppv": 0.5, "test_npv": 0.5,
                   "test_f1": 0.5, "test_accuracy": 0.5, "test_tp": 1, "test_fp": 1, "test_tn": 1, "test_fn": 1}
    assert decisions.OperatingPoint("a", "r", 0.5, val).row() == {
        "point": "a", "rule": "r", "threshold": 0.5, "val_tpr": 0.5, "val_fpr": 0.5}


def test_operating_point_table_whole_text():
    val = decisions.metrics_at_threshold([0.9, 0.2, 0.7, 0.1], [1, 1, 0, 0], 0.5)
    test = decisions.metrics_at_threshold([0.9, 0.6, 0.4, 0.1], [1, 0, 1, 0], 0.5)
    pts = [decisions.OperatingPoint("default", "fixed 0.5", 0.5, val, test)]
    assert decisions.operating_point_table(pts, PNEU, n_val=4, n_test=4) == (
        "# Operating points on pneumoniamnist\n"
        "\n"
        "Positive class: **1 = pneumonia** (negative: 0 = normal). A case is called positive when "
        "P(pneumonia) >= threshold.\n"
        "Thresholds chosen on the validation split (n=4); metrics measured on the test split (n=4).\n"
        "\n"
        "| point | rule (on val) | threshold on P(pneumonia) | val TPR | val FPR | sensitivity | specificity | PPV "
        "| NPV | F1 | TP | FP | TN | FN |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| default | fixed 0.5 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 1 | 1 | 1 "
        "| 1 |\n"
        "\n"
        "Sensitivity = TPR = TP/(TP+FN); specificity = TN/(TN+FP) = 1 - FPR; PPV = TP/(TP+FP); "
        "NPV = TN/(TN+FN). Test columns use the test split only.\n")
    # without test metrics: the validation columns only, and no split sizes when not given
    text = decisions.operating_point_table([decisions.OperatingPoint("a", "r", 0.5, val)], SYN)
    assert "| point | rule (on val) | threshold on P(lesion) | val TPR | val FPR |\n" in text
    assert "Thresholds chosen on the validation split; metrics measured on the test split.\n" in text
    assert "Positive class: **0 = lesion** (negative: 1 = no lesion)." in text


def test_error_table_whole_text_binary_and_multiclass():
    labels = np.array([1, 0, 1, 0])                  # pneumonia = 1
    errors = decisions.errors_frame(np.array([0.2, 0.8, 0.9, 0.1]), [1], [0])
    assert decisions.error_table(errors, labels, PNEU, threshold=0.5) == (
        "# High-confidence errors on pneumoniamnist (test)\n\n"
        f"{decisions.positive_note(PNEU)} Threshold = 0.5000. FP = called pneumonia but is not (ranked by "
        "P(pneumonia), highest first); FN = missed pneumonia (ranked by P(pneumonia), lowest first).\n\n"
        "| kind | rank | test index | P(pneumonia) | true | predicted | notes |\n"
        "|---|---|---|---|---|---|---|\n"
        "| FP | 1 | 1 | 0.8000 | 0 (normal) | 1 (pneumonia) |  |\n"
        "| FN | 1 | 0 | 0.2000 | 1 (pneumonia) | 0 (normal) |  |\n"
        "\n"
        "Fill the notes column with one line per case (e.g. low contrast, borderline, artifact, label noise?).\n")
    multi = pd.DataFrame([{"kind": "error", "rank": 1, "index": 2, "pred": 5, "confidence": 0.75, "p_true": 0.1}])
    text = decisions.error_table(multi, np.array([0, 1, 3]), get_spec("synthetic8"), split="val")
    assert text.startswith("# High-confidence errors on synthetic8 (val)\n\nMisclassified cases ranked by "
                           "top-label confidence (multi-class task: no threshold).\n\n")
    assert "| kind | rank | val index | confidence | true | predicted | notes |\n" in text
    assert "| error | 1 | 2 | 0.7500 | 3 (class 3) | 5 (class 5) |  |\n" in text
    empty = decisions.errors_frame(np.array([0.2]), [], [])
    assert "\n(no errors of this kind)\n" in decisions.error_table(empty, labels, PNEU, threshold=0.5)


def test_errors_frame_ranks_from_one_per_kind():
    f = decisions.errors_frame(np.array([0.9, 0.8, 0.1, 0.2]), [0, 1], [2, 3])
    assert f.to_dict("list") == {"kind": ["FP", "FP", "FN", "FN"], "rank": [1, 2, 1, 2], "index": [0, 1, 2, 3],
                                 "p_positive": [0.9, 0.8, 0.1, 0.2],
                                 "confidence": [0.9, 0.8, 1 - 0.1, 1 - 0.2]}


def test_high_confidence_errors_keep_index_order_among_tied_scores():
    """Twenty false positives with one score, and a tie exactly at the threshold (called positive): the ranking is
    stable (index order), which an unstable sort of more than 16 elements would not keep."""
    n = 40
    scores = np.full(n, 0.7)
    y = np.zeros(n, dtype=int)
    y[20:] = 1                                       # 0-19 negatives called positive: FPs, all tied
    scores[20:] = 0.3                                # 20-39 positives missed: FNs, all tied
    scores[39] = 0.5                                 # exactly at the threshold: called positive, not an FN
    errs = decisions.high_confidence_errors(scores, y, 0.5, k=20)
    assert errs.loc[errs["kind"] == "FP", "index"].tolist() == list(range(20))
    assert errs.loc[errs["kind"] == "FN", "index"].tolist() == list(range(20, 39))


def test_check_scores_messages_and_input():
    with pytest.raises(UnsupportedTaskError, match=r"got shape \(2, 2\)\. Use decisions\.binary_scores\(probs, "
                                                   r"labels, spec\) first\.$"):
        decisions.threshold_scan(np.ones((2, 2)), [0, 1])
    with pytest.raises(ConfigError, match=r"^3 scores but 2 labels\.$"):
        decisions.threshold_scan([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ConfigError, match=r"^choosing a threshold needs both positive and negative cases in the "
                                          r"split\.$"):
        decisions.threshold_scan([0.1, 0.2], [1, 1])
    scan = decisions.threshold_scan(np.array([1, 0], dtype=np.int64), [1, 0])   # integer scores become floats
    assert scan["threshold"].dtype == np.float64 and scan["threshold"][0] == np.nextafter(1.0, np.inf)


def test_require_binary_names_the_task_and_returns_its_positive_class():
    assert decisions.require_binary(PNEU, 2) == 1 and decisions.require_binary(SYN, 2) == 0
    assert decisions.require_binary(None, 2) == 1
    with pytest.raises(UnsupportedTaskError, match=r"^thresholds are binary-only: .* and synthetic8 has 8 classes\. "
                                                   r".*and pass P\(that class\)\.$"):
        decisions.require_binary(get_spec("synthetic8"), 8)
    with pytest.raises(UnsupportedTaskError, match=r"and a 3-class task has 3 classes"):
        decisions.require_binary(None, 3)


def test_binary_scores_positive_class_override():
    probs = np.array([[0.8, 0.2], [0.3, 0.7]])
    s, y = decisions.binary_scores(probs, [0, 1], PNEU)
    assert s.tolist() == pytest.approx([0.2, 0.7]) and y.tolist() == [0, 1]
    s, y = decisions.binary_scores(probs, [0, 1], PNEU, positive_class=0)
    assert s.tolist() == pytest.approx([0.8, 0.3]) and y.tolist() == [1, 0]


def test_roc_pr_record_keys():
    r = decisions.roc_pr([0.9, 0.2, 0.6, 0.4], [1, 0, 1, 0])
    assert set(r) == {"fpr", "tpr", "roc_thresholds", "precision", "recall", "pr_thresholds", "auroc",
                      "average_precision", "prevalence"}
    assert (r["auroc"], r["average_precision"], r["prevalence"]) == (1.0, 1.0, 0.5)


def test_custom_threshold_rule_may_target_full_sensitivity_and_is_told_the_fpr_range():
    scores, y = np.array([0.2, 0.8, 0.6, 0.4]), np.array([0, 1, 1, 0])
    got = decisions.choose_thresholds(scores, y, target_tpr=1.0, target_fpr=None, youden=False, max_f1=False,
                                      default=False, threshold_fn=lambda s, yy, metric, target: 0.6)
    assert got == {"target_tpr": ("highest threshold with val TPR >= 1 (by <lambda>)", 0.6)}
    with pytest.raises(ConfigError, match=r"^target FPR must be in \[0, 1\), got 1\.0\.$"):
        decisions.choose_thresholds(scores, y, target_tpr=None, target_fpr=1.0,
                                    threshold_fn=lambda s, yy, metric, target: 0.6)
    rules = decisions.choose_thresholds(scores, y)
    assert rules["youden"][0] == "max Youden J = TPR - FPR on val"


def test_high_confidence_errors_default_to_five_of_each_kind():
    scores = np.r_[np.linspace(0.6, 0.9, 8), np.linspace(0.1, 0.4, 8)]
    y = np.r_[np.zeros(8, dtype=int), np.ones(8, dtype=int)]           # 8 FPs and 8 FNs at 0.5
    errs = decisions.high_confidence_errors(scores, y, 0.5)
    assert errs["kind"].value_counts().to_dict() == {"FP": 5, "FN": 5}
    assert errs.loc[errs["kind"] == "FP", "index"].tolist() == [7, 6, 5, 4, 3]   # highest P(positive) first


def test_analysis_uses_its_targets_and_marks_the_points_on_both_curves(tmp_path, monkeypatch):
    """The TPR target reaches the threshold rule, and the ROC and PR figures mark each operating point at its test
    (FPR, TPR, PPV), with a title naming the split and the positive class."""
    rng = np.random.default_rng(0)
    vy, ty = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    vz = np.c_[np.zeros(300), rng.normal(size=300) + 1.5 * vy]        # logit of class 1 (pneumonia)
    tz = np.c_[np.zeros(300), rng.normal(size=300) + 1.5 * ty]
    drawn = {}
    import medssl.plots as plots

    monkeypatch.setattr(plots, "roc_curve_figure", lambda fpr, tpr, auc, marks, what: drawn.update(
        roc=(marks, what)) or _blank())
    monkeypatch.setattr(plots, "pr_curve_figure", lambda rec, prec, ap, prev, marks, what: drawn.update(
        pr=(marks, what)) or _blank())
    rep = decisions.analyse_predictions(vz, vy, tz, ty, "pneumoniamnist", tmp_path / "out", target_tpr=0.7)
    vs = decisions.binary_scores(decisions.softmax(vz), vy, PNEU)[0]
    assert rep["points"]["target_tpr"]["threshold"] == decisions.threshold_for_tpr(vs, vy, 0.7)
    marks = {name: (1 - p["test"]["specificity"], p["test"]["sensitivity"], p["test"]["ppv"])
             for name, p in rep["points"].items()}
    assert drawn["roc"] == drawn["pr"] == (marks, "pneumoniamnist test, positive = 1 (pneumonia)")
    assert rep["params"]["probabilities"] == "uncalibrated softmax(logits)"


def _blank():
    import matplotlib.pyplot as plt

    return plt.figure()


# ------------------------------------------------------------------ survivors of the seed-1 mutation sample
def _pneu_logits(seed=0, n=300):
    rng = np.random.default_rng(seed)
    vy, ty = rng.integers(0, 2, n), rng.integers(0, 2, n)
    vz = np.c_[np.zeros(n), rng.normal(size=n) + 1.5 * vy].astype(np.float32)
    tz = np.c_[np.zeros(n), rng.normal(size=n) + 1.5 * ty].astype(np.float32)
    return vz, vy, tz, ty


def test_analysis_uses_its_fpr_target_lists_exactly_the_files_it_wrote_and_returns_its_folder(tmp_path):
    vz, vy, tz, ty = _pneu_logits()
    out = tmp_path / "new" / "nested" / "out"                 # parents that do not exist yet are made
    rep = decisions.analyse_predictions(vz, vy, tz, ty, "pneumoniamnist", out, target_fpr=0.3)
    vs = decisions.binary_scores(decisions.softmax(vz), vy, PNEU)[0]
    assert rep["points"]["target_fpr"]["threshold"] == decisions.threshold_for_fpr(vs, vy, 0.3)
    assert rep["params"]["target_fpr"] == 0.3
    assert rep["out_dir"] == str(out)
    on_disk = sorted(p.name for p in out.iterdir())
    assert sorted([*rep["files"], decisions.SUMMARY_FILE]) == on_disk


def test_default_point_states_its_tie_rule_for_either_positive_class():
    s, y = np.array([0.2, 0.5, 0.8]), np.array([0, 1, 1])
    rule1 = decisions.choose_thresholds(s, y, positive_class=1)["default"][0]
    rule0 = decisions.choose_thresholds(s, y, positive_class=0)["default"][0]
    assert "a 50/50 tie is called negative" in rule1 and "positive" not in rule1.split(";")[1]
    assert "a 50/50 tie is called positive" in rule0


def test_markdown_table_rounds_to_the_digits_asked_for():
    df = pd.DataFrame({"a": [0.123456], "b": ["x"]})
    assert decisions.markdown_table(df, digits=2) == "| a | b |\n|---|---|\n| 0.12 | x |\n"


def test_check_scores_message_names_the_helper_to_use():
    with pytest.raises(UnsupportedTaskError, match=r"\. Use decisions\.binary_scores\(probs, labels, spec\)"):
        decisions.threshold_for_tpr(np.array([0.1, 0.9, 0.5]), np.array([0, 1, 2]))


def test_temperature_scaling_files_hold_the_report_and_plot_float64_scaled_probabilities(tmp_path, monkeypatch):
    """The JSON is the report without its markdown; the 'after' curve is softmax(logits / T) computed in float64
    from float32 logits, and the combined figure labels its two curves."""
    import json

    import medssl.plots as plots
    from medssl.calibration import temperature_scaling_report

    vz, vy, tz, ty = _pneu_logits(1)
    vz, tz = vz * 3, tz * 3                                     # over-confident: T moves well away from 1
    result = temperature_scaling_report(vz, vy, tz, ty, PNEU, 15)
    calls = []
    monkeypatch.setattr(plots, "reliability_diagram", lambda probs, labels, pos, n_bins, title, name: calls.append(
        (probs, title)) or _blank())
    files = decisions.write_temperature_scaling(result, tz, ty, tmp_path)
    saved = json.loads((tmp_path / "P1_temp_scaling.json").read_text())
    assert saved == json.loads(json.dumps({k: v for k, v in result.items() if k != "table_md"}))
    assert files == ["P1_temp_scaling_table.md", "P1_temp_scaling.json", "P1_reliability_before.png",
                     "P1_reliability_after.png", "P1_reliability_before_after.png"]
    t = result["temperature"]
    z = tz.astype(np.float64) / t
    ref = np.exp(z - z.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(calls[1][0], ref, rtol=0, atol=1e-15)
    assert list(calls[2][0]) == ["before (T=1)", f"after (T={t:.3f})"]
