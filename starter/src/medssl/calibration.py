"""Calibration: does a predicted probability of 0.8 come true 80% of the time?

Written out by hand on purpose -- this is what the course teaches.

Which probability is judged:

* binary task with a positive class: the positive-class probability against
  the observed frequency of the positive class (a reliability diagram of
  "P(pneumonia)" or "P(malignant)");
* multi-class: the top-label confidence against top-label accuracy
  (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def positive_probability(probs: np.ndarray, positive_class: int) -> np.ndarray:
    """P(positive) from (N, 2) probabilities, taken as ``1 - p1`` when class 0 is positive.

    Using ``1 - p1`` (not ``p0``) keeps the ranking exactly the reverse of p1,
    so AUROC matches medmnist's evaluator to the last bit.
    """
    probs = np.asarray(probs, dtype=np.float64)
    return probs[:, 1] if positive_class == 1 else 1.0 - probs[:, 1]


def confidence_and_outcome(probs: np.ndarray, labels: np.ndarray,
                           positive_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (confidence, outcome) pairs calibration is measured on (see module doc)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim == 1:  # already a positive-class probability
        return probs, (labels == (1 if positive_class is None else positive_class)).astype(float)
    if probs.shape[1] == 2 and positive_class is not None:
        return positive_probability(probs, positive_class), (labels == positive_class).astype(float)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)


@dataclass
class ReliabilityBins:
    lower: np.ndarray       # bin lower edges
    upper: np.ndarray       # bin upper edges
    confidence: np.ndarray  # mean confidence in each bin (nan when empty)
    accuracy: np.ndarray    # observed frequency / accuracy in each bin (nan when empty)
    count: np.ndarray       # samples per bin

    @property
    def gap(self) -> np.ndarray:
        return self.accuracy - self.confidence


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 15,
                     strategy: str = "uniform") -> ReliabilityBins:
    """Group predictions into bins by confidence.

    ``uniform``: equal-width bins (lo, hi] over [0, 1], a confidence of exactly
    0 goes to the first bin. ``quantile``: equal-mass bins, each holding the
    same number of predictions (+-1), sorted by confidence.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    out = np.asarray(outcome, dtype=np.float64)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
        groups = [np.flatnonzero(idx == b) for b in range(n_bins)]
        lower, upper = edges[:-1], edges[1:]
    elif strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, n_bins)]
        lower = np.array([conf[g].min() if len(g) else np.nan for g in groups])
        upper = np.array([conf[g].max() if len(g) else np.nan for g in groups])
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    count = np.array([len(g) for g in groups])
    mean_conf = np.array([conf[g].mean() if len(g) else np.nan for g in groups])
    acc = np.array([out[g].mean() if len(g) else np.nan for g in groups])
    return ReliabilityBins(lower, upper, mean_conf, acc, count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                               positive_class: int | None = None, strategy: str = "uniform") -> float:
    """ECE = sum over bins of (n_bin / N) * |accuracy_bin - confidence_bin|."""
    conf, out = confidence_and_outcome(probs, labels, positive_class)
    bins = reliability_bins(conf, out, n_bins, strategy)
    filled = bins.count > 0
    return float(np.sum(bins.count[filled] / bins.count.sum() * np.abs(bins.gap[filled])))


def maximum_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                              positive_class: int | None = None, strategy: str = "uniform") -> float:
    """MCE = the largest |accuracy_bin - confidence_bin| over non-empty bins."""
    conf, out = confidence_and_outcome(probs, labels, positive_class)
    bins = reliability_bins(conf, out, n_bins, strategy)
    filled = bins.count > 0
    return float(np.max(np.abs(bins.gap[filled]))) if filled.any() else 0.0
