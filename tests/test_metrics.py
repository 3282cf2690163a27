"""Metrics against scikit-learn, medmnist's official evaluator, and an independent ECE."""

from __future__ import annotations

import numpy as np
import pytest
from datahelpers import requires_real
from medmnist.evaluator import getACC, getAUC
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from medssl.calibration import expected_calibration_error, maximum_calibration_error, softmax
from medssl.metrics import CORE_METRIC_KEYS, classification_metrics
from medssl.registry import get_spec


def _reference_bins(conf, correct, n_bins):
    """[sum of confidences, sum of outcomes, count] per bin (lo, hi]; 0 goes to the first bin."""
    totals = [[0.0, 0.0, 0] for _ in range(n_bins)]
    for c, y in zip(conf, correct):
        b = 0
        while b < n_bins - 1 and c > (b + 1) / n_bins:
            b += 1
        totals[b][0] += c
        totals[b][1] += y
        totals[b][2] += 1
    return totals


def reference_ece(conf, correct, n_bins):
    """Textbook ECE written independently: loop over samples, bins (lo, hi], 0 in the first bin."""
    n = len(conf)
    return sum(t[2] / n * abs(t[1] / t[2] - t[0] / t[2]) for t in _reference_bins(conf, correct, n_bins) if t[2])


def reference_mce(conf, correct, n_bins):
    """The largest |accuracy - confidence| over the non-empty bins (same bins as :func:`reference_ece`)."""
    return max(abs(t[1] / t[2] - t[0] / t[2]) for t in _reference_bins(conf, correct, n_bins) if t[2])


def random_probs(n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * 2
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, n)
    return labels, softmax(logits)


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_binary_positive_class_against_reference(n_bins):
    labels, probs = random_probs(500, 2, 0)
    for pos in (0, 1):
        p_pos = probs[:, 1] if pos == 1 else 1 - probs[:, 1]
        ref = reference_ece(p_pos, (labels == pos).astype(float), n_bins)
        assert expected_calibration_error(probs, labels, n_bins, positive_class=pos) == pytest.approx(ref, abs=1e-12)


def test_ece_multiclass_top_label_against_reference():
    labels, probs = random_probs(800, 8, 1)
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    ref = reference_ece(conf, correct, 15)
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(ref, abs=1e-12)
    mce = reference_mce(conf, correct, 15)
    assert mce > ref + 0.05                # the two scores differ here, so swapping them is caught
    assert maximum_calibration_error(probs, labels, 15) == pytest.approx(mce, abs=1e-12)


def test_ece_known_values():
    labels = np.array([1, 1, 1, 0])
    perfect = np.array([[0.25, 0.75]] * 4)          # P(1)=0.75 and 3 of 4 are positive
    assert expected_calibration_error(perfect, labels, 10, positive_class=1) == pytest.approx(0.0)
    always_sure = np.array([[0.0, 1.0]] * 4)         # says 1.0, right 75% of the time
    assert expected_calibration_error(always_sure, labels, 10, positive_class=1) == pytest.approx(0.25)


@pytest.mark.parametrize("k", [2, 8])
def test_metrics_match_scikit_learn(k):
    labels, probs = random_probs(400, k, 2)
    m = classification_metrics(labels, probs, None)
    assert set(CORE_METRIC_KEYS) <= set(m)
    pred = probs.argmax(1)
    assert m["acc"] == pytest.approx(np.mean(pred == labels))
    assert m["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro"))
    expected_auc = (roc_auc_score(labels, probs[:, 1]) if k == 2
                    else roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert m["auroc"] == pytest.approx(expected_auc)
    # rows = true class, columns = predicted class, in label order (a transposed matrix fails for k = 8)
    assert m["confusion_matrix"] == confusion_matrix(labels, pred, labels=range(k)).tolist()
    assert m["n_per_class"] == np.bincount(labels, minlength=k).tolist()


@pytest.mark.parametrize("key,k", [("breastmnist", 2), ("pneumoniamnist", 2), ("bloodmnist", 8)])
def test_acc_and_auc_equal_medmnist_evaluator_functions(key, k):
    labels, probs = random_probs(300, k, 3)
    spec = get_spec(key)
    m = classification_metrics(labels, probs, spec)
    task = spec.task
    assert m["acc"] == pytest.approx(getACC(labels[:, None], probs, task), abs=1e-12)
    assert m["auroc"] == pytest.approx(getAUC(labels[:, None], probs, task), abs=1e-12)


def test_binary_metrics_name_the_positive_class():
    labels, probs = random_probs(200, 2, 4)
    m = classification_metrics(labels, probs, get_spec("breastmnist"))
    assert m["positive_class"] == 0 and m["positive_label"] == "malignant"
    y, yhat = labels == 0, probs.argmax(1) == 0
    assert m["sensitivity"] == pytest.approx(np.sum(y & yhat) / np.sum(y))
    assert m["specificity"] == pytest.approx(np.sum(~y & ~yhat) / np.sum(~y))


@requires_real("breastmnist")
def test_official_evaluator_on_real_test_split():
    from medmnist import Evaluator

    from medssl.data import data_root, load_split

    test = load_split("breastmnist", "test")
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(size=(len(test), 2)) + 1.5 * np.eye(2)[test.labels])
    official = Evaluator("breastmnist", "test", root=str(data_root())).evaluate(probs)
    m = classification_metrics(test.labels, probs, get_spec("breastmnist"))
    assert m["acc"] == pytest.approx(official.ACC, abs=1e-12)
    assert m["auroc"] == pytest.approx(official.AUC, abs=1e-12)
