"""Calibration's contract beyond the formulas: defaults, which probability each score judges, float64 math on
float32 input, and messages that say what was wrong. Written against mutation-testing survivors."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_temperature_report import _logits

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


def _slope(z, y, log_t):
    """d NLL / d log T in float64, by hand: mean over images of (s_y - sum_k p_k s_k), s = z / T."""
    s = z / np.exp(log_t)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return float(np.mean(s[np.arange(len(y)), y] - (p * s).sum(axis=1)))


@pytest.mark.parametrize("scale", [0.3, 4.0, 25.0])        # under-, over- and very over-confident
def test_temperature_agrees_with_a_bisection_reference(scale):
    z, y = _logits(300, 3, 11, scale)
    lo, hi = np.log(1e-2), np.log(1e2)                     # the NLL is convex in log T: bisect its slope
    assert _slope(z, y, lo) < 0 < _slope(z, y, hi)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _slope(z, y, mid) < 0 else (lo, mid)
    t_ref = float(np.exp((lo + hi) / 2))
    assert TemperatureScaler().fit(z, y).temperature == pytest.approx(t_ref, rel=1e-9)


def test_max_iter_is_the_optimisers_budget():
    z, y = _logits(300, 3, 11, 25.0)
    full, one = TemperatureScaler().fit(z, y), TemperatureScaler(max_iter=1).fit(z, y)
    assert abs(_slope(z, y, np.log(full.temperature))) < 1e-9
    assert abs(_slope(z, y, np.log(one.temperature))) > 1e-6           # one iteration stops short


def test_temperature_is_clipped_to_its_bounds():
    y = np.array([0, 1] * 50)
    z = np.where(np.eye(2)[y] > 0, 0.05, -0.05)                # every case right: the NLL falls as T -> 0
    assert TemperatureScaler().fit(z, y).temperature == 1e-2
    assert TemperatureScaler(bounds=(0.5, 2.0)).fit(z, y).temperature == 0.5
    z_bad = np.where(np.eye(2)[1 - y] > 0, 0.5, -0.5)          # every case wrong: the NLL falls as T -> infinity
    assert TemperatureScaler().fit(z_bad, y).temperature == 1e2
    assert TemperatureScaler(bounds=(0.5, 2.0)).fit(z_bad, y).temperature == 2.0


def test_reliability_bins_average_float32_input_in_float64():
    from medssl.calibration import reliability_bins

    rng = np.random.default_rng(4)
    conf = rng.uniform(0.5, 1.0, 5000).astype(np.float32)
    out = (rng.uniform(size=5000) < conf).astype(np.float32)
    b = reliability_bins(conf, out, 10)
    c64, o64 = conf.astype(np.float64), out.astype(np.float64)
    idx = np.searchsorted(np.arange(11)[1:-1] / 10, c64, side="left")
    for k in range(5, 10):                                    # the filled bins (0.5 .. 1.0)
        assert b.confidence[k] == c64[idx == k].mean() and b.accuracy[k] == o64[idx == k].mean()


def test_equal_mass_bins_keep_tied_confidences_in_input_order():
    from medssl.calibration import reliability_bins

    rng = np.random.default_rng(8)
    conf = rng.choice([0.6, 0.7, 0.8], size=300)                # a few distinct values, many ties
    out = rng.integers(0, 2, 300).astype(float)
    order = sorted(range(300), key=lambda i: (conf[i], i))      # ties by position: a stable sort
    b = reliability_bins(conf, out, 7, "quantile")
    want = [out[g].mean() for g in np.array_split(np.array(order), 7)]
    assert b.accuracy.tolist() == want


def test_empty_bins_raise_no_warnings():
    import warnings

    from medssl.calibration import reliability_bins

    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # "Mean of empty slice" would be an error here
        b = reliability_bins(np.array([0.05, 0.95]), np.array([0.0, 1.0]), 10)
        assert b.count.tolist() == [1] + [0] * 8 + [1]
        b = reliability_bins(np.array([0.05, 0.95]), np.array([0.0, 1.0]), 4, "quantile")
        assert b.count.tolist() == [1, 1, 0, 0]


def test_calibration_metrics_ignore_a_positive_class_for_more_than_two_classes():
    rng = np.random.default_rng(9)
    p3, y = softmax(rng.normal(size=(120, 3)) * 2), rng.integers(0, 3, 120)
    assert calibration_metrics(p3, y, positive_class=1) == calibration_metrics(p3, y)


def test_nll_is_never_negative_when_rounding_puts_a_probability_above_one():
    p = np.array([[np.float32(1.0000001), 0.0], [0.25, 0.75]])        # float32 softmax rounding: p > 1 by 1e-7
    assert negative_log_likelihood(p[:1], np.array([0])) == 0.0
    assert negative_log_likelihood(p, np.array([0, 1])) == -np.log(0.75) / 2
