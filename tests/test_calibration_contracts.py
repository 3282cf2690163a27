"""Calibration's contract beyond the formulas: defaults, which probability each score judges, float64 math on
float32 input, and messages that say what was wrong. Written against mutation-testing survivors."""

from __future__ import annotations

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
