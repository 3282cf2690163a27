"""Tied scores: AUROC against medmnist's evaluator, and the tie rules of the threshold choices.

Real models produce ties (identical images, saturated probabilities, logits that agree to
float precision). Every test here uses scores with many exact ties, where the tie rule is
what decides the answer.
"""

from __future__ import annotations

import numpy as np
import pytest
from medmnist.evaluator import Evaluator, getAUC

from medssl import decisions
from medssl.calibration import positive_probability, softmax
from medssl.metrics import auroc, classification_metrics
from medssl.registry import get_spec


def tied_logits(seed: int, n: int, k: int = 2, spread: float = 3.0, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits rounded to 0.1: many rows share a logit, or a logit difference."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = np.round(rng.normal(0.0, spread, (n, k)), 1).astype(dtype)
    return labels, logits


# ------------------------------------------------------------------ AUROC with ties
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spread", [3.0, 12.0])
def test_binary_auroc_equals_medmnist_getauc_bit_for_bit_with_tied_logits(dtype, spread):
    """Both positive classes (BreastMNIST's 0, PneumoniaMNIST's 1), 200 random tie-heavy trials each."""
    off = []
    for seed in range(200):
        labels, logits = tied_logits(seed, 150, spread=spread, dtype=dtype)
        probs = softmax(logits)
        ref = getAUC(labels, probs, "binary-class")
        for pos in (0, 1):
            got = auroc(labels, probs, pos)
            if got != ref:
                off.append((seed, pos, ref, got))
    assert not off, f"{len(off)} trials differ from medmnist's getAUC, e.g. {off[:3]}"


def test_multiclass_auroc_with_tied_logits_matches_getauc():
    for seed in range(50):
        labels, logits = tied_logits(seed, 120, k=4)
        probs = softmax(logits)
        assert auroc(labels, probs) == pytest.approx(getAUC(labels, probs, "multi-class"), abs=1e-12)


@pytest.mark.parametrize("key,k", [("breastmnist", 2), ("pneumoniamnist", 2), ("bloodmnist", 8)])
def test_metrics_equal_the_official_evaluator_on_tied_scores(tmp_path, key, k):
    """medmnist.Evaluator reads the labels from an npz in the data root; here a stand-in file with tied scores."""
    labels, logits = tied_logits(11, 300, k=k, spread=2.0, dtype=np.float32)
    np.savez(tmp_path / f"{key}.npz", test_labels=labels[:, None].astype(np.uint8))
    probs = softmax(logits)
    official = Evaluator(key, "test", root=str(tmp_path)).evaluate(probs)
    m = classification_metrics(labels, probs, get_spec(key))
    assert m["auroc"] == pytest.approx(official.AUC, abs=0 if k == 2 else 1e-12)
    assert m["acc"] == official.ACC


def test_distinct_tiny_probabilities_keep_their_order():
    """1 - p1 would make p1 = 1e-17 and 1e-18 one value (1.0) and score this perfect ranking 0.75."""
    probs = np.array([[1 - 1e-17, 1e-17], [1 - 1e-18, 1e-18], [0.1, 0.9]])
    labels = np.array([1, 0, 1])
    assert 1.0 - probs[0, 1] == 1.0 - probs[1, 1]
    for key in ("breastmnist", "pneumoniamnist"):
        m = classification_metrics(labels, probs, get_spec(key))
        assert m["auroc"] == getAUC(labels, probs, "binary-class") == 1.0
    np.testing.assert_array_equal(positive_probability(probs, 0), probs[:, 0])


# ------------------------------------------------------------------ threshold tie rules
def brute_force(scores: np.ndarray, y: np.ndarray) -> list[dict]:
    """Every candidate threshold (above the top score, then each distinct score, strictest first) with its counts."""
    cands = [np.nextafter(scores.max(), np.inf)] + sorted(set(scores.tolist()), reverse=True)
    rows = []
    for t in cands:
        called = scores >= t
        tp, fp = int(np.sum(called & (y == 1))), int(np.sum(called & (y == 0)))
        fn, tn = int(np.sum(~called & (y == 1))), int(np.sum(~called & (y == 0)))
        rows.append({"t": float(t), "tpr": tp / (tp + fn), "fpr": fp / (fp + tn),
                     "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0})
    return rows


def strictest_max(rows: list[dict], key) -> float:
    best = max(key(r) for r in rows)
    return next(r["t"] for r in rows if key(r) == best)      # rows run from strict to lenient


def test_youden_tie_goes_to_the_strictest_threshold():
    scores, y = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])
    # J = 0.5 at 0.9 (TPR .5, FPR 0) and at 0.7 (TPR 1, FPR .5): the stricter one wins
    assert decisions.youden_threshold(scores, y) == 0.9


def test_max_f1_tie_goes_to_the_strictest_threshold():
    scores, y = np.array([0.9, 0.8, 0.7, 0.4]), np.array([1, 0, 0, 1])
    # F1 = 2/3 at 0.9 (TP 1, FN 1) and at 0.4 (TP 2, FP 2)
    assert decisions.max_f1_threshold(scores, y) == 0.9


@pytest.mark.parametrize("seed", range(20))
def test_threshold_choices_with_tied_scores_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.25), 0, 1), 1)     # at most 11 distinct values
    rows = brute_force(scores, y)
    assert decisions.youden_threshold(scores, y) == strictest_max(rows, lambda r: r["tpr"] - r["fpr"])
    assert decisions.max_f1_threshold(scores, y) == strictest_max(rows, lambda r: r["f1"])
    for target in (0.5, 0.8, 0.95):
        want = next(r["t"] for r in rows if r["tpr"] >= target)              # highest threshold reaching it
        assert decisions.threshold_for_tpr(scores, y, target) == want
    for target in (0.05, 0.2, 0.5):
        want = [r["t"] for r in rows if r["fpr"] <= target][-1]              # lowest threshold within budget
        assert decisions.threshold_for_fpr(scores, y, target) == want
    # a tie group is never split: everything at the chosen score is called positive
    t = decisions.youden_threshold(scores, y)
    m = decisions.metrics_at_threshold(scores, y, t)
    assert m["tp"] + m["fp"] == int(np.sum(scores >= t))


# ------------------------------------------------------------------ "default 0.5" vs the arg-max of test_metrics.json
@pytest.mark.parametrize("key", ["breastmnist", "pneumoniamnist"])     # positive class 0 and 1
def test_default_operating_point_agrees_with_test_metrics_on_exact_ties(key):
    spec = get_spec(key)
    labels, logits = tied_logits(3, 80, spread=0.5)
    logits[::3, 1] = logits[::3, 0]                        # every third case: an exact 50/50 tie
    probs = softmax(logits)
    s, y = decisions.binary_scores(probs, labels, spec)
    default = next(p for p in decisions.operating_points(s, y, s, y, spec.positive_class) if p.name == "default")
    assert default.threshold == pytest.approx(0.5, abs=1e-12)     # 0.5, or the next float up for class 1
    assert default.test["confusion_matrix"] == classification_metrics(labels, probs, spec)["confusion_matrix"]
