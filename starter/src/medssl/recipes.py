"""Training-recipe pieces beyond plain supervised training: MixUp, a two-phase LR schedule, TTA.

Used by :mod:`medssl.train` (``--mixup``, ``--scheduler cosine-plateau``,
``--tta``) and by the adapted-ResNet-18 recipe in :mod:`medssl.paradigms`.

* **MixUp** (:class:`MixUp`) -- each training batch is replaced by convex
  combinations of pairs of its own images, ``x = lam * x_i + (1 - lam) * x_j``,
  and the targets by the same combination of one-hot labels; ``lam`` is drawn
  from ``Beta(alpha, alpha)``. A small ``alpha`` keeps ``lam`` near 0 or 1
  (most batches stay almost clean). The loss is the cross-entropy against the
  soft targets (:func:`soft_cross_entropy`), which equals
  ``lam * CE(y_i) + (1 - lam) * CE(y_j)``.
* **Cosine, then ReduceLROnPlateau** (:class:`CosineThenPlateau`) -- per-step
  cosine decay for the first part of training, then the learning rate stays
  where the cosine left it and is cut by ``factor`` whenever the validation
  loss has not improved for ``patience`` epochs.
* **Test-time augmentation** (:func:`predict_tta`) -- the class probabilities of
  a few *deterministic* transforms of each test image (flips, small shifts)
  are averaged. With the identity transform alone it is exactly the plain
  prediction. Which transforms are plausible depends on the modality: a blood
  smear has no "up", a chest X-ray does (:func:`tta_transforms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import accel
from .data import to_float
from .errors import ConfigError

# --------------------------------------------------------------------- MixUp


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Integer labels (N,) -> float one-hot targets (N, K).

    The range check reads the labels on the host, so it runs only for CPU
    tensors; on a GPU it would stall every MixUp step, and there an
    out-of-range label still stops the run with CUDA's device-side assert.
    """
    if labels.numel() and labels.device.type == "cpu" and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ConfigError(f"labels must lie in [0, {n_classes - 1}], got range [{int(labels.min())}, "
                          f"{int(labels.max())}].")
    return F.one_hot(labels.long(), n_classes).float()


def mix_targets(labels: torch.Tensor, perm: torch.Tensor, lam: float, n_classes: int) -> torch.Tensor:
    """The MixUp targets ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``; each row sums to 1."""
    y = one_hot(labels, n_classes)
    return lam * y + (1.0 - lam) * y[perm]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against probability targets (N, K), computed in float32."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(targets.float() * logp).sum(dim=1).mean()


class MixUp:
    """Mix a batch with a shuffled copy of itself: ``(x, y) -> (x_mixed, soft_targets)``.

    One ``lam ~ Beta(alpha, alpha)`` per batch (drawn from a seeded NumPy
    generator) and one random pairing (a seeded torch permutation), so the
    same seed gives the same mixed batches. ``alpha = 0`` turns MixUp off:
    the batch comes back unchanged with one-hot targets.
    """

    def __init__(self, alpha: float, n_classes: int, seed: int = 0):
        if not (alpha >= 0 and math.isfinite(alpha)):
            raise ConfigError(f"MixUp alpha must be >= 0 (0 = off, 0.1-0.4 is usual), got {alpha}.")
        if n_classes < 2:
            raise ConfigError(f"MixUp needs at least 2 classes, got {n_classes}.")
        self.alpha = float(alpha)
        self.n_classes = int(n_classes)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.last_lam: float | None = None
        self.last_perm: torch.Tensor | None = None

    def sample_lam(self) -> float:
        return 1.0 if self.alpha == 0 else float(self.rng.beta(self.alpha, self.alpha))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        lam = self.sample_lam()
        perm = torch.randperm(n, generator=self.gen).to(x.device)
        self.last_lam, self.last_perm = lam, perm
        if lam == 1.0:
            return x, one_hot(y, self.n_classes)
        return lam * x + (1.0 - lam) * x[perm], mix_targets(y, perm, lam, self.n_classes)

    def __repr__(self) -> str:
        return f"MixUp(alpha={self.alpha:g}, n_classes={self.n_classes})"


# --------------------------------------------------------------- LR schedule
class CosineThenPlateau:
    """Cosine decay per step for the first ``cosine_frac`` of the epochs, then ReduceLROnPlateau.

    The cosine part follows the same curve as a cosine over the *whole* run
    (so at the switch the LR is still well above zero); from then on the LR is
    multiplied by ``factor`` after ``patience`` epochs without a lower
    validation loss (never below ``min_lr``). Call :meth:`step` after every
    optimizer step and :meth:`epoch_end` with the validation loss after every epoch.
    ``cosine_frac=1`` is a plain cosine; ``cosine_frac=0`` is plateau-only.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                 cosine_frac: float = 0.5, factor: float = 0.5, patience: int = 3, min_lr: float = 1e-6):
        if not 0.0 <= cosine_frac <= 1.0:
            raise ConfigError(f"--cosine-frac must be in [0, 1], got {cosine_frac}.")
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"--plateau-factor must be in (0, 1), got {factor}.")
        if patience < 0:
            raise ConfigError(f"--plateau-patience must be >= 0, got {patience}.")
        self.optimizer = optimizer
        self.total_steps = max(1, steps_per_epoch * epochs)
        self.switch_epoch = int(round(cosine_frac * epochs))
        self.switch_step = self.switch_epoch * steps_per_epoch
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        total = self.total_steps
        self.cosine = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        self.steps = 0
        self.plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None

    @property
    def phase(self) -> str:
        return "cosine" if self.steps < self.switch_step else "plateau"

    def step(self) -> None:
        if self.steps < self.switch_step:
            self.cosine.step()
        self.steps += 1

    def epoch_end(self, val_loss: float) -> None:
        if self.steps < self.switch_step:
            return
        if self.plateau is None:
            self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="min", factor=self.factor, patience=self.patience, min_lr=self.min_lr)
        if math.isfinite(val_loss):
            self.plateau.step(val_loss)

    def describe(self) -> str:
        return (f"cosine per step for {self.switch_epoch} epoch(s), then ReduceLROnPlateau(val loss, "
                f"factor={self.factor:g}, patience={self.patience}, min_lr={self.min_lr:g})")


# ------------------------------------------------------------------------ TTA
# Modalities whose images have no canonical orientation: vertical flips are
# plausible there (cells on a slide, tissue, skin lesions), not for X-ray, CT,
# ultrasound, OCT or fundus photographs.
ORIENTATION_FREE = frozenset({"microscopy", "pathology", "dermatoscopy"})
TTA_PRESETS = ("none", "flips", "standard")


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a batch by (dy, dx) pixels, filling the border by edge replication."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    top, left = p - dy, p - dx
    return padded[..., top:top + h, left:left + w]


@dataclass(frozen=True)
class TTATransform:
    """One deterministic test-time transform of a (N, C, H, W) float batch."""

    name: str
    hflip: bool = False
    vflip: bool = False
    dy: int = 0
    dx: int = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.hflip:
            x = torch.flip(x, dims=(-1,))
        if self.vflip:
            x = torch.flip(x, dims=(-2,))
        return _shift(x, self.dy, self.dx)

    @property
    def is_identity(self) -> bool:
        return not (self.hflip or self.vflip or self.dy or self.dx)


IDENTITY = TTATransform("identity")


def shift_pixels(size: int) -> int:
    """The TTA shift: about 1/14 of the image side (2 px at 28, 5 px at 64), at least 1."""
    return max(1, int(round(size / 14)))


def tta_transforms(preset: str = "standard", modality: str | None = None, size: int = 28) -> list[TTATransform]:
    """The deterministic transforms of a TTA preset; the identity is always first.

    * ``none`` -- identity only (the plain prediction);
    * ``flips`` -- identity, horizontal flip, and a vertical flip for orientation-free modalities;
    * ``standard`` -- ``flips`` plus shifts up/down/left/right by :func:`shift_pixels` (7 transforms
      for microscopy such as BloodMNIST, as in the seed projects; 6 for X-ray/ultrasound/CT).
    """
    if preset not in TTA_PRESETS:
        raise ConfigError(f"unknown TTA preset {preset!r}; choose one of {', '.join(TTA_PRESETS)}.")
    out = [IDENTITY]
    if preset == "none":
        return out
    out.append(TTATransform("hflip", hflip=True))
    if modality in ORIENTATION_FREE:
        out.append(TTATransform("vflip", vflip=True))
    if preset == "standard":
        s = shift_pixels(size)
        out += [TTATransform(f"shift_up_{s}px", dy=-s), TTATransform(f"shift_down_{s}px", dy=s),
                TTATransform(f"shift_left_{s}px", dx=-s), TTATransform(f"shift_right_{s}px", dx=s)]
    return out


def predict_tta_tensor(model: nn.Module, images: torch.Tensor | np.ndarray, transforms: Sequence[TTATransform],
                       batch_size: int = 512, device: torch.device | None = None) -> torch.Tensor:
    """Per-transform class probabilities (T, N, K) as a float64 CPU tensor; see :func:`predict_tta`.

    Computed in float32 (:func:`medssl.accel.fp32_eval`: no autocast, no TF32).
    """
    if not transforms:
        raise ConfigError("TTA needs at least one transform (use [IDENTITY] for the plain prediction).")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    x_all = torch.as_tensor(images)
    if len(x_all) == 0:
        model.train(was_training)
        raise ConfigError("predict_tta got no images.")
    per_t: list[list[torch.Tensor]] = [[] for _ in transforms]
    with torch.no_grad(), accel.fp32_eval(device):
        for start in range(0, len(x_all), batch_size):
            x = to_float(x_all[start:start + batch_size].to(device))
            for i, t in enumerate(transforms):  # each view in channels_last on CUDA (a no-op on CPU)
                logits = model(accel.channels_last(t(x)))
                per_t[i].append(torch.softmax(logits.float(), dim=1).double().cpu())
    model.train(was_training)
    return torch.stack([torch.cat(p) for p in per_t])


def predict_tta(model: nn.Module, images: torch.Tensor | np.ndarray, transforms: Sequence[TTATransform],
                batch_size: int = 512, device: torch.device | None = None,
                return_all: bool = False) -> np.ndarray:
    """Class probabilities averaged over ``transforms`` for uint8 images (N, C, H, W).

    Softmax probabilities (not logits) are averaged, in eval mode and in float32.
    Returns (N, K) float64, or with ``return_all=True`` the per-transform
    probabilities (T, N, K). ``[IDENTITY]`` gives ``softmax(predict_logits(model, images))``.
    """
    probs = predict_tta_tensor(model, images, transforms, batch_size, device).numpy()
    return probs if return_all else probs.mean(axis=0)


def probs_to_logits(probs: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Log-probabilities: ``softmax(probs_to_logits(p)) == p``, so TTA output can go where logits go."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0)).astype(np.float32)
