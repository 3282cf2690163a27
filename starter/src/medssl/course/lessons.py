"""What the lessons show next to the library's output: galleries of misclassified images, the error taxonomy
of Week 7 (tasks P4 / B5), and the label-fraction and bar figures of Weeks 5-6."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..plots import label_fraction_axis


def misclassified(labels: np.ndarray, probs: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` most confidently misclassified samples (highest top-label probability)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong].max(1), kind="stable")
    return wrong[order[:k]]


def gallery_captions(idx: Sequence[int], labels: np.ndarray, probs: np.ndarray, spec) -> list[str]:
    """``true / predicted / P(positive)`` under each image."""
    from ..calibration import positive_probability

    pos = spec.positive_class
    out = []
    for i in idx:
        line = f"#{i} true: {spec.labels[int(labels[i])]}\npred: {spec.labels[int(probs[i].argmax())]}"
        if pos is not None and probs.shape[1] == 2:
            line += f"\nP({spec.labels[pos]})={positive_probability(probs[i:i + 1], pos)[0]:.2f}"
        out.append(line)
    return out


ERROR_GROUPS = ("TP", "TN", "FP", "FN")
HIGH_CONFIDENCE = 0.9  # error_taxonomy_table: a call is confident when its class got at least this probability


def outcome_groups(scores: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """``TP`` / ``TN`` / ``FP`` / ``FN`` per case, calling ``score >= threshold`` positive (``y``: 1 = positive)."""
    pred, y = np.asarray(scores) >= threshold, np.asarray(y).astype(bool)
    return np.where(pred, np.where(y, "TP", "FP"), np.where(y, "FN", "TN"))


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (uint8, (N, C, H, W)), on a 0-1 scale: ``brightness`` (mean), ``contrast`` (standard deviation)
    and ``dark_area`` (fraction of pixels darker than the image's mean minus one standard deviation: a rough
    size of a dark region such as a hypoechoic lesion or an opacity-free lung field)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    mean, std = x.mean(1), x.std(1)
    return {"brightness": mean, "contrast": std, "dark_area": (x < (mean - std)[:, None]).mean(1)}


def error_taxonomy_table(images: np.ndarray, scores: np.ndarray, y: np.ndarray, threshold: float,
                         confidence: float = HIGH_CONFIDENCE) -> list[dict]:
    """Image statistics of correct calls vs false positives vs false negatives (mean and std per group).

    ``high-confidence`` counts the group's cases where the model gave the class it called a probability of at
    least ``confidence``: ``score >= confidence`` for a positive call, ``1 - score >= confidence`` for a negative
    one (errors the model was sure of). The rule does not depend on where the threshold sits: a distance from
    the threshold could not count any positive call once the threshold is near 1.
    """
    if not 0.5 <= confidence <= 1.0:
        raise ConfigError(f"confidence must be in [0.5, 1] (a probability of the called class), got {confidence}")
    groups = outcome_groups(scores, y, threshold)
    stats = image_statistics(images)
    scores = np.asarray(scores, dtype=np.float64)
    sure = np.where(scores >= threshold, scores >= confidence, 1.0 - scores >= confidence)
    rows = []
    for g in ERROR_GROUPS:
        m = groups == g
        row: dict = {"group": g, "n": int(m.sum()),
                     "high-confidence": int((m & sure).sum())}
        for k, v in stats.items():
            row[f"{k} mean"] = float(v[m].mean()) if m.any() else float("nan")
            row[f"{k} std"] = float(v[m].std()) if m.any() else float("nan")
        rows.append(row)
    return rows


def grouped_error_gallery(images: np.ndarray, scores: np.ndarray, y: np.ndarray, threshold: float, k: int = 5,
                          title: str | None = None):
    """Rows FP, FN (most confident first) and, for contrast, the most confident TP and TN; captions give
    P(positive), brightness and contrast."""
    from ..plots import labelled_rows_grid

    groups = outcome_groups(scores, y, threshold)
    stats = image_statistics(images)
    scores = np.asarray(scores, dtype=np.float64)
    rows = {}
    for g, desc in (("FP", "false positives"), ("FN", "false negatives"), ("TP", "true positives"),
                    ("TN", "true negatives")):
        idx = np.flatnonzero(groups == g)
        idx = idx[np.argsort(-np.abs(scores[idx] - threshold), kind="stable")][:k]
        caps = [f"p={scores[i]:.2f} b={stats['brightness'][i]:.2f}\nc={stats['contrast'][i]:.2f} #{i}" for i in idx]
        rows[f"{g}: {desc}"] = (np.asarray(images)[idx], caps)
    return labelled_rows_grid(rows, ncols=k, title=title)


def fraction_figure(rows: Sequence[Mapping], metric: str, reference: Mapping[str, float] | None = None,
                    title: str | None = None):
    """``metric`` against % of labels, one line per ``method``; ``reference`` adds dashed horizontal lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((float(r["fraction"]) * 100, r[metric]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 3}", label=name)
    label_fraction_axis(ax, {float(r["fraction"]) * 100 for r in rows}, metric, title, legend_size=8)
    fig.tight_layout()
    return fig


def bar_figure(values: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = ("acc", "auroc", "ece"),
               title: str | None = None):
    """Grouped bars: one group per metric, one bar per entry of ``values`` (``{name: {metric: value}}``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(metrics))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(x + (i - (len(values) - 1) / 2) * width, [vals.get(m, np.nan) for m in metrics], width, label=name)
    ax.set_xticks(x, [f"test {m}" for m in metrics])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
