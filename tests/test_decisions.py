"""Thresholds, operating points, curves and error galleries (all on synthetic scores; no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score, roc_curve

from medssl import decisions
from medssl.calibration import softmax
from medssl.errors import MedSSLError, OutputExistsError, UnsupportedTaskError
from medssl.metrics import auroc
from medssl.registry import get_spec


def scores_and_labels(n_pos, n_neg, seed, sep=1.0):
    """Continuous scores without ties (y = 1 positive)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    s = 1 / (1 + np.exp(-(rng.normal(size=n_pos + n_neg) + sep * y)))
    perm = rng.permutation(len(y))
    return s[perm], y[perm]


def rates(scores, y, t):
    pred = scores >= t
    return np.sum(pred & (y == 1)) / np.sum(y == 1), np.sum(pred & (y == 0)) / np.sum(y == 0)


# ------------------------------------------------------------------ threshold selection
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_target_tpr_hit_within_one_sample_step(target, seed):
    s, y = scores_and_labels(137, 211, seed)
    t = decisions.threshold_for_tpr(s, y, target)
    tpr, _ = rates(s, y, t)
    assert target <= tpr <= target + 1 / 137 + 1e-12
    # reference: the highest candidate threshold (a score value) reaching the target
    best = max(c for c in s if rates(s, y, c)[0] >= target)
    assert t == best


@pytest.mark.parametrize("target", [0.0, 0.05, 0.1, 0.3])
@pytest.mark.parametrize("seed", [0, 1])
def test_target_fpr_hit_within_one_sample_step(target, seed):
    s, y = scores_and_labels(137, 211, seed)
    t = decisions.threshold_for_fpr(s, y, target)
    _, fpr = rates(s, y, t)
    assert target - 1 / 211 - 1e-12 < fpr <= target + 1e-12
    candidates = [c for c in s if rates(s, y, c)[1] <= target]
    if candidates:
        assert t == min(candidates)
    else:  # no score keeps FPR within target: nobody is called positive
        assert t > s.max()


def test_youden_and_max_f1_against_sklearn():
    s, y = scores_and_labels(80, 160, 3)
    fpr, tpr, _ = roc_curve(y, s)
    t = decisions.youden_threshold(s, y)
    tp, fp = rates(s, y, t)
    assert tp - fp == pytest.approx(np.max(tpr - fpr), abs=1e-12)
    f1_best = max(f1_score(y, (s >= c).astype(int)) for c in np.unique(s))
    t_f1 = decisions.max_f1_threshold(s, y)
    assert f1_score(y, (s >= t_f1).astype(int)) == pytest.approx(f1_best, abs=1e-12)


def test_thresholds_with_ties_count_whole_tie_groups():
    s = np.array([0.9, 0.8, 0.8, 0.8, 0.4, 0.2])
    y = np.array([1, 1, 0, 1, 0, 0])
    scan = decisions.threshold_scan(s, y)
    np.testing.assert_allclose(scan["threshold"][1:], [0.9, 0.8, 0.4, 0.2])
    np.testing.assert_array_equal(scan["tp"], [0, 1, 3, 3, 3])
    np.testing.assert_array_equal(scan["fp"], [0, 0, 1, 2, 3])
    assert decisions.threshold_for_tpr(s, y, 0.5) == 0.8      # 0.9 only gives 1/3


@pytest.mark.parametrize("pos", [0, 1])
def test_metrics_at_threshold_against_sklearn(pos):
    s, y = scores_and_labels(60, 90, 5)
    labels = np.where(y == 1, pos, 1 - pos)           # dataset labels with `pos` as the positive class
    m = decisions.metrics_at_threshold(s, y, 0.55, positive_class=pos)
    pred_label = np.where(s >= 0.55, pos, 1 - pos)
    np.testing.assert_array_equal(m["confusion_matrix"], confusion_matrix(labels, pred_label, labels=[0, 1]))
    tp, fp, tn, fn = m["tp"], m["fp"], m["tn"], m["fn"]
    called = s >= 0.55
    assert (tp, fp, tn, fn) == (np.sum(called & (y == 1)), np.sum(called & (y == 0)), np.sum(~called & (y == 0)),
                                np.sum(~called & (y == 1)))
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(tp / (tp + fp)) and m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["f1"] == pytest.approx(f1_score(labels, pred_label, pos_label=pos))


def test_binary_scores_use_the_dataset_positive_class():
    probs = softmax(np.random.default_rng(0).normal(size=(50, 2)))
    labels = np.arange(50) % 2
    s, y = decisions.binary_scores(probs, labels, get_spec("breastmnist"))   # positive = 0 = malignant
    np.testing.assert_allclose(s, 1 - probs[:, 1])
    np.testing.assert_array_equal(y, labels == 0)
    s1, y1 = decisions.binary_scores(probs, labels, get_spec("pneumoniamnist"))
    np.testing.assert_allclose(s1, probs[:, 1])
    np.testing.assert_array_equal(y1, labels == 1)


def test_multiclass_thresholds_raise_clear_error():
    probs = softmax(np.random.default_rng(0).normal(size=(40, 8)))
    labels = np.arange(40) % 8
    with pytest.raises(UnsupportedTaskError, match="binary-only"):
        decisions.binary_scores(probs, labels, get_spec("synthetic8"))
    with pytest.raises(MedSSLError, match="binary-only"):
        decisions.threshold_for_tpr(probs, labels, 0.9)
    with pytest.raises(MedSSLError, match="binary-only"):
        decisions.youden_threshold(probs.max(1), labels)


def test_roc_pr_matches_library_auroc():
    probs = softmax(np.random.default_rng(1).normal(size=(120, 2)) * 2)
    labels = np.random.default_rng(2).integers(0, 2, 120)
    s, y = decisions.binary_scores(probs, labels, get_spec("breastmnist"))
    c = decisions.roc_pr(s, y)
    assert c["auroc"] == pytest.approx(auroc(labels, probs, 0), abs=1e-12)
    assert c["auroc"] == pytest.approx(roc_auc_score(labels == 0, probs[:, 0]), abs=1e-12)
    assert c["prevalence"] == pytest.approx(np.mean(labels == 0))


# ------------------------------------------------------------------ error gallery
def test_high_confidence_errors_are_the_most_confident():
    s, y = scores_and_labels(100, 100, 7, sep=0.5)
    t = 0.6
    e = decisions.high_confidence_errors(s, y, t, k=5)
    fp_all = [i for i in range(200) if y[i] == 0 and s[i] >= t]
    fn_all = [i for i in range(200) if y[i] == 1 and s[i] < t]
    fp_ref = sorted(fp_all, key=lambda i: -s[i])[:5]
    fn_ref = sorted(fn_all, key=lambda i: s[i])[:5]
    assert e[e.kind == "FP"]["index"].tolist() == fp_ref
    assert e[e.kind == "FN"]["index"].tolist() == fn_ref
    fp_conf = e[e.kind == "FP"]["confidence"]
    assert fp_conf.is_monotonic_decreasing and fp_conf.min() >= max(s[i] for i in fp_all if i not in fp_ref)
    np.testing.assert_allclose(e[e.kind == "FN"]["confidence"], 1 - s[fn_ref])


def test_top_label_errors_multiclass():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(60, 4)) * 3)
    labels = rng.integers(0, 4, 60)
    e = decisions.top_label_errors(probs, labels, k=4)
    wrong = [i for i in range(60) if probs[i].argmax() != labels[i]]
    assert e["index"].tolist() == sorted(wrong, key=lambda i: -probs[i].max())[:4]


# ------------------------------------------------------------------ the whole analysis
def fake_logits(n, pos, seed, k=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += 1.5
    return z * 3, labels  # over-confident on purpose


def test_analyse_predictions_multiclass_does_calibration_only(tmp_path):
    vz, vy = fake_logits(160, None, 3, k=8)
    tz, ty = fake_logits(160, None, 4, k=8)
    r = decisions.analyse_predictions(vz, vy, tz, ty, "synthetic8", tmp_path / "mc", k=3)
    assert r["operating_points"] is None and "binary-only" in r["note"]
    assert (tmp_path / "mc" / "P1_temp_scaling_table.md").exists()
    assert not (tmp_path / "mc" / "operating_point_table.md").exists()
    # the gallery: the 2k = 6 most confident wrong top-label predictions on test, most confident first
    p = softmax(tz)
    wrong = [i for i in range(160) if p[i].argmax() != ty[i]]
    assert r["errors"]["index"].tolist() == sorted(wrong, key=lambda i: -p[i].max())[:6]


def test_analyse_run_from_a_run_folder_writes_everything(tmp_path, synth_root):
    from medssl.data import load_split

    spec = get_spec("synthetic")  # positive class 0 = lesion
    run = tmp_path / "run"
    run.mkdir()
    val, test = load_split("synthetic", "val", root=synth_root), load_split("synthetic", "test", root=synth_root)
    vz, _ = fake_logits(len(val), 0, 5)
    tz, _ = fake_logits(len(test), 0, 6)
    vz[np.arange(len(val)), val.labels] += 3.0   # make the fake model informative (and over-confident)
    tz[np.arange(len(test)), test.labels] += 3.0
    np.savez(run / "predictions.npz", val_logits=vz, val_labels=val.labels, test_logits=tz, test_labels=test.labels)
    (run / "config.json").write_text(json.dumps({"config": {"dataset": "synthetic", "size": 28,
                                                            "root": str(synth_root)}}))
    out = tmp_path / "w7"
    r = decisions.analyse_run(run, out, k=3, target_tpr=0.85)
    for f in ("P1_temp_scaling_table.md", "P1_reliability_before_after.png", "roc_curve.png", "pr_curve.png",
              "operating_point_table.md", "operating_points.csv", "cm_target_tpr.png", "cm_youden.png",
              "high_conf_error_gallery.png", "high_conf_errors.md", "decisions_summary.json"):
        assert (out / f).stat().st_size > 0, f
    assert r["dataset"] == "synthetic"
    assert "Positive class: **0 = lesion**" in (out / "operating_point_table.md").read_text()
    assert set(r["points"]) == {"target_tpr", "target_fpr", "youden", "max_f1", "default"}
    # thresholds come from validation: the target-TPR point reaches the target there
    vs, vyy = decisions.binary_scores(softmax(vz), val.labels, spec)
    assert rates(vs, vyy, r["points"]["target_tpr"]["threshold"])[0] >= 0.85
    # T minimises the validation NLL (a grid search here); the test NLL's minimiser is far away (about 5.8
    # against 11.7), so a temperature fitted on test data fails
    from scipy.special import log_softmax

    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))

    def best_t(z, y):
        return grid[int(np.argmin([-log_softmax(z / t, axis=1)[np.arange(len(y)), y].mean() for t in grid]))]

    t_val, t_test = best_t(vz, val.labels), best_t(tz, test.labels)
    assert abs(np.log(t_val / t_test)) > 0.5
    assert r["calibration"]["temperature"] == pytest.approx(t_val, rel=2e-3)
    notes = (out / "high_conf_errors.md").read_text()
    assert "| notes |" in notes and "P(lesion)" in notes
    summary = json.loads((out / "decisions_summary.json").read_text())
    assert summary["params"]["target_tpr"] == 0.85 and summary["positive_class"] == 0
    assert "roc_curve.png" in summary["files"]
    with pytest.raises(OutputExistsError):
        decisions.analyse_run(run, out)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "predictions.npz", val_logits=vz, val_labels=val.labels, test_logits=tz,
             test_labels=1 - test.labels)
    with pytest.raises(MedSSLError, match=r"do not match synthetic \(28px\) test split; pass dataset= / root= for "
                                          "the data the model was evaluated on"):
        decisions.analyse_run(bad, tmp_path / "out2", dataset="synthetic", root=str(synth_root))


def test_claim_out_dir_overwrite_replaces_only_its_own_files(tmp_path):
    out = decisions.claim_out_dir(tmp_path / "o", "s.json")
    (out / "a.png").write_text("old")
    (out / "mine.md").write_text("student notes")
    (out / "s.json").write_text(json.dumps({"files": ["a.png"]}))
    with pytest.raises(OutputExistsError, match="overwrite"):
        decisions.claim_out_dir(out, "s.json")
    decisions.claim_out_dir(out, "s.json", overwrite=True)
    assert not (out / "a.png").exists() and not (out / "s.json").exists()
    assert (out / "mine.md").read_text() == "student notes"
