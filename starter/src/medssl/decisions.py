"""From scores to decisions (Week 7): ROC/PR curves, operating points, high-confidence errors.

Everything starts from saved logits, so it works for any model the library
trains (supervised, linear probe, fine-tuned SSL) or a student's own:

>>> report = decisions.analyse_run("runs/pneumo_w4", "results/week7/pneumoniamnist/me")

reads ``predictions.npz`` (val/test logits and labels) and ``config.json`` of a
training run and writes every Week-7 artifact (see :func:`analyse_predictions`).

Decisions are about the clinically *positive* class of the dataset (the finding
we must not miss: pneumonia, malignancy). ``score`` below always means
``P(positive)`` and ``y`` means "is positive" (1) or not (0). For BreastMNIST
the positive class is label 0 (malignant), so ``y = (label == 0)``: never
threshold ``p[:, 1]`` there. Every table says which class was positive.

A case is called positive when ``score >= threshold``. Thresholds are chosen on
the validation split and only then applied to the test split; choosing them on
test would report an optimistic operating point that no deployment could reproduce.
Thresholds are binary-only: a multi-class task raises :class:`UnsupportedTaskError`.

The threshold scan is written by hand (it is what the course teaches); the
curves and areas come from scikit-learn.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from .calibration import positive_probability, softmax, temperature_scaling_report
from .cli import add_common_args, run_cli
from .errors import CheckpointError, ConfigError, OutputExistsError, UnsupportedTaskError
from .registry import DatasetSpec, get_spec
from .utils import display_path, get_logger, save_figure, write_json, write_text

SUMMARY_FILE = "decisions_summary.json"
POINT_NAMES = ("target_tpr", "target_fpr", "youden", "max_f1", "default")


# ------------------------------------------------------------------ inputs
@dataclass
class Predictions:
    """Validation and test logits of one model, with what is needed to interpret them."""

    val_logits: np.ndarray
    val_labels: np.ndarray
    test_logits: np.ndarray
    test_labels: np.ndarray
    dataset: str
    size: int = 28
    root: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def spec(self) -> DatasetSpec:
        return get_spec(self.dataset)


def _run_config(run_dir: Path) -> dict:
    p = run_dir / "config.json"
    if not p.exists():
        return {}
    js = json.loads(p.read_text())
    return js.get("config", js) if isinstance(js, dict) else {}


def load_predictions(source: str | os.PathLike, dataset: str | None = None, root: str | None = None,
                     device=None) -> Predictions:
    """Logits from a run folder, a ``predictions.npz`` file, or a ``best.pt`` checkpoint.

    A run folder / npz is read as saved. A checkpoint is rebuilt with
    :func:`medssl.train.load_classifier` and run on the val and test splits, on
    ``device`` (default: ``"auto"``, the GPU when there is one), in float32.
    ``dataset`` is read from the run's ``config.json`` (or the checkpoint) when not given.
    """
    src = Path(source)
    if not src.exists():
        raise CheckpointError(f"{src} not found; pass a training run folder (with predictions.npz), a "
                              "predictions.npz file or a best.pt checkpoint.")
    if src.is_dir():
        npz, cfg = src / "predictions.npz", _run_config(src)
        if not npz.exists() and (src / "best.pt").exists():
            return load_predictions(src / "best.pt", dataset, root, device)
    elif src.suffix == ".npz":
        npz, cfg = src, _run_config(src.parent)
    elif src.suffix in (".pt", ".pth"):
        return _predictions_from_checkpoint(src, dataset, root, device)
    else:
        raise ConfigError(f"{src} is neither a run folder, a predictions.npz nor a best.pt checkpoint.")
    if not npz.exists():
        raise CheckpointError(f"{npz} not found. Train with `python -m medssl.train ... --out DIR` (it writes "
                              "predictions.npz), or pass the checkpoint best.pt instead.")
    with np.load(npz) as f:
        missing = [k for k in ("val_logits", "val_labels", "test_logits", "test_labels") if k not in f]
        if missing:
            raise CheckpointError(f"{npz} lacks {', '.join(missing)}; save val/test logits and labels under "
                                  "these names (np.savez(path, val_logits=..., val_labels=..., ...)).")
        arrays = {k: f[k] for k in ("val_logits", "val_labels", "test_logits", "test_labels")}
    dataset = dataset or cfg.get("dataset")
    if not dataset:
        raise ConfigError(f"cannot tell which dataset {src} belongs to (no config.json); pass dataset='...'.")
    return Predictions(**arrays, dataset=dataset, size=int(cfg.get("size", 28)), root=root or cfg.get("root"),
                       source=str(src), meta={"config": cfg})


def _predictions_from_checkpoint(path: Path, dataset: str | None, root: str | None, device) -> Predictions:
    from .train import load_run, predict_logits
    from .utils import resolve_device

    r = load_run(path, dataset, root, resolve_device(device))
    val, test = r.splits["val"], r.splits["test"]
    return Predictions(predict_logits(r.model, val.images), val.labels, predict_logits(r.model, test.images),
                       test.labels, dataset=r.dataset, size=r.size, root=r.root, source=str(path),
                       meta={"config": r.checkpoint.get("config", {}) or {}})


# ------------------------------------------------------------- binary scores
def require_binary(spec: DatasetSpec | None, n_classes: int, what: str = "thresholds") -> int:
    """The positive class of a binary task; a clear error for multi-class tasks."""
    if n_classes != 2 or (spec is not None and spec.positive_class is None):
        name = spec.key if spec is not None else f"a {n_classes}-class task"
        raise UnsupportedTaskError(
            f"{what} are binary-only: they decide 'positive or not' for one clinically positive class, and "
            f"{name} has {n_classes} classes. For multi-class tasks use calibration (temperature scaling, ECE) "
            "and robustness, or binarise the task yourself (one class vs the rest) and pass P(that class).")
    return 1 if spec is None else int(spec.positive_class)


def binary_scores(probs: np.ndarray, labels: np.ndarray, spec: DatasetSpec | None = None,
                  positive_class: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(P(positive), y)`` from (N, 2) probabilities and labels; ``y`` is 1 for the positive class."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ConfigError(f"expected class probabilities of shape (N, K), got {probs.shape}.")
    pos = require_binary(spec, probs.shape[1])
    pos = pos if positive_class is None else positive_class
    return positive_probability(probs, pos), (np.asarray(labels) == pos).astype(np.int64)


def _check_scores(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y)
    if scores.ndim != 1:
        raise UnsupportedTaskError(
            f"thresholds are binary-only and need one score per case (P(positive)), got shape {scores.shape}. "
            "Use decisions.binary_scores(probs, labels, spec) first.")
    if len(scores) != len(y):
        raise ConfigError(f"{len(scores)} scores but {len(y)} labels.")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:  # bools compare equal to 0/1
        raise UnsupportedTaskError(
            f"thresholds are binary-only; y must be 1 (positive) / 0 (negative), got labels {sorted(values)}. "
            "Use decisions.binary_scores(probs, labels, spec) to turn labels into 'is positive'.")
    y = y.astype(np.int64)
    if y.min() == y.max():
        raise ConfigError("choosing a threshold needs both positive and negative cases in the split.")
    return scores, y


def threshold_scan(scores: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every distinct threshold, from strict to lenient, with the counts it gives.

    Sorting the scores from high to low and lowering the threshold one distinct
    score at a time adds cases to "called positive": the cumulative sums of
    ``y`` and ``1 - y`` are the true and false positives. The first row is a
    threshold just above the highest score (nobody called positive).
    """
    scores, y = _check_scores(scores, y)
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order]
    tp, fp = np.cumsum(yy), np.cumsum(1 - yy)
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    top = float(np.nextafter(s[0], np.inf))
    thr = np.r_[top, s[last_of_tie]]
    tp, fp = np.r_[0, tp[last_of_tie]], np.r_[0, fp[last_of_tie]]
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    fn = n_pos - tp
    return {"threshold": thr, "tp": tp, "fp": fp, "fn": fn, "tn": n_neg - fp,
            "tpr": tp / n_pos, "fpr": fp / n_neg, "f1": 2 * tp / np.maximum(2 * tp + fp + fn, 1)}


def threshold_for_tpr(scores: np.ndarray, y: np.ndarray, target: float = 0.9) -> float:
    """The highest threshold whose sensitivity (TPR) reaches ``target``: fewest false alarms for that sensitivity."""
    if not 0 < target <= 1:
        raise ConfigError(f"target TPR must be in (0, 1], got {target}.")
    scan = threshold_scan(scores, y)
    return float(scan["threshold"][np.flatnonzero(scan["tpr"] >= target - 1e-12)[0]])


def threshold_for_fpr(scores: np.ndarray, y: np.ndarray, target: float = 0.1) -> float:
    """The lowest threshold whose false-positive rate stays at or below ``target``: most sensitive within budget."""
    if not 0 <= target < 1:
        raise ConfigError(f"target FPR must be in [0, 1), got {target}.")
    scan = threshold_scan(scores, y)
    return float(scan["threshold"][np.flatnonzero(scan["fpr"] <= target + 1e-12)[-1]])


def youden_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold maximising Youden's J = TPR - FPR (= sensitivity + specificity - 1); the strictest on ties."""
    scan = threshold_scan(scores, y)
    return float(scan["threshold"][np.argmax(scan["tpr"] - scan["fpr"])])


def max_f1_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold maximising F1 of the positive class; the strictest on ties."""
    scan = threshold_scan(scores, y)
    return float(scan["threshold"][np.argmax(scan["f1"])])


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def metrics_at_threshold(scores: np.ndarray, y: np.ndarray, threshold: float,
                         positive_class: int = 1) -> dict:
    """Sensitivity, specificity, PPV, NPV, F1, accuracy and counts when calling ``score >= threshold`` positive.

    ``confusion_matrix`` is in label order (row = true label, column = predicted
    label), like ``test_metrics.json``; ``positive_class`` says where the positive row is.
    """
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
    pred = scores >= threshold
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    sens, spec = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    cm_pos_first = [[tp, fn], [fp, tn]]
    cm = cm_pos_first if positive_class == 0 else [[tn, fp], [fn, tp]]
    return {"threshold": float(threshold), "sensitivity": sens, "specificity": spec,
            "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "accuracy": _ratio(tp + tn, len(y)), "balanced_accuracy": (sens + spec) / 2,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": int(len(y)), "confusion_matrix": cm}


# ------------------------------------------------------------- operating points
@dataclass
class OperatingPoint:
    name: str
    rule: str
    threshold: float
    val: dict
    test: dict | None = None

    def row(self) -> dict:
        r = {"point": self.name, "rule": self.rule, "threshold": self.threshold,
             "val_tpr": self.val["sensitivity"], "val_fpr": 1 - self.val["specificity"]}
        if self.test is not None:
            r.update({f"test_{k}": self.test[k] for k in ("sensitivity", "specificity", "ppv", "npv", "f1",
                                                          "accuracy", "tp", "fp", "tn", "fn")})
        return r


def default_threshold(positive_class: int = 1) -> float:
    """The untuned "0.5" threshold on P(positive) that makes the same calls as the arg-max of ``test_metrics.json``.

    Calls are ``P(positive) >= threshold``; the arg-max gives an exact 50/50 tie
    to class 0. With positive class 0 that is ``P(positive) >= 0.5``; with
    positive class 1 a tie must stay negative, so the threshold is the next
    float above 0.5 (``P(positive) > 0.5``).
    """
    if positive_class not in (0, 1):
        raise ConfigError(f"the positive class of a binary task is 0 or 1, got {positive_class!r}.")
    return 0.5 if positive_class == 0 else float(np.nextafter(0.5, 1.0))


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _custom_threshold(threshold_fn, val_scores: np.ndarray, val_y: np.ndarray, metric: str, target: float) -> float:
    """``threshold_fn(val_scores, val_y, metric, target)`` on copies of the validation data, checked to be a number."""
    t = threshold_fn(np.array(val_scores, dtype=np.float64), np.array(val_y), metric, target)
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ConfigError(f"{_fn_name(threshold_fn)} must return a threshold (a number), got {t!r}.") from None
    if not np.isfinite(t):
        raise ConfigError(f"{_fn_name(threshold_fn)} returned {t} for {metric} target {target:g}.")
    return t


def choose_thresholds(val_scores: np.ndarray, val_y: np.ndarray, target_tpr: float | None = 0.9,
                      target_fpr: float | None = 0.1, youden: bool = True, max_f1: bool = True,
                      default: bool = True, positive_class: int = 1,
                      threshold_fn=None) -> dict[str, tuple[str, float]]:
    """``{name: (rule, threshold)}`` chosen on the validation scores.

    ``default`` is the untuned 0.5 point, tie rule included exactly as in the
    arg-max of ``test_metrics.json`` (:func:`default_threshold`; hence ``positive_class``).
    ``threshold_fn(val_scores, val_y, metric, target)`` (``metric`` "tpr" or "fpr") replaces
    :func:`threshold_for_tpr` / :func:`threshold_for_fpr` for the two target points; it is only
    ever given the validation scores and labels, and its name is added to those points' rules.
    """
    out: dict[str, tuple[str, float]] = {}
    by = "" if threshold_fn is None else f" (by {_fn_name(threshold_fn)})"
    if target_tpr is not None:
        if threshold_fn is not None and not 0 < target_tpr <= 1:
            raise ConfigError(f"target TPR must be in (0, 1], got {target_tpr}.")
        out["target_tpr"] = (f"highest threshold with val TPR >= {target_tpr:g}{by}",
                             threshold_for_tpr(val_scores, val_y, target_tpr) if threshold_fn is None else
                             _custom_threshold(threshold_fn, val_scores, val_y, "tpr", target_tpr))
    if target_fpr is not None:
        if threshold_fn is not None and not 0 <= target_fpr < 1:
            raise ConfigError(f"target FPR must be in [0, 1), got {target_fpr}.")
        out["target_fpr"] = (f"lowest threshold with val FPR <= {target_fpr:g}{by}",
                             threshold_for_fpr(val_scores, val_y, target_fpr) if threshold_fn is None else
                             _custom_threshold(threshold_fn, val_scores, val_y, "fpr", target_fpr))
    if youden:
        out["youden"] = ("max Youden J = TPR - FPR on val", youden_threshold(val_scores, val_y))
    if max_f1:
        out["max_f1"] = ("max F1 (positive class) on val", max_f1_threshold(val_scores, val_y))
    if default:
        _check_scores(val_scores, val_y)
        tie = "a 50/50 tie is called positive" if positive_class == 0 else "a 50/50 tie is called negative"
        out["default"] = (f"fixed 0.5 (no tuning; reference; {tie}, as the arg-max of test_metrics.json)",
                          default_threshold(positive_class))
    return out


def operating_points(val_scores: np.ndarray, val_y: np.ndarray, test_scores: np.ndarray | None = None,
                     test_y: np.ndarray | None = None, positive_class: int = 1, **choose_kw) -> list[OperatingPoint]:
    """Choose thresholds on validation (:func:`choose_thresholds`), then measure each on test."""
    pts = []
    for name, (rule, t) in choose_thresholds(val_scores, val_y, positive_class=positive_class,
                                             **choose_kw).items():
        val_m = metrics_at_threshold(val_scores, val_y, t, positive_class)
        test_m = None if test_scores is None else metrics_at_threshold(test_scores, test_y, t, positive_class)
        pts.append(OperatingPoint(name, rule, t, val_m, test_m))
    return pts


def _fmt(v, digits: int = 4) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if np.isnan(v) else f"{v:.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: pd.DataFrame | Sequence[Mapping], digits: int = 4) -> str:
    """A GitHub markdown table from a DataFrame or a list of dicts (no extra dependency)."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def positive_note(spec: DatasetSpec) -> str:
    neg = [f"{k} = {v}" for k, v in spec.labels.items() if k != spec.positive_class]
    return (f"Positive class: **{spec.positive_class} = {spec.positive_name}** (negative: {', '.join(neg)}). "
            f"A case is called positive when P({spec.positive_name}) >= threshold.")


def operating_point_table(points: Sequence[OperatingPoint], spec: DatasetSpec, n_val: int | None = None,
                          n_test: int | None = None) -> str:
    """``operating_point_table.md``: thresholds chosen on val, metrics on test, positive class stated."""
    head = [f"# Operating points on {spec.key}", "", positive_note(spec),
            f"Thresholds chosen on the validation split{f' (n={n_val})' if n_val else ''}; "
            f"metrics measured on the test split{f' (n={n_test})' if n_test else ''}.", ""]
    rows = []
    for p in points:
        r = {"point": p.name, "rule (on val)": p.rule, f"threshold on P({spec.positive_name})": p.threshold,
             "val TPR": p.val["sensitivity"], "val FPR": 1 - p.val["specificity"]}
        if p.test is not None:
            t = p.test
            r.update({"sensitivity": t["sensitivity"], "specificity": t["specificity"], "PPV": t["ppv"],
                      "NPV": t["npv"], "F1": t["f1"], "TP": t["tp"], "FP": t["fp"], "TN": t["tn"], "FN": t["fn"]})
        rows.append(r)
    foot = ["", "Sensitivity = TPR = TP/(TP+FN); specificity = TN/(TN+FP) = 1 - FPR; PPV = TP/(TP+FP); "
                "NPV = TN/(TN+FN). Test columns use the test split only.", ""]
    return "\n".join(head) + "\n" + markdown_table(rows) + "\n".join(foot)


# ------------------------------------------------------------------ curves
def roc_pr(scores: np.ndarray, y: np.ndarray) -> dict:
    """ROC and precision-recall curves of P(positive) (scikit-learn), with AUROC and average precision."""
    scores, y = _check_scores(scores, y)
    fpr, tpr, thr = roc_curve(y, scores)
    prec, rec, pr_thr = precision_recall_curve(y, scores)
    return {"fpr": fpr, "tpr": tpr, "roc_thresholds": thr, "precision": prec, "recall": rec,
            "pr_thresholds": pr_thr, "auroc": float(roc_auc_score(y, scores)),
            "average_precision": float(average_precision_score(y, scores)), "prevalence": float(y.mean())}


# ------------------------------------------------------------ error gallery
def high_confidence_errors(scores: np.ndarray, y: np.ndarray, threshold: float, k: int = 5) -> pd.DataFrame:
    """The ``k`` most confident false positives and false negatives at ``threshold``.

    A false positive (negative case with ``score >= threshold``) is more
    confident the higher its P(positive); a false negative (positive case below
    the threshold) the lower. Rows: kind, rank, index (into the split), p_positive,
    confidence (probability given to the wrong call).
    """
    scores, y = _check_scores(scores, y)
    pred = scores >= threshold
    fp = np.flatnonzero(pred & (y == 0))
    fn = np.flatnonzero(~pred & (y == 1))
    fp = fp[np.argsort(-scores[fp], kind="stable")][:k]
    fn = fn[np.argsort(scores[fn], kind="stable")][:k]
    return errors_frame(scores, fp, fn)


def errors_frame(scores: np.ndarray, fp, fn) -> pd.DataFrame:
    """The error table of :func:`high_confidence_errors` for given FP and FN indices (each most confident first)."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = [{"kind": "FP", "rank": r + 1, "index": int(i), "p_positive": float(scores[i]),
             "confidence": float(scores[i])} for r, i in enumerate(fp)]
    rows += [{"kind": "FN", "rank": r + 1, "index": int(i), "p_positive": float(scores[i]),
              "confidence": float(1 - scores[i])} for r, i in enumerate(fn)]
    return pd.DataFrame(rows, columns=["kind", "rank", "index", "p_positive", "confidence"])


def custom_errors(errors_fn, scores: np.ndarray, y: np.ndarray, threshold: float, k: int) -> pd.DataFrame:
    """:func:`high_confidence_errors` through ``errors_fn(scores, y, threshold, k) -> {"FP": idx, "FN": idx}``.

    The selection is checked: the FP indices must be negatives called positive, the FN
    indices positives called negative, at most ``k`` of each, no repeats.
    """
    scores, y = _check_scores(scores, y)
    sel = errors_fn(scores.copy(), y.copy(), float(threshold), int(k))
    name = _fn_name(errors_fn)
    if not isinstance(sel, Mapping) or not {"FP", "FN"} <= set(sel):
        raise ConfigError(f"{name} must return {{'FP': indices, 'FN': indices}}, got {type(sel).__name__}.")
    pred = scores >= threshold
    out = {}
    for kind, ok in (("FP", pred & (y == 0)), ("FN", ~pred & (y == 1))):
        idx = np.asarray(sel[kind]).reshape(-1)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ConfigError(f"{name}: {kind} must be integer indices, got {idx.dtype}.")
        idx = idx.astype(np.int64)
        if len(idx) > k or len(np.unique(idx)) != len(idx) or (idx.size and (idx.min() < 0 or idx.max() >= len(y))):
            raise ConfigError(f"{name}: {kind} must be at most {k} distinct indices into the {len(y)} cases.")
        if idx.size and not ok[idx].all():
            raise ConfigError(f"{name}: index {int(idx[~ok[idx]][0])} is not a {kind} at threshold {threshold:.4f}.")
        out[kind] = idx
    return errors_frame(scores, out["FP"], out["FN"])


def top_label_errors(probs: np.ndarray, labels: np.ndarray, k: int = 10) -> pd.DataFrame:
    """Multi-class counterpart: the ``k`` misclassified cases with the highest top-label confidence."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(int)
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:k]
    return pd.DataFrame([{"kind": "error", "rank": r + 1, "index": int(i), "pred": int(pred[i]),
                          "confidence": float(conf[i]), "p_true": float(probs[i, labels[i]])}
                         for r, i in enumerate(wrong)],
                        columns=["kind", "rank", "index", "pred", "confidence", "p_true"])


def error_table(errors: pd.DataFrame, labels: np.ndarray, spec: DatasetSpec, threshold: float | None = None,
                split: str = "test") -> str:
    """Markdown table of high-confidence errors with an empty ``notes`` column for the student's comment."""
    rows = []
    for e in errors.itertuples(index=False):
        true = int(labels[e.index])
        if e.kind in ("FP", "FN"):
            pred_lab = spec.positive_class if e.kind == "FP" else 1 - spec.positive_class
            rows.append({"kind": e.kind, "rank": e.rank, f"{split} index": e.index,
                         f"P({spec.positive_name})": e.p_positive, "true": f"{true} ({spec.labels[true]})",
                         "predicted": f"{pred_lab} ({spec.labels[pred_lab]})", "notes": ""})
        else:
            rows.append({"kind": e.kind, "rank": e.rank, f"{split} index": e.index, "confidence": e.confidence,
                         "true": f"{true} ({spec.labels[true]})", "predicted": f"{e.pred} ({spec.labels[e.pred]})",
                         "notes": ""})
    if spec.positive_class is not None and threshold is not None:
        intro = (f"{positive_note(spec)} Threshold = {threshold:.4f}. FP = called {spec.positive_name} but is not "
                 f"(ranked by P({spec.positive_name}), highest first); FN = missed {spec.positive_name} "
                 f"(ranked by P({spec.positive_name}), lowest first).")
    else:
        intro = "Misclassified cases ranked by top-label confidence (multi-class task: no threshold)."
    body = markdown_table(rows) if rows else "(no errors of this kind)\n"
    return (f"# High-confidence errors on {spec.key} ({split})\n\n{intro}\n\n{body}\n"
            "Fill the notes column with one line per case (e.g. low contrast, borderline, artifact, label noise?).\n")


def _error_captions(errors: pd.DataFrame, labels: np.ndarray, spec: DatasetSpec) -> list[str]:
    caps = []
    for e in errors.itertuples(index=False):
        if e.kind in ("FP", "FN"):
            caps.append(f"{e.kind}{e.rank} #{e.index}\nP({spec.positive_name})={e.p_positive:.3f}\n"
                        f"true {spec.labels[int(labels[e.index])]}")
        else:
            caps.append(f"#{e.index} conf={e.confidence:.3f}\ntrue {spec.labels[int(labels[e.index])]}\n"
                        f"pred {spec.labels[e.pred]}")
    return caps


def error_gallery_figure(images: np.ndarray, errors: pd.DataFrame, labels: np.ndarray, spec: DatasetSpec,
                         title: str | None = None):
    """FP row and FN row (or one row of top-label errors) of images with probability and true label."""
    from .plots import labelled_rows_grid

    caps = _error_captions(errors, labels, spec)
    if spec.positive_class is not None:
        groups = {"FP": f"false positives (called {spec.positive_name})",
                  "FN": f"false negatives (missed {spec.positive_name})"}
    else:
        groups = {"error": "misclassified, most confident first"}
    kinds, idx = errors["kind"].to_numpy(), errors["index"].to_numpy().astype(int)
    rows = {}
    for kind, name in groups.items():
        sel = np.flatnonzero(kinds == kind)
        rows[name] = (np.asarray(images)[idx[sel]], [caps[i] for i in sel])
    return labelled_rows_grid(rows, title=title)


# ------------------------------------------------------------------ output folders
def claim_out_dir(out: str | os.PathLike, summary_name: str, overwrite: bool = False) -> Path:
    """Create ``out``; refuse when ``summary_name`` from an earlier analysis is there (unless ``overwrite``).

    With ``overwrite`` only the files the earlier analysis listed in its summary
    are removed, so other results in the same folder are left alone.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is a file, not a folder. Choose another output folder.")
    summary = out / summary_name
    if summary.exists():
        if not overwrite:
            raise OutputExistsError(f"{out} already holds an earlier analysis ({summary_name}). Choose another "
                                    "output folder, or pass overwrite=True (--overwrite) to replace it.")
        try:
            old = json.loads(summary.read_text()).get("files", [])
        except (OSError, ValueError):
            old = []
        for name in [*old, summary_name]:
            p = out / name
            if p.is_file() and p.parent == out:
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------ the temperature-scaling files (task P1)
def write_temperature_scaling(result: Mapping, test_logits: np.ndarray, test_labels: np.ndarray,
                              out_dir: str | os.PathLike, prefix: str = "P1_") -> list[str]:
    """The files of a :func:`medssl.calibration.temperature_scaling_report` result; returns their names.

    ``P1_temp_scaling_table.md``, ``P1_temp_scaling.json``, the test split's reliability diagrams before and
    after scaling (``P1_reliability_before.png``, ``P1_reliability_after.png``) and both on one figure
    (``P1_reliability_before_after.png``). ``test_logits`` / ``test_labels`` are the ones the report used.
    """
    from .plots import reliability_diagram

    out = Path(out_dir)
    t, pos, name, n_bins = result["temperature"], result["positive_class"], result["positive_label"], result["n_bins"]
    p_before, p_after = softmax(test_logits), softmax(np.asarray(test_logits, dtype=np.float64) / t)
    what = f"{result['dataset']} test"
    files = [f"{prefix}temp_scaling_table.md", f"{prefix}temp_scaling.json"]
    write_text(out / files[0], result["table_md"])
    write_json(out / files[1], {k: v for k, v in result.items() if k != "table_md"})
    for stem, probs, title in (("before", p_before, f"{what}: before (T=1)"),
                               ("after", p_after, f"{what}: after (T={t:.3f})"),
                               ("before_after", {"before (T=1)": p_before, f"after (T={t:.3f})": p_after},
                                f"{what}: temperature scaling")):
        files.append(f"{prefix}reliability_{stem}.png")
        save_figure(reliability_diagram(probs, test_labels, pos, n_bins, title, name), out / files[-1])
    return files


# ------------------------------------------------------------------ the whole Week-7 analysis
def analyse_predictions(val_logits: np.ndarray, val_labels: np.ndarray, test_logits: np.ndarray,
                        test_labels: np.ndarray, spec: DatasetSpec | str, out_dir: str | os.PathLike,
                        test_images: np.ndarray | None = None, target_tpr: float = 0.9, target_fpr: float = 0.1,
                        decision_point: str = "youden", k: int = 5, n_bins: int = 15, overwrite: bool = False,
                        source: str | None = None, threshold_fn=None, errors_fn=None) -> dict:
    """Calibration, curves, operating points and the error gallery from val/test logits, written to ``out_dir``.

    Files: ``P1_temp_scaling_table.md`` (+ json, reliability before/after PNGs),
    ``roc_curve.png``, ``pr_curve.png``, ``operating_point_table.md``,
    ``operating_points.csv``, ``cm_<point>.png`` per operating point,
    ``high_conf_error_gallery.png`` (when ``test_images`` is given),
    ``high_conf_errors.md`` and ``decisions_summary.json`` (every parameter and number).
    The gallery uses the ``decision_point`` threshold (one of ``target_tpr``,
    ``target_fpr``, ``youden``, ``max_f1``, ``default``). Multi-class tasks get the
    calibration part and a top-label error gallery; operating points are skipped
    (they are binary-only). Returns the numbers (tables as DataFrames).

    Two steps can be one's own (the Week 7 exercises): ``threshold_fn(val_scores, val_y, metric, target)``
    chooses the target-TPR / target-FPR thresholds (:func:`choose_thresholds`; validation data only) and
    ``errors_fn(test_scores, test_y, threshold, k) -> {"FP": idx, "FN": idx}`` selects the gallery's
    errors (:func:`custom_errors`). Their names are recorded in the summary's ``params["custom"]``.
    """
    from .plots import confusion_matrix_figure, pr_curve_figure, roc_curve_figure

    spec = get_spec(spec) if isinstance(spec, str) else spec
    if decision_point not in POINT_NAMES:
        raise ConfigError(f"decision_point must be one of {', '.join(POINT_NAMES)}, got {decision_point!r}.")
    val_logits, test_logits = np.asarray(val_logits), np.asarray(test_logits)
    test_labels = np.asarray(test_labels).astype(int)
    if test_images is not None and len(test_images) != len(test_labels):
        raise ConfigError(f"{len(test_images)} test images but {len(test_labels)} test labels; pass the same split.")
    if test_logits.shape[1] != spec.n_classes:
        raise ConfigError(f"logits have {test_logits.shape[1]} classes but {spec.key} has {spec.n_classes}; "
                          "is this the right dataset?")
    out = claim_out_dir(out_dir, SUMMARY_FILE, overwrite)
    files: list[str] = []

    def save(fig, name):
        save_figure(fig, out / name)
        files.append(name)

    cal = temperature_scaling_report(val_logits, val_labels, test_logits, test_labels, spec, n_bins)
    files += write_temperature_scaling(cal, test_logits, test_labels, out)
    p_val, p_test = softmax(val_logits), softmax(test_logits)
    report: dict = {"dataset": spec.key, "source": source, "positive_class": spec.positive_class,
                    "positive_label": spec.positive_name, "n_val": len(val_labels), "n_test": len(test_labels),
                    "calibration": {k_: v for k_, v in cal.items() if k_ != "table_md"},
                    "params": {"target_tpr": target_tpr, "target_fpr": target_fpr, "decision_point": decision_point,
                               "k": k, "n_bins": n_bins, "rule": "positive when P(positive) >= threshold",
                               "thresholds_chosen_on": "val", "probabilities": "uncalibrated softmax(logits)"}}
    custom = {k_: _fn_name(f) for k_, f in (("threshold_fn", threshold_fn), ("errors_fn", errors_fn)) if f is not None}
    if custom:
        report["params"]["custom"] = custom
    binary = spec.n_classes == 2 and spec.positive_class is not None
    if binary:
        pos = spec.positive_class
        vs, vy = binary_scores(p_val, val_labels, spec)
        ts, ty = binary_scores(p_test, test_labels, spec)
        pts = operating_points(vs, vy, ts, ty, pos, target_tpr=target_tpr, target_fpr=target_fpr,
                               threshold_fn=threshold_fn)
        curves = roc_pr(ts, ty)
        val_curves = roc_pr(vs, vy)
        marks = {p.name: (1 - p.test["specificity"], p.test["sensitivity"], p.test["ppv"]) for p in pts}
        what = f"{spec.key} test, positive = {pos} ({spec.positive_name})"
        save(roc_curve_figure(curves["fpr"], curves["tpr"], curves["auroc"], marks, what), "roc_curve.png")
        save(pr_curve_figure(curves["recall"], curves["precision"], curves["average_precision"],
                             curves["prevalence"], marks, what), "pr_curve.png")
        names = [f"{c} ({n}){' +' if c == pos else ''}" for c, n in spec.labels.items()]
        for p in pts:
            title = f"{p.name}: P({spec.positive_name}) >= {p.threshold:.3f}\n(test; + = positive)"
            save(confusion_matrix_figure(p.test["confusion_matrix"], names, title), f"cm_{p.name}.png")
        table = operating_point_table(pts, spec, len(val_labels), len(test_labels))
        write_text(out / "operating_point_table.md", table)
        op_df = pd.DataFrame([p.row() for p in pts])
        op_df.insert(0, "positive_class", f"{pos} ({spec.positive_name})")
        op_df.to_csv(out / "operating_points.csv", index=False)
        files += ["operating_point_table.md", "operating_points.csv"]
        chosen = next(p for p in pts if p.name == decision_point)
        errors = (high_confidence_errors(ts, ty, chosen.threshold, k) if errors_fn is None
                  else custom_errors(errors_fn, ts, ty, chosen.threshold, k))
        report.update({
            "curves": {"test_auroc": curves["auroc"], "test_average_precision": curves["average_precision"],
                       "test_prevalence": curves["prevalence"], "val_auroc": val_curves["auroc"],
                       "val_average_precision": val_curves["average_precision"]},
            "operating_points": op_df, "operating_point_table_md": table,
            "points": {p.name: {"rule": p.rule, "threshold": p.threshold, "val": p.val, "test": p.test} for p in pts},
            "decision_point": decision_point, "threshold": chosen.threshold})
        err_split_note = chosen.threshold
    else:
        errors = top_label_errors(p_test, test_labels, 2 * k)
        report.update({"operating_points": None, "decision_point": None, "threshold": None,
                       "note": f"{spec.key} is multi-class: operating points and ROC/PR are binary-only and were "
                               "skipped; the gallery shows top-label errors."})
        err_split_note = None
    write_text(out / "high_conf_errors.md", error_table(errors, test_labels, spec, err_split_note))
    files.append("high_conf_errors.md")
    if test_images is not None:
        save(error_gallery_figure(test_images, errors, test_labels, spec,
                                  f"{spec.key}: high-confidence errors (test)"), "high_conf_error_gallery.png")
    report["errors"] = errors
    report["files"] = files
    summary = {k_: (v.to_dict(orient="records") if isinstance(v, pd.DataFrame) else v) for k_, v in report.items()
               if k_ != "operating_point_table_md"}
    write_json(out / SUMMARY_FILE, summary)
    report["out_dir"] = str(out)
    get_logger().info("decisions for %s written to %s (%d files)", spec.key, display_path(out), len(files) + 1)
    return report


def analyse_run(source: str | os.PathLike, out_dir: str | os.PathLike, dataset: str | None = None,
                root: str | None = None, with_images: bool = True, device=None, **kw) -> dict:
    """:func:`analyse_predictions` for a training run folder, a ``predictions.npz`` or a ``best.pt``.

    The test images for the error gallery are loaded from the dataset (``$MEDMNIST_ROOT``)
    and checked against the saved test labels.
    """
    from .data import load_split

    pr = load_predictions(source, dataset, root, device)
    images = None
    if with_images:
        test = load_split(pr.dataset, "test", size=pr.size, root=pr.root)
        if len(test) != len(pr.test_labels) or not np.array_equal(test.labels, pr.test_labels):
            raise ConfigError(f"the test labels in {source} do not match {pr.dataset} ({pr.size}px) test split; "
                              "pass dataset= / root= for the data the model was evaluated on.")
        images = test.images
    return analyse_predictions(pr.val_logits, pr.val_labels, pr.test_logits, pr.test_labels, pr.spec, out_dir,
                               test_images=images, source=str(source), **kw)


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.decisions",
                                description="Week-7 analysis of a trained run: temperature scaling, ROC/PR, "
                                            "operating points, high-confidence errors.")
    add_common_args(p)
    p.add_argument("--run", required=True, help="training run folder (predictions.npz) or best.pt")
    p.add_argument("--target-tpr", type=float, default=0.9)
    p.add_argument("--target-fpr", type=float, default=0.1)
    p.add_argument("--decision-point", default="youden", choices=POINT_NAMES)
    p.add_argument("--k", type=int, default=5, help="errors of each kind in the gallery")
    p.add_argument("--n-bins", type=int, default=15)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    r = analyse_run(a.run, a.out, dataset=a.dataset, root=a.root, device=a.device, target_tpr=a.target_tpr,
                    target_fpr=a.target_fpr, decision_point=a.decision_point, k=a.k, n_bins=a.n_bins,
                    overwrite=a.overwrite)
    c = r["calibration"]
    print(f"[{r['dataset']}] T={c['temperature']:.3f} test ECE {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}"
          + (f" | {r['decision_point']} threshold {r['threshold']:.4f}" if r["threshold"] is not None else "")
          + f" -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
