"""Figures every week reuses: reliability diagrams, learning curves, confusion matrices, galleries.

All functions return a matplotlib ``Figure``; save with :func:`medssl.utils.save_figure`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .calibration import confidence_and_outcome, expected_calibration_error, reliability_bins


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
