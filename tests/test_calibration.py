"""Calibration scores against independent references, and temperature scaling on synthetic logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from medssl.calibration import (
    TemperatureScaler,
    adaptive_calibration_error,
    brier_score,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    maximum_calibration_error,
    negative_log_likelihood,
    nll_from_logits,
    softmax,
    temperature_scaling_report,
)
from medssl.decisions import write_temperature_scaling
from medssl.errors import MedSSLError
from medssl.registry import get_spec


# ------------------------------------------------------------------ independent references (plain loops)
def ref_bins_uniform(conf, outcome, n_bins):
    """Samples grouped into equal-width bins (lo, hi]; a confidence of exactly 0 goes to the first bin."""
    groups = [[] for _ in range(n_bins)]
    for c, o in zip(conf, outcome):
        b = 0
        while b < n_bins - 1 and c > (b + 1) / n_bins:
            b += 1
        groups[b].append((c, o))
    return groups


def ref_bins_equal_mass(conf, outcome, n_bins):
    """Sorted by confidence, cut into n_bins groups whose sizes differ by at most one (larger groups first)."""
    pairs = sorted(zip(conf, outcome), key=lambda t: t[0])
    n = len(pairs)
    groups, start = [], 0
    for b in range(n_bins):
        size = n // n_bins + (1 if b < n % n_bins else 0)
        groups.append(pairs[start:start + size])
        start += size
    return groups


def ref_ece_mce(groups, n):
    ece, mce = 0.0, 0.0
    for g in groups:
        if not g:
            continue
        conf = sum(c for c, _ in g) / len(g)
        acc = sum(o for _, o in g) / len(g)
        ece += len(g) / n * abs(acc - conf)
        mce = max(mce, abs(acc - conf))
    return ece, mce


def ref_brier_binary(p_pos, is_pos):
    return sum((p - float(y)) ** 2 for p, y in zip(p_pos, is_pos)) / len(p_pos)


def ref_brier_multiclass(probs, labels):
    total = 0.0
    for row, y in zip(probs, labels):
        total += sum((p - (1.0 if k == y else 0.0)) ** 2 for k, p in enumerate(row))
    return total / len(labels)


def ref_nll(probs, labels):
    return -sum(math.log(row[y]) for row, y in zip(probs, labels)) / len(labels)


def random_case(n, k, seed, sharpness=2.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) * sharpness
    logits[np.arange(n), labels] += rng.normal(1.0, 1.0, n)
    return logits, labels


# ------------------------------------------------------------------ ECE / MCE / Brier / NLL
@pytest.mark.parametrize("pos", [0, 1])
@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_mce_binary_positive_class_against_loops(pos, n_bins):
    logits, labels = random_case(600, 2, seed=pos + n_bins)
    probs = softmax(logits)
    p_pos = probs[:, 1] if pos == 1 else 1 - probs[:, 1]
    outcome = [float(y == pos) for y in labels]
    ece, mce = ref_ece_mce(ref_bins_uniform(p_pos, outcome, n_bins), len(labels))
    assert expected_calibration_error(probs, labels, n_bins, pos) == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(probs, labels, n_bins, pos) == pytest.approx(mce, abs=1e-12)
    ece_a, mce_a = ref_ece_mce(ref_bins_equal_mass(p_pos, outcome, n_bins), len(labels))
    assert adaptive_calibration_error(probs, labels, n_bins, pos) == pytest.approx(ece_a, abs=1e-12)
    assert maximum_calibration_error(probs, labels, n_bins, pos, strategy="quantile") == pytest.approx(mce_a, abs=1e-12)


def test_ece_mce_multiclass_top_label_against_loops():
    logits, labels = random_case(803, 8, seed=3)  # 803 is not a multiple of the bin count
    probs = softmax(logits)
    conf = probs.max(1)
    outcome = [float(a == y) for a, y in zip(probs.argmax(1), labels)]
    ece, mce = ref_ece_mce(ref_bins_uniform(conf, outcome, 10), len(labels))
    assert expected_calibration_error(probs, labels, 10) == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(probs, labels, 10) == pytest.approx(mce, abs=1e-12)
    ece_a, _ = ref_ece_mce(ref_bins_equal_mass(conf, outcome, 10), len(labels))
    assert adaptive_calibration_error(probs, labels, 10) == pytest.approx(ece_a, abs=1e-12)


def test_calibration_known_values():
    labels = np.array([1, 1, 1, 0])
    sure = np.array([[0.0, 1.0]] * 4)            # says P(1)=1, right 3 times in 4
    assert maximum_calibration_error(sure, labels, 10, positive_class=1) == pytest.approx(0.25)
    assert brier_score(sure, labels, positive_class=1) == pytest.approx(0.25)
    assert negative_log_likelihood(np.array([[0.5, 0.5]] * 4), labels) == pytest.approx(math.log(2))


@pytest.mark.parametrize("pos", [0, 1])
def test_brier_binary_against_sklearn_and_loop(pos):
    logits, labels = random_case(400, 2, seed=10 + pos)
    probs = softmax(logits)
    p_pos = probs[:, pos]
    is_pos = labels == pos
    ours = brier_score(probs, labels, positive_class=pos)
    assert ours == pytest.approx(ref_brier_binary(p_pos, is_pos), abs=1e-12)
    assert ours == pytest.approx(brier_score_loss(is_pos.astype(int), p_pos), abs=1e-12)


def test_brier_multiclass_against_sklearn_and_loop():
    logits, labels = random_case(300, 5, seed=4)
    probs = softmax(logits)
    ours = brier_score(probs, labels)
    assert ours == pytest.approx(ref_brier_multiclass(probs, labels), abs=1e-12)
    assert ours == pytest.approx(brier_score_loss(labels, probs, labels=np.arange(5)), abs=1e-12)


@pytest.mark.parametrize("k", [2, 6])
def test_nll_against_sklearn_and_loop(k):
    logits, labels = random_case(300, k, seed=k)
    probs = softmax(logits)
    ours = negative_log_likelihood(probs, labels)
    assert ours == pytest.approx(ref_nll(probs, labels), rel=1e-10)
    assert ours == pytest.approx(log_loss(labels, probs, labels=np.arange(k)), rel=1e-10)
    assert nll_from_logits(logits, labels) == pytest.approx(ours, rel=1e-10)


def test_nll_clips_zero_probabilities_at_eps():
    """P(true class) = 0 counts as eps (default 1e-12), not as -inf, and the other rows keep their own terms."""
    zero = np.array([[1.0, 0.0]])
    assert negative_log_likelihood(zero, np.array([1])) == pytest.approx(-math.log(1e-12), rel=1e-12)
    assert negative_log_likelihood(zero, np.array([1]), eps=1e-6) == pytest.approx(-math.log(1e-6), rel=1e-12)
    mixed = np.array([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]])
    want = (-math.log(1e-12) + math.log(2) - math.log(0.8)) / 3
    assert negative_log_likelihood(mixed, np.array([1, 0, 1])) == pytest.approx(want, rel=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(MedSSLError, match="labels must lie"):
        brier_score(np.full((3, 2), 0.5), np.array([0, 1, 2]))
    with pytest.raises(MedSSLError, match="shape"):
        negative_log_likelihood(np.full(3, 0.5), np.array([0, 1, 1]))


# ------------------------------------------------------------------ temperature scaling
def sample_with_temperature(n, k, t_true, seed):
    """Logits z and labels drawn from softmax(z / t_true): the NLL-optimal temperature is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3.0
    p = softmax(z / t_true)
    u = rng.random(n)[:, None]
    labels = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(labels, k - 1)


@pytest.mark.parametrize("t_true", [0.5, 2.0, 3.0])
def test_temperature_scaling_recovers_known_temperature(t_true):
    z, y = sample_with_temperature(20000, 4, t_true, seed=int(t_true * 10))
    ts = TemperatureScaler().fit(z, y)
    assert ts.temperature == pytest.approx(t_true, rel=0.05)
    assert ts.nll_after <= ts.nll_before + 1e-12
    assert fit_temperature(z, y) == pytest.approx(ts.temperature)


def test_fitted_temperature_is_the_nll_minimum():
    z, y = sample_with_temperature(3000, 3, 1.7, seed=5)
    t = fit_temperature(z, y)
    at_t = nll_from_logits(z / t, y)
    for f in (0.9, 0.97, 1.03, 1.1):
        assert at_t <= nll_from_logits(z / (t * f), y) + 1e-12


@pytest.mark.parametrize("k", [2, 5])
def test_scaling_never_changes_ranking_accuracy_or_auroc(k):
    z, y = sample_with_temperature(2000, k, 2.5, seed=k)   # truth is softer than z: z is over-confident
    ts = TemperatureScaler().fit(z[:1000], y[:1000])
    before, after = softmax(z[1000:]), ts.predict_proba(z[1000:])
    yt = y[1000:]
    # the fitted T is the NLL minimiser on the fitting half (a plain grid search here), near the truth 2.5
    from scipy.special import log_softmax

    grid = np.exp(np.linspace(np.log(0.5), np.log(10), 4001))
    nll = [-log_softmax(z[:1000] / t, axis=1)[np.arange(1000), y[:1000]].mean() for t in grid]
    assert ts.temperature == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    assert ts.temperature == pytest.approx(2.5, rel=0.25)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    if k == 2:  # binary: P(positive) is a monotone function of the logit difference, so AUROC cannot move
        assert roc_auc_score(yt == 0, after[:, 0]) == pytest.approx(roc_auc_score(yt == 0, before[:, 0]), abs=1e-12)
    # (multi-class one-vs-rest AUROC may move slightly: p_k also depends on the other logits)
    mb = calibration_metrics(before, yt, 0 if k == 2 else None)
    ma = calibration_metrics(after, yt, 0 if k == 2 else None)
    assert ma["acc"] == mb["acc"]
    conf = before[:, 0] if k == 2 else before.max(1)
    hit = (yt == 0) if k == 2 else (before.argmax(1) == yt)
    assert mb["signed_gap"] == pytest.approx(conf.mean() - hit.mean(), abs=1e-12)
    if k == 2:
        assert ma["auroc"] == pytest.approx(mb["auroc"], abs=1e-12)
    # over-confident -> scaling helps on held-out data
    assert ma["ece"] < mb["ece"]
    assert ma["nll"] < mb["nll"]


def test_temperature_scaler_errors():
    with pytest.raises(MedSSLError, match="not fitted"):
        TemperatureScaler().predict_proba(np.zeros((2, 2)))
    with pytest.raises(MedSSLError, match="logits"):
        TemperatureScaler().fit(np.zeros(5), np.zeros(5))
    with pytest.raises(MedSSLError, match="nan"):
        TemperatureScaler().fit(np.array([[0.0, np.nan]]), np.array([0]))


def test_temperature_scaling_report_and_its_p1_files(tmp_path):
    z, y = sample_with_temperature(1200, 2, 0.5, seed=7)
    res = temperature_scaling_report(z[:600], y[:600], z[600:], y[600:], "breastmnist", n_bins=10)
    names = write_temperature_scaling(res, z[600:], y[600:], tmp_path)
    assert names == ["P1_temp_scaling_table.md", "P1_temp_scaling.json", "P1_reliability_before.png",
                     "P1_reliability_after.png", "P1_reliability_before_after.png"]
    for name in names:
        assert (tmp_path / name).stat().st_size > 0
    assert res["positive_class"] == 0 and res["positive_label"] == get_spec("breastmnist").positive_name
    table = (tmp_path / "P1_temp_scaling_table.md").read_text()
    assert table == res["table_md"]
    assert f"T = **{res['temperature']:.4f}**" in table and "P(malignant) (class 0)" in table
    # the reported numbers are the numbers of the scaled probabilities
    after = softmax(z[600:] / res["temperature"])
    assert res["after"]["ece"] == pytest.approx(expected_calibration_error(after, y[600:], 10, 0))
    assert res["after"]["brier"] == pytest.approx(brier_score(after, y[600:], 0))
    assert res["after"]["ece"] < res["before"]["ece"]
    assert res["after"]["auroc"] == pytest.approx(res["before"]["auroc"], abs=1e-12)
