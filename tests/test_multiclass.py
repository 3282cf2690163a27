"""Multi-class paths on the synthetic 8-class set shaped like BloodMNIST (3x28x28 and 3x64x64).

Every metric is checked against scikit-learn or an independent computation in
the test; the rest of the library (calibration, probes, embeddings, plots,
training) must accept 8 classes without a binary-only assumption.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score
from tiny_data import tiny_synthetic

from medssl.calibration import (
    TemperatureScaler,
    confidence_and_outcome,
    expected_calibration_error,
    maximum_calibration_error,
    softmax,
)
from medssl.data import load_splits
from medssl.errors import UnsupportedTaskError
from medssl.metrics import auroc, classification_metrics
from medssl.registry import get_spec

K = 8


def random_probs(n: int, k: int = K, seed: int = 0, skill: float = 2.0):
    """Labels and probabilities that are informative but imperfect (so every metric is non-trivial)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    rng.shuffle(labels)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += skill
    return labels, softmax(logits)


def _top_label_gaps(probs, labels, n_bins):
    """(share of samples, |accuracy - confidence|) of every non-empty equal-width (lo, hi] bin."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    out = []
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (conf > lo) & (conf <= hi) if b else (conf >= lo) & (conf <= hi)
        if m.any():
            out.append((m.mean(), abs(correct[m].mean() - conf[m].mean())))
    return out


def reference_top_label_ece(probs, labels, n_bins):
    """ECE with equal-width (lo, hi] bins on the top-label confidence, written out independently."""
    return sum(w * gap for w, gap in _top_label_gaps(probs, labels, n_bins))


def reference_top_label_mce(probs, labels, n_bins):
    """MCE: the largest bin gap (same bins as :func:`reference_top_label_ece`)."""
    return max(gap for _, gap in _top_label_gaps(probs, labels, n_bins))


# ------------------------------------------------------------------- data
@pytest.mark.parametrize("size", [28, 64])
def test_synthetic8_has_bloodmnist_shape(synth_root, size):
    splits = load_splits("synthetic8", size=size, root=synth_root)
    spec = get_spec("synthetic8")
    assert spec.n_classes == K and spec.positive_class is None and not spec.is_binary
    for name, n in spec.n_samples.items():
        d = splits[name]
        assert d.images.shape == (n, 3, size, size) and d.images.dtype == np.uint8
        assert d.labels.dtype == np.int64 and set(np.unique(d.labels)) == set(range(K))


# ---------------------------------------------------------------- metrics
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_sklearn(seed):
    labels, probs = random_probs(400, seed=seed)
    spec = get_spec("synthetic8")
    m = classification_metrics(labels, probs, spec, n_bins=15)
    pred = probs.argmax(1)
    assert m["acc"] == pytest.approx(accuracy_score(labels, pred))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    # macro one-vs-rest by hand: the mean of the 8 binary AUROCs
    per_class = [roc_auc_score(labels == c, probs[:, c]) for c in range(K)]
    assert m["auroc"] == pytest.approx(np.mean(per_class))
    assert m["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert m["precision"] == pytest.approx(precision_score(labels, pred, average="macro"))
    assert m["recall"] == pytest.approx(recall_score(labels, pred, average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(labels, pred, labels=range(K)).tolist()
    assert np.asarray(m["confusion_matrix"]).shape == (K, K)
    assert m["n_per_class"] == np.bincount(labels, minlength=K).tolist()
    assert m["ece"] == pytest.approx(reference_top_label_ece(probs, labels, 15), abs=1e-12)
    assert m["ece_on"] == "top-label confidence"
    assert m["positive_class"] is None and m["positive_label"] is None
    assert not {"sensitivity", "specificity", "ppv", "npv", "threshold"} & set(m)


def test_macro_f1_counts_a_never_predicted_class_as_zero():
    labels = np.repeat(np.arange(K), 5)
    probs = np.full((len(labels), K), 0.01)
    pred = np.where(labels == 7, 6, labels)          # class 7 is never predicted
    probs[np.arange(len(labels)), pred] = 0.93
    m = classification_metrics(labels, probs, get_spec("synthetic8"))
    assert m["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert m["f1_macro"] < m["acc"]


def test_auroc_is_nan_when_a_class_is_missing_from_the_labels():
    labels, probs = random_probs(80)
    keep = labels != 3
    assert np.isnan(auroc(labels[keep], probs[keep]))


def test_top_label_calibration_and_reliability():
    labels, probs = random_probs(300, skill=3.0)
    conf, outcome = confidence_and_outcome(probs, labels)
    assert np.allclose(conf, probs.max(1))
    assert np.array_equal(outcome, (probs.argmax(1) == labels).astype(float))
    assert expected_calibration_error(probs, labels, 10) == pytest.approx(reference_top_label_ece(probs, labels, 10))
    mce = reference_top_label_mce(probs, labels, 10)
    assert mce > reference_top_label_ece(probs, labels, 10) + 0.05      # distinct, so a swap is caught
    assert maximum_calibration_error(probs, labels, 10) == pytest.approx(mce, abs=1e-12)
    from medssl.plots import reliability_diagram

    fig = reliability_diagram({"model": probs}, labels, positive_class=None, n_bins=10)
    assert fig.axes[0].get_ylabel() == "accuracy" and fig.axes[1].get_xlabel() == "confidence"
    plt.close(fig)


def test_temperature_scaling_multiclass_keeps_predictions_and_lowers_nll():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, 500)
    logits = rng.normal(0, 1, (500, K))
    logits[np.arange(500), labels] += 1.5
    logits *= 4.0                                     # over-confident
    ts = TemperatureScaler().fit(logits, labels)
    # T is the minimiser of the NLL (a plain grid search with scipy's log-softmax), and it is > 1 (over-confident)
    from scipy.special import log_softmax

    grid = np.exp(np.linspace(0.0, np.log(20.0), 3001))
    nll = np.array([-log_softmax(logits / t, axis=1)[np.arange(500), labels].mean() for t in grid])
    assert grid[int(np.argmin(nll))] > 1.5
    assert ts.temperature == pytest.approx(grid[int(np.argmin(nll))], rel=2e-3)
    assert ts.nll_before == pytest.approx(nll[0], rel=1e-9)
    assert ts.nll_after == pytest.approx(nll.min(), rel=1e-6)
    np.testing.assert_allclose(ts.predict_proba(logits), np.exp(log_softmax(logits / ts.temperature, axis=1)),
                               rtol=1e-9, atol=1e-12)
    assert np.array_equal(ts.predict_proba(logits).argmax(1), logits.argmax(1))


def test_thresholds_refuse_multiclass_with_a_clear_message():
    from medssl.decisions import require_binary

    with pytest.raises(UnsupportedTaskError, match="binary-only"):
        require_binary(get_spec("synthetic8"), K)


# --------------------------------------------------------- probes, embeddings
def test_linear_probe_and_embeddings_handle_eight_classes():
    from medssl.data import SplitData
    from medssl.embed import knn_separability, reduce_2d, representation_figure
    from medssl.probe import fit_logistic_probe, linear_probe

    spec = get_spec("synthetic8")
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (K, 16))

    def split(name, n):
        y = np.arange(n) % K
        x = centres[y] + rng.normal(0, 1, (n, 16))
        return SplitData(spec, name, 28, np.zeros((n, 3, 2, 2), np.uint8), y.astype(np.int64)), x

    splits, feats = {}, {}
    for name, n in (("train", 160), ("val", 80), ("test", 80)):
        splits[name], feats[name] = split(name, n)
    clf, sel = fit_logistic_probe(feats["train"], splits["train"].labels, feats["val"], splits["val"].labels, spec,
                                  c_grid=(0.1, 1.0))
    assert clf.predict_proba(feats["test"]).shape == (80, K)
    res = linear_probe(feats, splits, spec, 1.0, seed=0, c_grid=(0.1, 1.0))
    assert res["_test_logits"].shape == (80, K)
    # the reported accuracy is the accuracy of the returned test logits (and the probe learned the clusters)
    assert res["acc"] == pytest.approx(np.mean(res["_test_logits"].argmax(1) == splits["test"].labels))
    assert res["acc"] > 0.9 and res["n_labels_per_class"] == [20] * K
    xy = reduce_2d(feats["test"], "pca")
    assert xy.shape == (80, 2)
    assert knn_separability(feats["test"], splits["test"].labels) > 0.9
    # ... and with the labels shuffled the same features are at chance (1/8 balanced accuracy)
    shuffled = np.random.default_rng(1).permutation(splits["test"].labels)
    assert knn_separability(feats["test"], shuffled) < 0.3
    fig = representation_figure({"SSL": {"pca": xy}}, splits["test"].labels, spec.labels, {"SSL": 1.0})
    assert len(fig.legends[0].get_texts()) == K
    plt.close(fig)


def test_knn_separability_with_an_absent_class_value():
    from medssl.embed import knn_separability

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 3], 10)                # class 2 absent (e.g. a small random subset)
    x = rng.normal(0, 1, (30, 4)) + labels[:, None] * 3
    score = knn_separability(x, labels)
    assert score > 0.9                               # three well-separated clusters (NaN fails too)
    # overlapping clusters, where k matters (3-NN gives 1.0, 7-NN 0.9): the number by hand, 5-NN on
    # standardised features, stratified 5-fold CV (shuffled with seed 0), balanced accuracy
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    x = rng.normal(0, 1, (30, 4)) + labels[:, None] * 1.5
    scores = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(x, labels):
        mu, sd = x[tr].mean(0), x[tr].std(0)
        d = (((x[te][:, None] - mu) / sd - (x[tr][None] - mu) / sd) ** 2).sum(-1)
        near = np.argsort(d, axis=1, kind="stable")[:, :5]
        votes = np.array([np.bincount(labels[tr][row], minlength=4).argmax() for row in near])
        scores.append(balanced_accuracy_score(labels[te], votes))
    assert 0.6 < np.mean(scores) < 1.0
    assert knn_separability(x, labels) == pytest.approx(np.mean(scores), abs=1e-12)
    noisy = rng.normal(0, 1, (30, 4))                # no structure: near chance (1/3)
    assert knn_separability(noisy, labels) < 0.6


def test_confusion_matrix_figure_eight_classes():
    from medssl.plots import confusion_matrix_figure

    labels, probs = random_probs(200)
    cm = confusion_matrix(labels, probs.argmax(1))
    fig = confusion_matrix_figure(cm, [f"c{i}" for i in range(K)], normalize=True)
    assert len(fig.axes[0].texts) == K * K
    plt.close(fig)


# ------------------------------------------------------------------ training
def test_fit_selects_best_val_macro_f1_on_synthetic8(tmp_path):
    from medssl.models import build_model
    from medssl.train import TrainConfig, fit

    root = tiny_synthetic(tmp_path)
    splits = load_splits("synthetic8", root=root)
    spec = get_spec("synthetic8")
    cfg = TrainConfig(dataset="synthetic8", epochs=3, batch_size=32, lr=3e-3, select="f1_macro", progress=False)
    torch.manual_seed(0)
    model = build_model("smallcnn", K, 3)
    history, best_state, best_epoch = fit(model, splits["train"], splits["val"], spec, cfg, torch.device("cpu"))
    f1s = [r["val_f1_macro"] for r in history]
    assert len(history) == 3 and best_epoch == int(np.argmax(f1s)) + 1
    model.load_state_dict(best_state)
    from medssl.train import evaluate

    vm, logits = evaluate(model, splits["val"], spec)
    assert logits.shape == (32, K)
    assert vm["f1_macro"] == pytest.approx(f1s[best_epoch - 1])


def test_representation_figure_gives_eleven_classes_eleven_colours():
    """OrganMNIST sets have 11 classes: tab10 alone would paint class 10 like class 0."""
    from matplotlib.colors import to_hex

    from medssl.embed import representation_figure
    from medssl.plots import class_colors

    n = 11
    labels = np.repeat(np.arange(n), 5)
    xy = np.random.default_rng(0).normal(size=(len(labels), 2))
    fig = representation_figure({"SSL": {"pca": xy}}, labels, {i: f"organ {i}" for i in range(n)})
    colours = {to_hex(coll.get_facecolor()[0], keep_alpha=False) for coll in fig.axes[0].collections}
    assert len(colours) == n
    plt.close(fig)
    for k in (2, 8, 11, 20, 25):
        assert len({to_hex(c) for c in class_colors(k)}) == k
