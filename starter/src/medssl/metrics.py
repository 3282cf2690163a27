"""Classification metrics, computed with scikit-learn where it has them.

``classification_metrics`` is what every run writes into its metrics JSON.
Accuracy is the arg-max accuracy (for two classes: p(class 1) > 0.5) and
AUROC is computed as medmnist's ``Evaluator`` does, so numbers compare with
the MedMNIST v2 benchmark tables (:func:`auroc`, defined in :mod:`medssl.calibration`,
which reports it next to the calibration scores; this module builds on that one).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from .calibration import auroc, expected_calibration_error
from .registry import DatasetSpec

# The keys every metrics JSON carries (checked by the submission checker and the tests).
CORE_METRIC_KEYS = ("acc", "auroc", "ece", "f1_macro", "precision", "recall", "confusion_matrix", "n_per_class")


def classification_metrics(labels: np.ndarray, probs: np.ndarray, spec: DatasetSpec | None = None,
                           n_bins: int = 15) -> dict:
    """All headline metrics for one split from class probabilities of shape (N, K)."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    pos = spec.positive_class if spec is not None else (1 if k == 2 else None)
    pred = probs.argmax(axis=1)
    classes = np.arange(k)
    out = {
        "acc": float(accuracy_score(labels, pred)),
        "auroc": auroc(labels, probs, pos),
        "ece": expected_calibration_error(probs, labels, n_bins=n_bins, positive_class=pos),
        "f1_macro": float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0)),
        "precision": float(precision_score(labels, pred, labels=classes, average="macro", zero_division=0)),
        "recall": float(recall_score(labels, pred, labels=classes, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(labels, pred, labels=classes).tolist(),
        "n_per_class": np.bincount(labels, minlength=k).tolist(),
        "n": int(len(labels)),
        "ece_n_bins": n_bins,
        "ece_on": "positive-class probability" if (k == 2 and pos is not None) else "top-label confidence",
        "positive_class": pos,
        "positive_label": None if (spec is None or pos is None) else spec.labels[pos],
    }
    if k == 2 and pos is not None:
        y = labels == pos
        yhat = pred == pos
        tp, fn = int(np.sum(y & yhat)), int(np.sum(y & ~yhat))
        tn, fp = int(np.sum(~y & ~yhat)), int(np.sum(~y & yhat))
        out.update({
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "ppv": tp / (tp + fp) if tp + fp else float("nan"),
            "npv": tn / (tn + fn) if tn + fn else float("nan"),
            "threshold": 0.5,
        })
    return out


def format_summary(m: dict) -> str:
    """One line: acc, AUROC, ECE, macro-F1 (and which class was positive)."""
    s = f"acc={m['acc']:.4f} auroc={m['auroc']:.4f} ece={m['ece']:.4f} f1_macro={m['f1_macro']:.4f}"
    if m.get("positive_label") is not None:
        s += f" (positive: {m['positive_class']}={m['positive_label']})"
    return s
