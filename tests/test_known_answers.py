"""Known answers worked out by hand: PPV/NPV, ECE bin edges, the TTA averaging rule, blur at 64 px.

Each case is built so that the plausible wrong implementation gives a clearly different number:
PPV != NPV and sensitivity != specificity; confidences sit exactly on bin edges; the TTA model's
transforms disagree strongly (so averaging probabilities, log-probabilities or logits differ);
the blur is measured on a 64-px and a 128-px image (a sigma left in 28-px units is visibly too sharp).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from medssl import decisions
from medssl.calibration import expected_calibration_error, maximum_calibration_error, reliability_bins
from medssl.metrics import classification_metrics
from medssl.recipes import predict_tta, tta_transforms
from medssl.registry import get_spec
from medssl.robustness import gaussian_blur


# ------------------------------------------------------------------ PPV / NPV
def confusion_case(pos: int, tp: int, fn: int, tn: int, fp: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and (N, 2) probabilities whose arg-max gives exactly these counts for positive class ``pos``."""
    neg = 1 - pos
    truth_pred = [(pos, pos)] * tp + [(pos, neg)] * fn + [(neg, neg)] * tn + [(neg, pos)] * fp
    labels = np.array([t for t, _ in truth_pred])
    probs = np.array([[0.8, 0.2] if p == 0 else [0.3, 0.7] for _, p in truth_pred])
    return labels, probs


@pytest.mark.parametrize("key", ["breastmnist", "pneumoniamnist"])
def test_sensitivity_specificity_ppv_npv_by_hand(key):
    spec = get_spec(key)
    labels, probs = confusion_case(spec.positive_class, tp=3, fn=2, tn=5, fp=1)
    m = classification_metrics(labels, probs, spec)
    assert (m["sensitivity"], m["specificity"], m["ppv"], m["npv"]) == (3 / 5, 5 / 6, 3 / 4, 5 / 7)
    s, y = decisions.binary_scores(probs, labels, spec)
    d = decisions.metrics_at_threshold(s, y, 0.5, spec.positive_class)
    assert (d["tp"], d["fn"], d["tn"], d["fp"]) == (3, 2, 5, 1)
    assert (d["sensitivity"], d["specificity"], d["ppv"], d["npv"]) == (3 / 5, 5 / 6, 3 / 4, 5 / 7)
    assert d["confusion_matrix"] == m["confusion_matrix"]          # both in label order


# ------------------------------------------------------------------ ECE bin edges
def test_confidence_on_a_bin_edge_belongs_to_the_bin_it_closes():
    """Bins are (lo, hi]: 0.5 with 10 bins is in (0.4, 0.5], 0.55 in (0.5, 0.6]."""
    p, y = np.array([0.5, 0.55]), np.array([1, 0])
    bins = reliability_bins(p, y.astype(float), n_bins=10)
    assert bins.count.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    ece = expected_calibration_error(p, y, n_bins=10, positive_class=1)
    assert ece == pytest.approx(0.5 * abs(1 - 0.5) + 0.5 * abs(0 - 0.55), abs=1e-15)   # 0.525; [lo, hi) gives 0.025
    assert maximum_calibration_error(p, y, n_bins=10, positive_class=1) == pytest.approx(0.55, abs=1e-15)


def bin_by_definition(c: float, n_bins: int) -> int:
    """The bin (lo, hi] with edges k / n_bins holding ``c`` (0 goes to the first), by plain comparisons."""
    b = 0
    while b < n_bins - 1 and c > (b + 1) / n_bins:
        b += 1
    return b


def test_values_on_and_next_to_every_edge_land_in_the_right_bin():
    """0.3 with 10 bins is in (0.2, 0.3], the next float above 0.3 in (0.3, 0.4]; for every edge of 1-40 bins.

    ``ceil(conf * n_bins)`` gets hundreds of these wrong (``conf * n_bins`` rounds across the integer), and
    ``np.linspace`` edges are not the correctly rounded ``k / n``.
    """
    wrong = []
    for n_bins in range(1, 41):
        edges = [k / n_bins for k in range(n_bins + 1)]
        conf = np.array(sorted({v for e in edges for v in (e, np.nextafter(e, 2.0), np.nextafter(e, -1.0))
                                if 0.0 <= v <= 1.0}))
        bins = reliability_bins(conf, np.ones_like(conf), n_bins=n_bins)
        want = np.bincount([bin_by_definition(c, n_bins) for c in conf], minlength=n_bins)
        if bins.count.tolist() != want.tolist():
            wrong.append(n_bins)
        assert bins.upper.tolist() == edges[1:] and bins.lower.tolist() == edges[:-1]
    assert not wrong, f"values on or next to a bin edge misplaced with n_bins in {wrong}"


# ------------------------------------------------------------------ TTA: probabilities are averaged
class LeftRight(nn.Module):
    """Two logits ``[0, 6 * (mean(left half) - mean(right half)) + 1]``: a horizontal flip reverses the call."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(6.0))

    def forward(self, x):
        w = x.shape[-1]
        d = x[..., : w // 2].mean(dim=(1, 2, 3)) - x[..., w // 2:].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(d), self.gain * d + 1.0], dim=1)


def hand_transform(x: np.ndarray, name: str, s: int) -> np.ndarray:
    """The TTA views written out with index arithmetic (edge pixels repeated where a shift uncovers them)."""
    h, w = x.shape[-2:]
    rows, cols = np.arange(h), np.arange(w)
    if name == "identity":
        return x
    if name == "hflip":
        return x[..., ::-1]
    if name == "vflip":
        return x[..., ::-1, :]
    dy, dx = {"up": (-s, 0), "down": (s, 0), "left": (0, -s), "right": (0, s)}[name.split("_")[1]]
    return x[..., np.clip(rows - dy, 0, h - 1)[:, None], np.clip(cols - dx, 0, w - 1)[None, :]]


def two_sided_images(n: int = 12, size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.integers(60, 120, (n, 1, size, size))
    bright_left = rng.random(n) < 0.5
    x[bright_left, :, :, : size // 2] += 100
    x[~bright_left, :, :, size // 2:] += 100
    return x.astype(np.uint8)


@pytest.mark.parametrize("modality", ["xray", "microscopy"])
def test_tta_averages_probabilities_of_strongly_disagreeing_views(modality):
    torch.manual_seed(0)
    model = LeftRight()
    images = two_sided_images()
    transforms = tta_transforms("standard", modality, 28)
    got = predict_tta(model, images, transforms)
    x = (images.astype(np.float64) / 255.0 - 0.5) / 0.5
    per_view = []
    for t in transforms:
        view = hand_transform(x, t.name, 2)
        d = view[..., :14].mean(axis=(1, 2, 3)) - view[..., 14:].mean(axis=(1, 2, 3))
        z = np.stack([np.zeros_like(d), 6.0 * d + 1.0], axis=1)
        per_view.append(np.exp(z) / np.exp(z).sum(axis=1, keepdims=True))
    per_view = np.stack(per_view)
    want = per_view.mean(axis=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the views really disagree, so the other averaging rules would be far off
    log_avg = np.exp(np.log(per_view).mean(axis=0))
    log_avg /= log_avg.sum(axis=1, keepdims=True)
    assert np.abs(log_avg - want).max() > 0.1
    assert np.ptp(per_view[:, :, 1], axis=0).min() > 0.5


# ------------------------------------------------------------------ blur: sigma in 28-px units, scaled with the size
@pytest.mark.parametrize("size", [28, 64, 128])
def test_blur_sigma_is_in_28px_units_at_every_image_size(size):
    """A vertical step edge blurred at severity 1 must spread over size/28 pixels: 255 * Phi((j - edge) / sigma)."""
    img = np.zeros((1, 1, size, size), dtype=np.uint8)
    img[..., size // 2:] = 255
    row = gaussian_blur(img, 1.0)[0, 0, size // 2].astype(float)
    sigma = size / 28
    j = np.arange(size)
    want = 255 * np.array([0.5 * (1 + math.erf((k - size / 2 + 0.5) / (sigma * math.sqrt(2)))) for k in j])
    assert np.abs(row - want).max() <= 3.0
    unscaled = 255 * np.array([0.5 * (1 + math.erf((k - size / 2 + 0.5) / math.sqrt(2))) for k in j])
    if size != 28:
        assert np.abs(unscaled - want).max() > 20          # the check can tell a 28-px sigma from a scaled one
