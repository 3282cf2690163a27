"""Figures every week reuses: reliability diagrams, learning curves, confusion matrices, galleries.

All functions return a matplotlib ``Figure``; save with :func:`medssl.utils.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .calibration import confidence_and_outcome, expected_calibration_error, reliability_bins


def class_colors(n_classes: int) -> list:
    """One distinct colour per class: tab10 up to 10 classes, tab20 up to 20, evenly spaced turbo beyond."""
    if n_classes <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n_classes)]
    if n_classes <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n_classes)]
    return [plt.get_cmap("turbo")(x) for x in np.linspace(0.05, 0.95, n_classes)]


def reliability_diagram(probs_by_name: Mapping[str, np.ndarray] | np.ndarray, labels: np.ndarray,
                        positive_class: int | None = None, n_bins: int = 15, title: str | None = None,
                        positive_label: str | None = None):
    """Reliability diagram(s) with a confidence histogram underneath.

    Pass one probability array, or ``{"before": p0, "after": p1}`` to draw the
    panels side by side. Bars show observed frequency per bin, red gaps show
    the distance to the diagonal, and each panel title carries its ECE.
    """
    if not isinstance(probs_by_name, Mapping):
        probs_by_name = {"model": probs_by_name}
    n = len(probs_by_name)
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 5.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for j, (name, probs) in enumerate(probs_by_name.items()):
        conf, out = confidence_and_outcome(probs, labels, positive_class)
        bins = reliability_bins(conf, out, n_bins)
        ece = expected_calibration_error(probs, labels, n_bins, positive_class)
        ax, hx = axes[0, j], axes[1, j]
        width = bins.upper - bins.lower
        filled = bins.count > 0
        ax.bar(bins.lower[filled], bins.accuracy[filled], width=width[filled], align="edge",
               edgecolor="black", color="#4c72b0", label="observed")
        ax.bar(bins.lower[filled], bins.gap[filled] * -1, bottom=bins.accuracy[filled], width=width[filled],
               align="edge", color="#dd8452", alpha=0.45, hatch="//", edgecolor="#c44e52", label="gap")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if positive_class is not None and np.asarray(probs).ndim == 2 and np.asarray(probs).shape[1] == 2:
            what = f"P({positive_label or positive_class})"
            ax.set_ylabel(f"observed frequency of {positive_label or positive_class}")
        else:
            what = "confidence"
            ax.set_ylabel("accuracy")
        ax.set_title(f"{name}: ECE={ece:.3f}" if n > 1 or title is None else f"{title}\nECE={ece:.3f}")
        ax.legend(loc="upper left", fontsize=8)
        hx.hist(conf, bins=np.linspace(0, 1, n_bins + 1), color="gray", edgecolor="black")
        hx.set_xlabel(what)
        hx.set_ylabel("count")
    if title and n > 1:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def learning_curves(log: Sequence[dict], title: str | None = None):
    """Loss (train and val) and val AUROC/accuracy against epoch, from ``val_log.jsonl`` rows."""
    ep = [r["epoch"] for r in log]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [r["train_loss"] for r in log], "o-", label="train loss")
    a.plot(ep, [r["val_loss"] for r in log], "s-", label="val loss")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(ep, [r["val_auroc"] for r in log], "o-", label="val AUROC")
    b.plot(ep, [r["val_acc"] for r in log], "s-", label="val accuracy")
    b.set_xlabel("epoch")
    b.set_ylim(min(0.5, *[r["val_acc"] for r in log]) - 0.02, 1.0)
    b.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def overlay_learning_curves(logs: Mapping[str, Sequence[dict]], title: str | None = None):
    """One figure for several runs: val loss (left) and val AUROC (right) per epoch, one line per run.

    ``logs`` maps a run name to its ``val_log.jsonl`` rows. Each run's best-val-AUROC epoch is marked
    with a star (the epoch whose weights the run keeps).
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for i, (name, log) in enumerate(logs.items()):
        color = f"C{i}"
        ep = [r["epoch"] for r in log]
        a.plot(ep, [r["val_loss"] for r in log], "o-", color=color, ms=3, label=name)
        b.plot(ep, [r["val_auroc"] for r in log], "o-", color=color, ms=3, label=name)
        best = max(log, key=lambda r: r["val_auroc"])
        b.plot([best["epoch"]], [best["val_auroc"]], "*", color=color, ms=12, zorder=5)
    a.set_xlabel("epoch")
    a.set_ylabel("validation cross-entropy")
    b.set_xlabel("epoch")
    b.set_ylabel("validation AUROC (star: kept epoch)")
    a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sensitivity_specificity_curves(scores: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Sensitivity and specificity when ``score >= t`` is called positive, at every distinct score ``t``."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
    t = np.unique(scores)
    pred = scores[None, :] >= t[:, None]
    sens = (pred & y).sum(1) / max(int(y.sum()), 1)
    spec = (~pred & ~y).sum(1) / max(int((~y).sum()), 1)
    return {"threshold": t, "sensitivity": sens, "specificity": spec}


def threshold_tradeoff_figure(val_scores: np.ndarray, val_y: np.ndarray, points: Mapping[str, float],
                              test_scores: np.ndarray | None = None, test_y: np.ndarray | None = None,
                              title: str | None = None):
    """Sensitivity and specificity against the threshold on validation, with the chosen thresholds marked.

    ``points`` maps an operating point's name to its threshold (chosen on validation); each is marked at
    its *validation* sensitivity (circle) and specificity (square). Optional test curves are dashed.
    """
    fig, ax = plt.subplots(figsize=(7, 4))
    v = sensitivity_specificity_curves(val_scores, val_y)
    ax.step(v["threshold"], v["sensitivity"], where="post", color="C0", label="sensitivity (val)")
    ax.step(v["threshold"], v["specificity"], where="post", color="C1", label="specificity (val)")
    if test_scores is not None and test_y is not None:
        t = sensitivity_specificity_curves(test_scores, test_y)
        ax.step(t["threshold"], t["sensitivity"], where="post", color="C0", ls="--", alpha=0.6,
                label="sensitivity (test)")
        ax.step(t["threshold"], t["specificity"], where="post", color="C1", ls="--", alpha=0.6,
                label="specificity (test)")
    vs, vy = np.asarray(val_scores, dtype=np.float64), np.asarray(val_y).astype(bool)
    for i, (name, thr) in enumerate(points.items()):
        pred = vs >= thr
        sens = (pred & vy).sum() / max(int(vy.sum()), 1)
        spec = (~pred & ~vy).sum() / max(int((~vy).sum()), 1)
        color = f"C{i + 2}"
        ax.axvline(thr, color=color, lw=0.8, alpha=0.5)
        ax.plot([thr], [sens], "o", color=color, ms=8, label=f"{name} (t={thr:.3f})")
        ax.plot([thr], [spec], "s", color=color, ms=8)
    ax.set_xlabel("threshold on P(positive)")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(cm: Sequence[Sequence[int]], class_names: Sequence[str], title: str | None = None,
                            normalize: bool = False):
    cm = np.asarray(cm, dtype=float)
    shown = cm / cm.sum(axis=1, keepdims=True).clip(min=1) if normalize else cm
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.1 * k + 2))
    im = ax.imshow(shown, cmap="Blues")
    for i in range(k):
        for j in range(k):
            txt = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center",
                    color="white" if shown[i, j] > shown.max() / 2 else "black")
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=30, ha="right")
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, captions: Sequence[str], ncols: int = 5, title: str | None = None,
               cell: float = 1.9):
    """Show uint8 images (N, C, H, W) with a caption under each."""
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, (cell + 0.5) * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cap in zip(axes.ravel(), images, captions):
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img, (1, 2, 0)))
        ax.set_title(cap, fontsize=7)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "(no examples)", ha="center", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- decisions (Week 7) and robustness (Week 8)
_POINT_STYLE = {"target_tpr": ("o", "#c44e52"), "target_fpr": ("s", "#55a868"), "youden": ("D", "#8172b2"),
                "max_f1": ("^", "#dd8452"), "default": ("x", "black")}


def roc_curve_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float,
                     points: Mapping[str, tuple[float, float, float]] | None = None, title: str | None = None):
    """ROC curve with its AUROC; ``points`` maps a name to ``(fpr, tpr, ppv)`` of an operating point to mark."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, color="#4c72b0", lw=2, label=f"ROC (AUROC={auroc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="chance")
    for name, (x, y, _) in (points or {}).items():
        m, c = _POINT_STYLE.get(name, ("o", None))
        ax.plot([x], [y], m, color=c, ms=8, mfc="none" if m != "x" else None, mew=2, label=f"{name} ({x:.2f}, {y:.2f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.legend(loc="lower right", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def pr_curve_figure(recall: np.ndarray, precision: np.ndarray, average_precision: float, prevalence: float,
                    points: Mapping[str, tuple[float, float, float]] | None = None, title: str | None = None):
    """Precision-recall curve with its average precision and the chance level (= prevalence of the positive class)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.step(recall, precision, where="post", color="#4c72b0", lw=2, label=f"PR (AP={average_precision:.3f})")
    ax.axhline(prevalence, color="k", ls="--", lw=1, label=f"chance = prevalence ({prevalence:.2f})")
    for name, (_, y, ppv) in (points or {}).items():
        m, c = _POINT_STYLE.get(name, ("o", None))
        ax.plot([y], [ppv], m, color=c, ms=8, mfc="none" if m != "x" else None, mew=2,
                label=f"{name} (R={y:.2f}, P={ppv:.2f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.legend(loc="lower left", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def labelled_rows_grid(rows: Mapping[str, tuple[np.ndarray, Sequence[str]]], ncols: int | None = None,
                       title: str | None = None, cell: float = 1.9):
    """Rows of uint8 images (N, C, H, W), one row per entry of ``rows`` (``{row label: (images, captions)}``)."""
    ncols = ncols or max([1, *[len(v[0]) for v in rows.values()]])
    nrows = max(1, len(rows))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 0.6, (cell + 0.75) * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (label, (images, captions)) in enumerate(rows.items()):
        axes[r, 0].text(-0.12, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=8)
        if len(images) == 0:
            axes[r, 0].text(0.5, 0.5, "(none)", ha="center", va="center", transform=axes[r, 0].transAxes)
        for ax, img, cap in zip(axes[r], images, captions):
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
            else:
                ax.imshow(np.transpose(img, (1, 2, 0)))
            ax.set_title(cap, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def robustness_figure(table, metrics: Sequence[str] = ("acc", "auroc", "ece"), title: str | None = None):
    """One panel per metric against severity, one line per perturbation; the clean value is the dashed line.

    ``table`` is :func:`medssl.robustness.evaluate_shifts`' DataFrame (columns perturbation,
    severity, level, and the metrics; the clean row has perturbation ``"clean"``).
    """
    clean = table[table["perturbation"] == "clean"].iloc[0]
    shifted = table[table["perturbation"] != "clean"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for name, g in shifted.groupby("perturbation", sort=False):
            ax.plot([0, *range(1, len(g) + 1)], [clean[m], *g[m].tolist()], "o-", label=name)
        ax.axhline(clean[m], color="k", ls="--", lw=1)
        levels = ["clean", *shifted.groupby("perturbation", sort=False)["severity"].apply(list).iloc[0]]
        ax.set_xticks(range(len(levels)), levels)
        ax.set_xlabel("severity")
        ax.set_title({"acc": "accuracy", "auroc": "AUROC", "ece": "ECE (lower is better)"}.get(m, m))
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def label_fraction_axis(ax, pcts, metric: str, title: str | None = None, legend_size: int | None = None) -> None:
    """Style an axis of metric vs labelled fraction: log x with the fractions as ticks, grid, legend."""
    pcts = sorted(pcts)
    ax.set_xscale("log")
    ax.set_xticks(pcts, [f"{p:g}" for p in pcts])
    ax.minorticks_off()
    ax.set_xlabel("labelled training images (%)")
    ax.set_ylabel(f"test {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    if title:
        ax.set_title(title, fontsize=10)
