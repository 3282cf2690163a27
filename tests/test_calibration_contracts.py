"""Calibration's contract beyond the formulas: defaults, which probability each score judges, float64 math on
float32 input, and messages that say what was wrong. Written against mutation-testing survivors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medssl.calibration import (
    TemperatureScaler,
    adaptive_calibration_error,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    softmax,
)
from medssl.errors import ConfigError


def _binary(n=300, seed=5):
    rng = np.random.default_rng(seed)
    return softmax(rng.normal(size=(n, 2)) * 2), rng.integers(0, 2, n)


def test_default_bins_are_15():
    p, y = _binary()
    for fn in (expected_calibration_error, adaptive_calibration_error, maximum_calibration_error):
        assert fn(p, y) == fn(p, y, 15)
        assert fn(p, y) != fn(p, y, 16), fn.__name__


def test_calibration_metrics_judge_the_positive_class_it_is_given():
    p, y = _binary()
    m = calibration_metrics(p, y, 0)          # BreastMNIST's positive class is 0 (malignant)
    assert m["acc"] == float(np.mean((p[:, 1] > p[:, 0]) == y))
    assert m["ece"] == expected_calibration_error(p, y, 15, 0)
    assert m["ece_adaptive"] == adaptive_calibration_error(p, y, 15, 0)
    assert m["mce"] == maximum_calibration_error(p, y, 15, 0)
    assert m["brier"] == brier_score(p, y, 0)
    assert m["nll"] == negative_log_likelihood(p, y)
    top = calibration_metrics(p, y, None)     # the test can tell P(positive) from top-label confidence
    assert m["ece_adaptive"] != top["ece_adaptive"] and m["mce"] != top["mce"]
    assert m["signed_gap"] == pytest.approx(float(np.mean(p[:, 0]) - np.mean(y == 0)), abs=1e-15)


def test_brier_ignores_a_positive_class_for_more_than_two_classes():
    rng = np.random.default_rng(1)
    p, y = softmax(rng.normal(size=(50, 3))), rng.integers(0, 3, 50)
    want = float(np.mean(np.sum((p - np.eye(3)[y]) ** 2, axis=1)))
    assert brier_score(p, y, 1) == pytest.approx(want) and brier_score(p, y) == pytest.approx(want)


def test_float32_input_is_computed_in_float64():
    p, y = _binary()
    p32 = p.astype(np.float32)
    p64 = p32.astype(np.float64)
    assert negative_log_likelihood(p32, y) == negative_log_likelihood(p64, y)
    assert brier_score(p32, y, 1) == brier_score(p64, y, 1)
    ts = TemperatureScaler().fit(np.log(p64), y)
    z32 = np.log(p32)
    assert ts.transform(z32).dtype == np.float64
    assert np.array_equal(ts.transform(z32), z32.astype(np.float64) / ts.temperature)


def test_messages():
    p, _ = _binary(4)
    with pytest.raises(ConfigError, match=r"^labels must lie in 0\.\.1, got 0\.\.2\.$"):
        calibration_metrics(p, np.array([0, 1, 2, 0]))
    with pytest.raises(ConfigError, match=r"^TemperatureScaler is not fitted yet: call \.fit\(val_logits, val_labels\) "
                       r"first\.$"):
        TemperatureScaler().transform(np.zeros((2, 2)))


def test_an_empty_set_has_no_calibration_error():
    empty_p, empty_y = np.zeros((0, 2)), np.zeros(0, dtype=int)
    assert maximum_calibration_error(empty_p, empty_y) == 0.0
    assert expected_calibration_error(empty_p, empty_y) == 0.0


def test_confidence_and_outcome_for_each_input_shape():
    from medssl.calibration import confidence_and_outcome

    y = np.array([0, 1, 1, 0])
    p1 = np.array([0.2, 0.9, 0.6, 0.4], dtype=np.float32)        # already P(positive)
    conf, out = confidence_and_outcome(p1, y)
    assert conf.dtype == np.float64 and out.tolist() == [0.0, 1.0, 1.0, 0.0]      # class 1 positive by default
    assert confidence_and_outcome(p1, y, 0)[1].tolist() == [1.0, 0.0, 0.0, 1.0]
    p2 = np.stack([1 - p1.astype(np.float64), p1.astype(np.float64)], axis=1)
    conf, out = confidence_and_outcome(p2, y, 0)
    assert np.allclose(conf, 1 - p1.astype(np.float64)) and out.tolist() == [1.0, 0.0, 0.0, 1.0]
    conf, out = confidence_and_outcome(p2, y, None)                # top label
    assert np.allclose(conf, [0.8, 0.9, 0.6, 0.6]) and out.tolist() == [1.0, 1.0, 1.0, 1.0]
    p3 = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    conf, out = confidence_and_outcome(p3, np.array([0, 1]), 1)    # a positive class means nothing for 3 classes
    assert conf.tolist() == [0.5, 0.7] and out.tolist() == [1.0, 0.0]


def test_temperature_is_the_nll_optimum_in_float64():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, 400)
    z = rng.normal(size=(400, 3)) * 2
    z[np.arange(400), y] += 2.0

    def slope(t):
        """d NLL / d log T at T, by hand: mean over images of (s_y - sum_k p_k s_k), s = z / T."""
        s = z / t
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return float(np.mean(s[np.arange(400), y] - (p * s).sum(axis=1)))

    ts = TemperatureScaler().fit(z, y)
    assert abs(slope(ts.temperature)) < 1e-7                       # a stationary point, to float64 precision
    assert slope(ts.temperature * 0.99) < -1e-4 < 1e-4 < slope(ts.temperature * 1.01)   # and a minimum
    assert ts.max_iter == 200 and ts.bounds == (1e-2, 1e2) and ts.n_fit == 400
    z32 = z.astype(np.float32)                     # float32 logits are fitted and scored in float64
    a, b = TemperatureScaler().fit(z32, y), TemperatureScaler().fit(z32.astype(np.float64), y)
    assert (a.temperature, a.nll_before, a.nll_after) == (b.temperature, b.nll_before, b.nll_after)


def test_unfitted_scaler_record():
    ts = TemperatureScaler()
    assert (ts.temperature, ts.nll_before, ts.nll_after, ts.n_fit) == (None, None, None, 0)


def test_fit_rejects_bad_input_with_its_reason():
    z, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    shape_msg = r"Pass the raw model outputs \(logits\), not labels or 1-D scores\.$"
    for bad_z, bad_y in ((z, y[:3]), (np.zeros(4), y), (np.zeros((4, 1)), y), (z[:0], y[:0])):
        with pytest.raises(ConfigError, match=r"^temperature scaling needs logits \(N, K>=2\) and N labels, got .*"
                           + shape_msg):
            TemperatureScaler().fit(bad_z, bad_y)
    with pytest.raises(ConfigError, match=r"^logits contain nan or inf; check the model's predictions before "
                       r"calibrating\.$"):
        TemperatureScaler().fit(np.array([[0.0, np.inf], [0.0, 1.0]]), y[:2])
    for labels, got in (([0, 2, 0, 1], "0..2"), ([0, -1, 0, 1], "-1..1")):
        with pytest.raises(ConfigError, match=rf"^labels must lie in 0\.\.1, got {re.escape(got)}\.$"):
            TemperatureScaler().fit(z, np.array(labels))


def test_nll_from_logits_is_float64_log_sum_exp():
    from medssl.calibration import nll_from_logits

    rng = np.random.default_rng(3)
    z32, y = (rng.normal(size=(100, 4)) * 30).astype(np.float32), rng.integers(0, 4, 100)
    z = z32.astype(np.float64)
    want = float(np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(100), y]))
    assert nll_from_logits(z32, y) == nll_from_logits(z, y) == pytest.approx(want, rel=1e-12)


def test_softmax_and_nll_are_stable_row_by_row():
    from medssl.calibration import nll_from_logits

    z = np.array([[1000.0, 999.0], [0.0, 1.0], [-800.0, -801.0]])   # rows on very different scales
    p = softmax(z)
    e = np.exp(-1.0)
    assert np.allclose(p, [[1 / (1 + e), e / (1 + e)], [e / (1 + e), 1 / (1 + e)], [1 / (1 + e), e / (1 + e)]])
    assert softmax(z.astype(np.float32)).dtype == np.float64
    assert nll_from_logits(z, np.array([0, 1, 0])) == pytest.approx(np.log1p(e), rel=1e-12)


def test_reliability_bins_report_edges_counts_and_empty_bins():
    from medssl.calibration import reliability_bins

    conf = np.array([0.05, 0.35, 0.35, 0.9, 0.95, 0.97], dtype=np.float32)
    out = np.array([0, 1, 0, 1, 1, 0], dtype=np.int64)
    u = reliability_bins(conf, out, 4)
    assert u.count.tolist() == [1, 2, 0, 3]
    assert np.isnan(u.confidence[2]) and np.isnan(u.accuracy[2])              # an empty bin has no mean
    assert u.accuracy[3] == pytest.approx(2 / 3) and u.confidence[1] == pytest.approx(0.35)
    assert len(reliability_bins(conf, out).count) == 15                      # 15 bins by default
    q = reliability_bins(conf, out, 3, "quantile")
    assert q.count.tolist() == [2, 2, 2]
    assert q.lower.tolist() == pytest.approx([0.05, 0.35, 0.95])
    assert q.upper.tolist() == pytest.approx([0.35, 0.9, 0.97])
    e = reliability_bins(conf[:2], out[:2], 3, "quantile")                  # more bins than predictions
    assert e.count.tolist() == [1, 1, 0] and np.isnan(e.lower[2]) and np.isnan(e.upper[2])
    assert np.isnan(e.confidence[2]) and e.lower[:2].tolist() == pytest.approx([0.05, 0.35])
    with pytest.raises(ValueError, match=r"^n_bins must be >= 1, got 0$"):
        reliability_bins(conf, out, 0)
    with pytest.raises(ValueError, match=r"^strategy must be 'uniform' or 'quantile', got 'median'$"):
        reliability_bins(conf, out, 3, "median")


def test_auroc_is_nan_when_a_class_is_missing():
    from medssl.calibration import auroc

    assert np.isnan(auroc(np.array([1, 1, 1]), np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]]), 1))
    p3 = softmax(np.random.default_rng(0).normal(size=(6, 3)))
    assert np.isnan(auroc(np.array([0, 1, 0, 1, 0, 1]), p3))
