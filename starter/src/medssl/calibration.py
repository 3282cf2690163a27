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
from sklearn.metrics import roc_auc_score

from .errors import ConfigError


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def positive_probability(probs: np.ndarray, positive_class: int) -> np.ndarray:
    """P(positive) from (N, 2) probabilities: the positive class's own column, ``probs[:, positive_class]``.

    Never ``1 - p1``: in floating point that subtraction rounds to the spacing of numbers near 1, so
    distinct small probabilities (``p1`` = 1e-17 and 1e-18, or two values an ulp apart) become one
    value and their ranking is lost. (The binary AUROC does not need this column at all; see
    :func:`auroc`.)
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != 2 or positive_class not in (0, 1):
        raise ConfigError(f"positive_probability needs (N, 2) probabilities and a positive class 0 or 1, got "
                          f"shape {probs.shape} and class {positive_class!r}.")
    return probs[:, positive_class]


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

    ``uniform``: equal-width bins (lo, hi] over [0, 1] with edges ``k / n_bins``, a
    confidence of exactly 0 goes to the first bin. A confidence equal to an edge
    belongs to the bin that edge closes (0.3 with 10 bins is in (0.2, 0.3]), judged
    against the very edges reported in ``lower`` / ``upper``, never against a
    rounded ``conf * n_bins``. ``quantile``: equal-mass bins, each holding the
    same number of predictions (+-1), sorted by confidence.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    out = np.asarray(outcome, dtype=np.float64)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.arange(n_bins + 1) / n_bins        # k / n, correctly rounded (linspace is not)
        idx = np.searchsorted(edges[1:-1], conf, side="left")   # first bin whose upper edge >= conf
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


def adaptive_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                               positive_class: int | None = None) -> float:
    """Adaptive (equal-mass) ECE: the ECE with bins that each hold the same number of predictions.

    Equal-width bins leave most bins nearly empty when a model is confident; equal-mass
    bins (Nixon et al., "Measuring Calibration in Deep Learning", 2019) spread the
    predictions evenly, so every bin's gap is estimated from the same amount of data.
    """
    return expected_calibration_error(probs, labels, n_bins, positive_class, strategy="quantile")


def _probs_and_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ConfigError(f"expected probabilities of shape (N, K) and N labels, got {probs.shape} and {labels.shape}.")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ConfigError(f"labels must lie in 0..{probs.shape[1] - 1}, got {labels.min()}..{labels.max()}.")
    return probs, labels


def brier_score(probs: np.ndarray, labels: np.ndarray, positive_class: int | None = None) -> float:
    """Mean squared error of the predicted probabilities (lower is better).

    Binary with a positive class: ``mean((P(positive) - 1[y == positive])^2)``, in [0, 1]
    (scikit-learn's ``brier_score_loss``). Multi-class: Brier's original score
    ``mean(sum_k (p_k - 1[y == k])^2)``, in [0, 2].
    """
    probs, labels = _probs_and_labels(probs, labels)
    if probs.shape[1] == 2 and positive_class is not None:
        p = positive_probability(probs, positive_class)
        return float(np.mean((p - (labels == positive_class)) ** 2))
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray, eps: float = 1e-12) -> float:
    """Mean ``-log p(true class)``; probabilities are clipped at ``eps`` so one 0 does not give inf."""
    probs, labels = _probs_and_labels(probs, labels)
    p_true = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p_true, eps, 1.0))))


def nll_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy computed from logits with log-sum-exp (exact, no clipping)."""
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


# ------------------------------------------------------------------ ranking, reported next to calibration
def auroc(labels: np.ndarray, probs: np.ndarray, positive_class: int | None = None) -> float:
    """Binary: AUROC of P(positive). Multi-class: macro one-vs-rest AUROC (nan if a class is absent).

    A binary AUROC does not depend on which class is called positive: ranking cases by P(class 0)
    against "is class 0" is ranking them by P(class 1) against "is class 1", read backwards. So it is
    computed as medmnist's ``getAUC`` computes it, on the class-1 column against label 1, and agrees
    with the official evaluator to the last bit, tied scores included. (Ranking by ``1 - p1`` or by a
    separately rounded ``p0`` does not: either merges or splits scores that ``p1`` keeps apart.)
    ``positive_class`` is accepted for symmetry with the other metrics; it cannot change a binary AUROC.

    AUROC measures ranking, not calibration: it lives here because :func:`calibration_metrics` reports it
    (temperature scaling must leave it as it was), and :mod:`medssl.metrics` builds on this module.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    if k == 2:
        y = (labels == 1).astype(int)
        if y.min() == y.max():
            return float("nan")
        return float(roc_auc_score(y, probs[:, 1]))
    if len(np.unique(labels)) < k:
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=np.arange(k)))


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, positive_class: int | None = None,
                        n_bins: int = 15) -> dict:
    """Accuracy, AUROC and every calibration score of one set of probabilities, in one dict.

    ``ece`` (equal-width bins), ``ece_adaptive`` (equal-mass bins), ``mce``, ``nll``, ``brier`` and
    ``signed_gap`` = mean judged probability - observed rate (binary: mean P(positive) - prevalence;
    multi-class: mean confidence - accuracy). When every bin errs in the same direction the ECE
    equals ``|signed_gap|``: the model over- (or under-) predicts across the board, which a single
    temperature cannot fix if the validation split does not show the same bias.
    Which probability is judged follows the module rule (binary: P(positive); multi-class: top label).
    """
    probs, labels = _probs_and_labels(probs, labels)
    pos = positive_class if probs.shape[1] == 2 else None
    conf, outcome = confidence_and_outcome(probs, labels, pos)
    return {
        "acc": float(np.mean(probs.argmax(axis=1) == labels)),
        "auroc": auroc(labels, probs, pos),
        "ece": expected_calibration_error(probs, labels, n_bins, pos),
        "ece_adaptive": adaptive_calibration_error(probs, labels, n_bins, pos),
        "mce": maximum_calibration_error(probs, labels, n_bins, pos),
        "nll": negative_log_likelihood(probs, labels),
        "brier": brier_score(probs, labels, pos),
        "signed_gap": float(np.mean(conf) - np.mean(outcome)),
    }


# ------------------------------------------------------------------ temperature scaling
class TemperatureScaler:
    """Temperature scaling (Guo et al., 2017): divide every logit by one number T > 0.

    ``T`` is fitted on *validation* logits by minimising the negative log-likelihood
    with L-BFGS. The search runs over ``log T`` so T stays positive without
    constraints. T > 1 softens an over-confident model, T < 1 sharpens an
    under-confident one. Dividing all logits by the same positive number never
    changes their order, so the arg-max prediction and the accuracy stay exactly
    as they were, and so does a binary AUROC (P(positive) is a monotone function
    of the logit difference): only the confidence moves. (A multi-class
    one-vs-rest AUROC can move slightly, since each p_k also depends on the other logits.)

    >>> ts = TemperatureScaler().fit(val_logits, val_labels)
    >>> test_probs = ts.predict_proba(test_logits)   # ts.temperature is the fitted T
    """

    def __init__(self, max_iter: int = 200, bounds: tuple[float, float] = (1e-2, 1e2)):
        self.max_iter = max_iter
        self.bounds = bounds
        self.temperature: float | None = None
        self.nll_before: float | None = None
        self.nll_after: float | None = None
        self.n_fit: int = 0

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        import torch
        import torch.nn.functional as F

        z = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels).astype(np.int64)
        if z.ndim != 2 or z.shape[1] < 2 or len(z) != len(y) or len(y) == 0:
            raise ConfigError(f"temperature scaling needs logits (N, K>=2) and N labels, got {z.shape}, {y.shape}. "
                              "Pass the raw model outputs (logits), not labels or 1-D scores.")
        if not np.all(np.isfinite(z)):
            raise ConfigError("logits contain nan or inf; check the model's predictions before calibrating.")
        if y.min() < 0 or y.max() >= z.shape[1]:
            raise ConfigError(f"labels must lie in 0..{z.shape[1] - 1}, got {y.min()}..{y.max()}.")
        zt, yt = torch.from_numpy(z), torch.from_numpy(y)
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        # tolerance_change at float64 resolution: with 1e-12 L-BFGS stopped while the loss still moved by
        # ~1e-13, leaving an over-confident model's T off the NLL optimum by ~4e-7 (relative)
        opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=self.max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=1e-15)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(zt / log_t.exp(), yt)
            loss.backward()
            return loss

        opt.step(closure)
        lo, hi = self.bounds
        self.temperature = float(np.clip(np.exp(log_t.item()), lo, hi))
        self.nll_before = nll_from_logits(z, y)
        self.nll_after = nll_from_logits(z / self.temperature, y)
        self.n_fit = len(y)
        return self

    def _check(self) -> float:
        if self.temperature is None:
            raise ConfigError("TemperatureScaler is not fitted yet: call .fit(val_logits, val_labels) first.")
        return self.temperature

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Scaled logits ``logits / T``."""
        return np.asarray(logits, dtype=np.float64) / self._check()

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``softmax(logits / T)``."""
        return softmax(self.transform(logits))

    def to_dict(self) -> dict:
        return {"temperature": self.temperature, "fitted_on_n": self.n_fit, "nll_before": self.nll_before,
                "nll_after": self.nll_after, "optimizer": f"LBFGS(strong_wolfe, max_iter={self.max_iter}) on log T",
                "bounds": list(self.bounds)}

    def __repr__(self) -> str:
        t = "unfitted" if self.temperature is None else f"T={self.temperature:.4f}"
        return f"TemperatureScaler({t})"


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The NLL-optimal temperature for ``logits`` (shortcut for ``TemperatureScaler().fit(...).temperature``)."""
    return TemperatureScaler().fit(logits, labels).temperature  # type: ignore[return-value]


_TS_ROWS = (("ece", "ECE ({n} equal-width bins)"), ("ece_adaptive", "adaptive ECE ({n} equal-mass bins)"),
            ("mce", "MCE"), ("nll", "NLL"), ("brier", "Brier score"),
            ("signed_gap", "mean predicted - observed rate (signed)"), ("auroc", "AUROC"), ("acc", "accuracy"))


def temperature_scaling_table(result: dict) -> str:
    """The ``P1_temp_scaling_table.md`` text from :func:`temperature_scaling_report`'s result."""
    b, a, n = result["before"], result["after"], result["n_bins"]
    lines = [
        f"# Temperature scaling on {result['dataset']}",
        "",
        f"- T = **{result['temperature']:.4f}** fitted on validation logits (n={result['n_val']}) by minimising "
        f"NLL (val NLL {result['val_nll_before']:.4f} -> {result['val_nll_after']:.4f}); "
        + ("T > 1: the model was over-confident." if result["temperature"] > 1 else
           "T < 1: the model was under-confident."),
        f"- Metrics on the test split (n={result['n_test']}); calibration judged on {result['judged_on']}.",
        "",
        f"| metric | before (T=1) | after (T={result['temperature']:.3f}) | change |",
        "|---|---|---|---|",
    ]
    for key, name in _TS_ROWS:
        lines.append(f"| {name.format(n=n)} | {b[key]:.4f} | {a[key]:.4f} | {a[key] - b[key]:+.4f} |")
    lines += ["", "Lower is better for ECE, MCE, NLL and Brier; the signed gap is best at 0 (+ = "
              + (f"predicts {result['positive_label'] or 'the positive class'} too often"
                 if result["positive_class"] is not None
                 else "over-confident") + "). Dividing all logits by one positive number keeps "
              "their order, so the predicted class and the accuracy cannot change"
              + (", nor can the AUROC of P(positive)." if result["positive_class"] is not None else
                 "; a multi-class one-vs-rest AUROC may move slightly (each p_k also depends on the other logits)."),
              ""]
    return "\n".join(lines)


def temperature_scaling_report(val_logits: np.ndarray, val_labels: np.ndarray, test_logits: np.ndarray,
                               test_labels: np.ndarray, spec=None, n_bins: int = 15) -> dict:
    """Fit T on validation, compare test calibration before/after; returns the numbers as a dict.

    ``spec`` (a :class:`medssl.registry.DatasetSpec` or a dataset key) says which class is
    positive. ``result["table_md"]`` is the ``P1_temp_scaling_table.md`` text; the P1 files
    (with the reliability diagrams) are written by :func:`medssl.decisions.write_temperature_scaling`.
    """
    from .registry import get_spec

    spec = get_spec(spec) if isinstance(spec, str) else spec
    pos = spec.positive_class if spec is not None else None
    ts = TemperatureScaler().fit(val_logits, val_labels)
    p_before, p_after = softmax(test_logits), ts.predict_proba(test_logits)
    k = p_before.shape[1]
    result = {
        "dataset": spec.key if spec is not None else "(unnamed)",
        "positive_class": pos if k == 2 else None,
        "positive_label": spec.positive_name if (spec is not None and k == 2) else None,
        "judged_on": (f"P({spec.positive_name}) (class {pos})" if (spec is not None and k == 2 and pos is not None)
                      else "top-label confidence"),
        "temperature": ts.temperature, "n_bins": n_bins, "n_val": len(val_labels), "n_test": len(test_labels),
        "val_nll_before": ts.nll_before, "val_nll_after": ts.nll_after, "fit": ts.to_dict(),
        "before": calibration_metrics(p_before, test_labels, pos, n_bins),
        "after": calibration_metrics(p_after, test_labels, pos, n_bins),
    }
    result["table_md"] = temperature_scaling_table(result)
    return result
