"""Models: a small CNN and torchvision ResNets, all as ``encoder`` + linear ``head``.

Every model is a :class:`Classifier` with

* ``model.encoder`` -- images -> feature vectors (what SSL pretrains and the
  linear probe and UMAP read via ``model.features(x)``);
* ``model.head`` -- a linear layer from features to class logits.

``finetune="head"`` freezes the encoder *including* its BatchNorm running
statistics (the encoder stays in eval mode even while the model trains).
A frozen encoder without pretrained weights has BatchNorm statistics that were
never estimated (mean 0, variance 1), so its features are badly scaled; the
training job calls :func:`recalibrate_bn` on the training images first.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError, ConfigError, WeightsUnavailableError
from .utils import get_logger, save_torch

MODELS = ("smallcnn", "resnet18", "resnet50")
FINETUNE = ("all", "head")
ENCODER_FORMAT = "medssl-encoder-v1"


class SmallCNN(nn.Module):
    """Three conv blocks and global average pooling: trains on a laptop CPU in seconds."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


class Classifier(nn.Module):
    """``encoder`` + linear ``head``; ``features(x)`` returns the encoder output."""

    def __init__(self, encoder: nn.Module, feature_dim: int, n_classes: int, meta: dict):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, n_classes)
        self.feature_dim = feature_dim
        self.meta = dict(meta)
        self.encoder_frozen = False
        self.feature_norm: nn.Module | None = None   # see add_feature_norm

    def add_feature_norm(self) -> Classifier:
        """Standardise features before the head with fixed training-set statistics (no learnable scale)."""
        self.feature_norm = nn.BatchNorm1d(self.feature_dim, affine=False)
        self.feature_norm.eval()
        self.meta["feature_norm"] = True
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(x)
        return self.head(f if self.feature_norm is None else self.feature_norm(f))

    def freeze_encoder(self) -> Classifier:
        """Stop gradients *and* BatchNorm statistic updates in the encoder."""
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder_frozen = True
        self.encoder.eval()
        return self

    def unfreeze_encoder(self) -> Classifier:
        for p in self.encoder.parameters():
            p.requires_grad_(True)
        self.encoder_frozen = False
        return self

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        if self.feature_norm is not None:
            self.feature_norm.eval()
        return self


@torch.no_grad()
def recalibrate_bn(encoder: nn.Module, images: torch.Tensor, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> int:
    """Re-estimate every BatchNorm running mean/variance of ``encoder`` on ``images``.

    One forward pass in train mode without gradients, with ``momentum=None`` so
    the running statistics become the cumulative average over all batches (the
    statistics of the whole set, not an exponential average of the last few
    batches). The encoder is left in eval mode. Returns the number of BatchNorm
    layers updated (0: nothing to do). uint8 images (N, C, H, W) are scaled as
    for training (:func:`medssl.data.to_float`); float images are used as given.
    """
    from .data import to_float

    images = torch.as_tensor(images)
    bns = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    try:
        for i in range(0, len(images), batch_size):
            encoder(to_float(images[i:i + batch_size].to(device, non_blocking=True)))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        encoder.eval()
    return len(bns)


@torch.no_grad()
def fit_feature_norm(model: Classifier, images: torch.Tensor, batch_size: int = 256,
                     device: str | torch.device = "cpu") -> None:
    """Set ``model.feature_norm`` to the mean and variance of the encoder features of ``images`` (eval mode)."""
    from .data import to_float

    if model.feature_norm is None:
        model.add_feature_norm()
    images = torch.as_tensor(images)
    model.encoder.eval()
    feats = torch.cat([model.encoder(to_float(images[i:i + batch_size].to(device))).float()
                       for i in range(0, len(images), batch_size)])
    model.feature_norm.running_mean.copy_(feats.mean(0))
    model.feature_norm.running_var.copy_(feats.var(0, unbiased=False))


def needs_bn_recalibration(model: Classifier, from_encoder: bool = False) -> bool:
    """A frozen encoder whose BatchNorm statistics were never estimated: no ImageNet weights, no SSL checkpoint."""
    pretrained = str(model.meta.get("init", "")).startswith("imagenet")
    return bool(model.encoder_frozen and not from_encoder and not pretrained)


# ----------------------------------------------------------------- pretrained weights
def imagenet_state_dict(arch: str, weights_path: str | os.PathLike | None = None,
                        required: bool = False) -> tuple[dict | None, str]:
    """torchvision's ImageNet weights for ``arch``, or ``(None, reason)`` when unavailable.

    Order: an explicit ``weights_path``; then torchvision's cache / download
    (put a downloaded ``.pth`` in ``$TORCH_HOME/hub/checkpoints`` to work offline).
    With ``required=True`` a failure raises :class:`WeightsUnavailableError`.
    """
    if weights_path:
        p = Path(weights_path)
        if not p.exists():
            raise WeightsUnavailableError(f"weights file {p} does not exist; check the path given with --weights.")
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsUnavailableError(f"could not read weights file {p}: {exc}") from None
        return sd.get("state_dict", sd), f"file:{p.name}"
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch).DEFAULT
        return weights.get_state_dict(progress=False, check_hash=True), f"imagenet:{weights}"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:160]}"
        msg = (f"ImageNet weights for {arch} are not available ({reason}). "
               f"To use them offline, put torchvision's {arch} .pth file in "
               f"$TORCH_HOME/hub/checkpoints or pass --weights PATH.")
        if required:
            raise WeightsUnavailableError(msg) from None
        get_logger().warning("%s Falling back to random initialisation.", msg)
        return None, reason


def _adapt_first_conv(weight: torch.Tensor, in_channels: int, kernel: int) -> torch.Tensor:
    """Fit a pretrained (64, 3, 7, 7) stem to ``in_channels`` and ``kernel`` size."""
    if in_channels == 1:
        weight = weight.sum(dim=1, keepdim=True)
    elif in_channels != weight.shape[1]:
        weight = weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (3 / in_channels)
    if kernel != weight.shape[-1]:
        k0 = weight.shape[-1]
        # bicubic resize of the kernel; rescale so each filter's response to a flat image is kept
        weight = F.interpolate(weight, size=(kernel, kernel), mode="bicubic", align_corners=False)
        weight = weight * (k0 * k0) / (kernel * kernel)
    return weight


def _resnet(arch: str, in_channels: int, stem: str, pretrained: bool, weights_path, require_pretrained: bool):
    from torchvision import models as tvm

    net = getattr(tvm, arch)(weights=None)
    init = "random"
    if pretrained or weights_path:
        sd, how = imagenet_state_dict(arch, weights_path, required=require_pretrained)
        if sd is not None:
            net.load_state_dict(sd)
            init = how
        else:
            init = "random (ImageNet weights unavailable)"
    conv1 = net.conv1
    if stem == "small":
        new = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        if not init.startswith("random"):
            new.weight.data = _adapt_first_conv(conv1.weight.data, in_channels, 3)
        net.conv1 = new
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        new = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        if not init.startswith("random"):
            new.weight.data = _adapt_first_conv(conv1.weight.data, in_channels, 7)
        net.conv1 = new
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim, init


def build_model(name: str, n_classes: int, in_channels: int = 1, *, input_size: int = 28,
                stem: str = "auto", pretrained: bool = False, weights_path: str | os.PathLike | None = None,
                require_pretrained: bool = False, finetune: str = "all") -> Classifier:
    """Build ``smallcnn``, ``resnet18`` or ``resnet50`` as a :class:`Classifier`.

    stem: ``"imagenet"`` (7x7 stride-2 conv + max-pool), ``"small"`` (3x3
    stride-1 conv, no max-pool: keeps detail in 28 px images) or ``"auto"``
    (small for inputs <= 32 px). ``pretrained=True`` asks for ImageNet weights
    and falls back to random initialisation, with a logged reason, when they
    cannot be had (``require_pretrained=True`` raises instead).
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}.")
    if finetune not in FINETUNE:
        raise ConfigError(f"finetune must be one of {FINETUNE}, got {finetune!r}.")
    if stem == "auto":
        stem = "small" if input_size <= 32 else "imagenet"
    if stem not in ("small", "imagenet"):
        raise ConfigError(f"stem must be 'auto', 'small' or 'imagenet', got {stem!r}.")
    if name == "smallcnn":
        if pretrained or weights_path:
            get_logger().warning("smallcnn has no ImageNet weights; using random initialisation.")
        enc = SmallCNN(in_channels)
        feature_dim, init, stem = enc.feature_dim, "random", "n/a"
    else:
        enc, feature_dim, init = _resnet(name, in_channels, stem, pretrained, weights_path, require_pretrained)
    model = Classifier(enc, feature_dim, n_classes,
                       meta=dict(arch=name, in_channels=in_channels, n_classes=n_classes, stem=stem,
                                 input_size=input_size, init=init, finetune=finetune))
    if finetune == "head":
        model.freeze_encoder()
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------ encoder files
def save_encoder(model: Classifier, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Save the encoder with what is needed to rebuild it (arch, stem, channels)."""
    meta = {k: model.meta[k] for k in ("arch", "in_channels", "stem", "input_size")}
    return save_torch({"format": ENCODER_FORMAT, **meta, "feature_dim": model.feature_dim,
                       "extra": extra or {}, "state_dict": model.encoder.state_dict()}, path)


def read_encoder(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(
            f"encoder checkpoint {p} not found. Run the SSL pretraining first "
            "(python -m medssl.pretrain ... --out DIR), then pass DIR/ssl_encoder.pt.")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"could not read {p} ({type(exc).__name__}: {exc}); is it a complete file?") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != ENCODER_FORMAT:
        raise CheckpointError(f"{p} is not a medssl encoder checkpoint (expected format {ENCODER_FORMAT}).")
    return ckpt


def load_encoder(model: Classifier, path: str | os.PathLike) -> Classifier:
    """Load an encoder checkpoint into ``model.encoder``; explains any mismatch."""
    ckpt = read_encoder(path)
    for k in ("arch", "in_channels", "stem"):
        if ckpt.get(k) != model.meta.get(k):
            raise CheckpointError(
                f"{path} holds a {k}={ckpt.get(k)!r} encoder but the model has {k}={model.meta.get(k)!r}; "
                "build the model with the same settings as the pretraining run.")
    model.encoder.load_state_dict(ckpt["state_dict"])
    model.meta["init"] = f"encoder:{Path(path).name}"
    return model


def model_from_encoder(path: str | os.PathLike, n_classes: int, finetune: str = "all") -> Classifier:
    """Build the matching model for an encoder checkpoint and load it."""
    ckpt = read_encoder(path)
    model = build_model(ckpt["arch"], n_classes, ckpt["in_channels"], input_size=ckpt.get("input_size", 28),
                        stem=ckpt["stem"] if ckpt["stem"] != "n/a" else "auto", finetune="all")
    load_encoder(model, path)
    if finetune == "head":
        model.freeze_encoder()
    model.meta["finetune"] = finetune
    return model
