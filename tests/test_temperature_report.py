"""Temperature scaling's report: the numbers it holds (each recomputed independently) and the exact table text."""

from __future__ import annotations

import re

import numpy as np
import pytest

from medssl.calibration import (
    TemperatureScaler,
    calibration_metrics,
    softmax,
    temperature_scaling_report,
    temperature_scaling_table,
)
from medssl.registry import get_spec


def _nll(logits, labels, t=1.0):
    z = np.asarray(logits, dtype=np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _logits(n, k, seed, scale):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0
    return z * scale, y


def test_scaler_record_and_repr():
    ts = TemperatureScaler(max_iter=50, bounds=(0.05, 20.0))
    assert repr(ts) == "TemperatureScaler(unfitted)"
    z, y = _logits(200, 2, 0, 3.0)
    ts.fit(z, y)
    assert repr(ts) == f"TemperatureScaler(T={ts.temperature:.4f})"
    assert ts.to_dict() == {"temperature": ts.temperature, "fitted_on_n": 200,
                            "nll_before": pytest.approx(_nll(z, y)),
                            "nll_after": pytest.approx(_nll(z, y, ts.temperature)),
                            "optimizer": "LBFGS(strong_wolfe, max_iter=50) on log T", "bounds": [0.05, 20.0]}


@pytest.mark.parametrize("key", ["breastmnist", None])
def test_report_numbers_are_what_they_say(key):
    spec = get_spec(key) if key else None
    vz, vy = _logits(300, 2, 1, 3.0)       # over-confident: T > 1
    tz, ty = _logits(200, 2, 2, 3.0)
    r = temperature_scaling_report(vz, vy, tz, ty, spec, n_bins=10)
    t = TemperatureScaler().fit(vz, vy).temperature
    assert r["temperature"] == t and t > 1
    pos = spec.positive_class if spec else None
    assert r["dataset"] == (key or "(unnamed)")
    assert r["positive_class"] == pos
    assert r["positive_label"] == (spec.positive_name if spec else None)
    assert r["judged_on"] == (f"P({spec.positive_name}) (class {pos})" if spec else "top-label confidence")
    assert (r["n_bins"], r["n_val"], r["n_test"]) == (10, 300, 200)
    assert r["val_nll_before"] == pytest.approx(_nll(vz, vy)) and r["val_nll_after"] == pytest.approx(_nll(vz, vy, t))
    assert r["val_nll_after"] < r["val_nll_before"]
    assert r["fit"] == TemperatureScaler().fit(vz, vy).to_dict()
    assert r["before"] == calibration_metrics(softmax(tz), ty, pos, 10)
    assert r["after"] == calibration_metrics(softmax(tz / t), ty, pos, 10)
    assert r["table_md"] == temperature_scaling_table(r)


def test_multiclass_report_judges_top_label_confidence():
    vz, vy = _logits(300, 3, 3, 0.3)       # under-confident: T < 1
    tz, ty = _logits(100, 3, 4, 0.3)
    r = temperature_scaling_report(vz, vy, tz, ty, "breastmnist")   # a binary spec on 3 classes: no positive
    assert r["positive_class"] is None and r["positive_label"] is None
    assert r["judged_on"] == "top-label confidence" and r["temperature"] < 1
    assert r["n_bins"] == 15                                            # the default


def _result(t, pos, label):
    before = {"ece": 0.1, "ece_adaptive": 0.11, "mce": 0.3, "nll": 0.5, "brier": 0.2, "signed_gap": 0.05,
              "auroc": 0.9, "acc": 0.8}
    after = {k: v / 2 for k, v in before.items()} | {"auroc": 0.9, "acc": 0.8, "signed_gap": -0.01}
    return {"dataset": "breastmnist", "temperature": t, "n_val": 78, "n_test": 156, "val_nll_before": 0.6,
            "val_nll_after": 0.45, "judged_on": "P(malignant) (class 0)", "n_bins": 15, "before": before,
            "after": after, "positive_class": pos, "positive_label": label}


def test_table_text_binary_over_confident():
    assert temperature_scaling_table(_result(1.5, 0, "malignant")) == "\n".join([
        "# Temperature scaling on breastmnist",
        "",
        "- T = **1.5000** fitted on validation logits (n=78) by minimising NLL (val NLL 0.6000 -> 0.4500); "
        "T > 1: the model was over-confident.",
        "- Metrics on the test split (n=156); calibration judged on P(malignant) (class 0).",
        "",
        "| metric | before (T=1) | after (T=1.500) | change |",
        "|---|---|---|---|",
        "| ECE (15 equal-width bins) | 0.1000 | 0.0500 | -0.0500 |",
        "| adaptive ECE (15 equal-mass bins) | 0.1100 | 0.0550 | -0.0550 |",
        "| MCE | 0.3000 | 0.1500 | -0.1500 |",
        "| NLL | 0.5000 | 0.2500 | -0.2500 |",
        "| Brier score | 0.2000 | 0.1000 | -0.1000 |",
        "| mean predicted - observed rate (signed) | 0.0500 | -0.0100 | -0.0600 |",
        "| AUROC | 0.9000 | 0.9000 | +0.0000 |",
        "| accuracy | 0.8000 | 0.8000 | +0.0000 |",
        "",
        "Lower is better for ECE, MCE, NLL and Brier; the signed gap is best at 0 (+ = predicts malignant too "
        "often). Dividing all logits by one positive number keeps their order, so the predicted class and the "
        "accuracy cannot change, nor can the AUROC of P(positive).",
        ""])


def test_table_text_multiclass_under_confident():
    text = temperature_scaling_table(_result(0.8, None, None))
    assert text.splitlines()[2].endswith("(val NLL 0.6000 -> 0.4500); T < 1: the model was under-confident.")
    assert "T > 1" not in text
    assert text.endswith("(+ = over-confident). Dividing all logits by one positive number keeps their order, so "
                         "the predicted class and the accuracy cannot change; a multi-class one-vs-rest AUROC may "
                         "move slightly (each p_k also depends on the other logits).\n")
    assert "(+ = predicts the positive class too often)" in temperature_scaling_table(_result(0.8, 1, None))
    assert "T < 1" in temperature_scaling_table(_result(1.0, 1, None))   # exactly 1 is not "over-confident"


def test_positive_probability_contract():
    from medssl.calibration import positive_probability
    from medssl.errors import ConfigError

    p = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    got = positive_probability(p, 0)
    assert got.dtype == np.float64 and got.tolist() == [0.25, 0.5]
    assert positive_probability(p, 1).tolist() == [0.75, 0.5]
    for bad, cls, shape in ((np.ones((2, 3)) / 3, 0, "(2, 3)"), (np.ones(4) / 2, 1, "(4,)"), (p, 2, "(2, 2)")):
        with pytest.raises(ConfigError, match=r"^positive_probability needs \(N, 2\) probabilities and a positive "
                           rf"class 0 or 1, got shape {re.escape(shape)} and class {cls}\.$"):
            positive_probability(bad, cls)


def test_calibration_metrics_defaults_and_multiclass_positive():
    from medssl.calibration import expected_calibration_error

    rng = np.random.default_rng(5)
    p2 = softmax(rng.normal(size=(300, 2)) * 2)
    y2 = rng.integers(0, 2, 300)
    m = calibration_metrics(p2, y2, 1)
    assert m["ece"] == expected_calibration_error(p2, y2, 15, 1)               # 15 bins by default
    assert m["ece"] != expected_calibration_error(p2, y2, 16, 1)
    p3 = softmax(rng.normal(size=(300, 3)) * 2)
    y3 = rng.integers(0, 3, 300)
    # a positive class means nothing for three classes: top-label confidence is judged, as with None
    assert calibration_metrics(p3, y3, 1) == calibration_metrics(p3, y3, None)
