"""classification_metrics' full record on hand-checked cases: every class counted even when absent, which class
is positive, the defaults, and the one-line summary. Written against mutation-testing survivors."""

from __future__ import annotations

import numpy as np
import pytest

from medssl.calibration import expected_calibration_error
from medssl.metrics import classification_metrics, format_summary
from medssl.registry import get_spec


def test_every_class_counts_even_when_absent_or_never_predicted():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    m = classification_metrics(labels, probs)
    # predictions 0, 0, 0, 1; class 2 is neither present nor predicted and still has its row and column
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m["n_per_class"] == [2, 2, 0] and m["n"] == 4
    assert m["acc"] == 0.75
    # macro over all 3 classes, an undefined score counting as 0
    assert m["precision"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    f1 = [2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5, 0.0]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert m["positive_class"] is None and m["positive_label"] is None and m["ece_on"] == "top-label confidence"
    assert m["ece_n_bins"] == 15
    p64 = probs.astype(np.float64)
    assert m["ece"] == expected_calibration_error(p64, labels, 15, None)
    assert "sensitivity" not in m


def test_binary_without_a_spec_takes_class_1_and_with_one_its_positive_class():
    labels = np.array([0, 1, 1, 0, 1, 0])
    p1 = np.array([0.2, 0.8, 0.4, 0.3, 0.9, 0.6])
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(labels, probs)
    assert (m["positive_class"], m["ece_on"]) == (1, "positive-class probability")
    assert m["ece"] == expected_calibration_error(probs, labels, 15, 1)
    # predictions 0 1 0 0 1 1: TP 2, FN 1, TN 2, FP 1
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"]) == (2 / 3, 2 / 3, 2 / 3, 2 / 3)
    spec = get_spec("breastmnist")                        # positive class 0 (malignant)
    b = classification_metrics(labels, probs, spec, n_bins=5)
    assert (b["positive_class"], b["positive_label"], b["ece_n_bins"]) == (0, spec.labels[0], 5)
    assert b["ece"] == expected_calibration_error(probs, labels, 5, 0)
    assert b["ece"] != expected_calibration_error(probs, labels, 5, None)
    assert b["auroc"] == pytest.approx(8 / 9)


def test_format_summary_line():
    m = {"acc": 0.75, "auroc": 0.8125, "ece": 0.0312345, "f1_macro": 0.5, "positive_class": 0,
         "positive_label": "malignant"}
    assert format_summary(m) == "acc=0.7500 auroc=0.8125 ece=0.0312 f1_macro=0.5000 (positive: 0=malignant)"
    assert format_summary(m | {"positive_label": None}) == "acc=0.7500 auroc=0.8125 ece=0.0312 f1_macro=0.5000"


def test_default_ece_bins():
    rng = np.random.default_rng(2)
    p1 = rng.uniform(size=300)
    probs, labels = np.stack([1 - p1, p1], axis=1), rng.integers(0, 2, 300)
    m = classification_metrics(labels, probs)
    assert m["ece"] == expected_calibration_error(probs, labels, 15, 1) != expected_calibration_error(probs, labels,
                                                                                                       16, 1)


def test_rates_are_nan_when_their_denominator_is_empty_and_exact_otherwise():
    # all negative, and the model calls everyone negative: no positives and no positive calls
    labels = np.zeros(4, int)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    m = classification_metrics(labels, probs)
    assert np.isnan(m["sensitivity"]) and np.isnan(m["ppv"])
    assert (m["specificity"], m["npv"]) == (1.0, 1.0)
    # all positive and all called negative: no negatives, no positive calls
    m = classification_metrics(np.ones(4, int), probs)
    assert np.isnan(m["specificity"]) and np.isnan(m["ppv"]) and (m["sensitivity"], m["npv"]) == (0.0, 0.0)
    # all called positive: no negative calls
    m = classification_metrics(np.array([1, 0, 1, 0]), probs[:, ::-1])
    assert np.isnan(m["npv"]) and (m["sensitivity"], m["specificity"], m["ppv"]) == (1.0, 0.0, 0.5)
    # TP = FN and TN = FP (equal counts on both sides of each rate): exactly one half each
    m = classification_metrics(np.array([1, 1, 0, 0]), np.array([[0.2, 0.8], [0.7, 0.3], [0.6, 0.4], [0.1, 0.9]]))
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"]) == (0.5, 0.5, 0.5, 0.5)


def test_a_two_class_task_without_a_positive_class_is_reported_like_a_multiclass_one():
    from dataclasses import replace

    spec = replace(get_spec("breastmnist"), positive_class=None)      # e.g. a two-class set with no "positive"
    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    m = classification_metrics(labels, probs, spec)
    assert (m["positive_class"], m["positive_label"], m["ece_on"]) == (None, None, "top-label confidence")
    assert "sensitivity" not in m and "threshold" not in m
    assert m["ece"] == expected_calibration_error(probs, labels, 15, None)


def test_an_absent_or_never_predicted_class_raises_no_warning():
    import warnings

    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # scikit-learn's UndefinedMetricWarning would be an error here
        m = classification_metrics(labels, probs)
    assert (m["precision"], m["recall"]) == pytest.approx(((2 / 3 + 1) / 3, 1.5 / 3))


def test_binary_record_names_its_threshold_and_uses_the_bins_it_is_given():
    rng = np.random.default_rng(3)
    p1 = rng.uniform(size=400)
    probs, labels = np.stack([1 - p1, p1], axis=1), (rng.uniform(size=400) < p1 ** 2).astype(int)
    m = classification_metrics(labels, probs, n_bins=7)
    assert m["threshold"] == 0.5 and m["ece_n_bins"] == 7
    assert m["ece"] == expected_calibration_error(probs, labels, 7, 1) != expected_calibration_error(probs, labels,
                                                                                                     15, 1)
