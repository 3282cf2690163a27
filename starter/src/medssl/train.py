"""Supervised training: ``python -m medssl.train --dataset breastmnist --model smallcnn --epochs 5 --out runs/x``.

The building blocks (:func:`train_one_epoch`, :func:`predict_logits`,
:func:`fit`) are reused by SSL fine-tuning and the notebooks; :func:`run`
is the whole job behind the command line.

Outputs in ``--out``: ``config.json`` (written first), ``best.pt`` (best
validation AUROC, or ``--select f1_macro|acc``), ``val_log.jsonl`` (one line per
epoch), ``test_metrics.json``, ``predictions.npz`` (val/test logits and labels,
for calibration and thresholds), ``reliability.png`` and ``curves.png``.

Recipe options (all off by default; see :mod:`medssl.recipes`): ``--mixup ALPHA``,
``--scheduler cosine-plateau`` (cosine, then ReduceLROnPlateau on the val loss),
``--patience N`` (early stopping on the selection metric), ``--tta standard``
(test metrics with test-time augmentation added under ``"tta"``), ``--as-rgb``
(grey images repeated to 3 channels, as for ImageNet-style backbones).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import __version__, accel
from .augment import AugSpec, BatchAugment, supervised_augmentation
from .calibration import softmax
from .cli import HelpFormatter, add_common_args, run_cli
from .data import (
    MedMNISTDataset,
    SplitData,
    TensorSplit,
    ensure_file,
    file_md5,
    fraction_indices,
    indices_filename,
    load_split,
    load_splits,
    to_float,
)
from .errors import CheckpointError, ConfigError
from .metrics import classification_metrics, format_summary
from .models import (
    Classifier,
    build_model,
    count_parameters,
    fit_feature_norm,
    load_encoder,
    needs_bn_recalibration,
    recalibrate_bn,
)
from .plots import learning_curves, reliability_diagram
from .recipes import (
    TTA_PRESETS,
    CosineThenPlateau,
    MixUp,
    predict_tta,
    probs_to_logits,
    soft_cross_entropy,
    tta_transforms,
)
from .registry import DatasetSpec, get_spec
from .utils import (
    append_jsonl,
    check_fraction,
    make_generator,
    prepare_out_dir,
    progress_bar,
    resolve_device,
    save_figure,
    save_torch,
    set_seed,
    write_json,
)

CHECKPOINT_FORMAT = "medssl-classifier-v1"
SELECT_METRICS = ("auroc", "f1_macro", "acc")
SCHEDULERS = ("cosine", "constant", "cosine-plateau")


@dataclass
class TrainConfig:
    """Every hyperparameter of a supervised run; saved next to every result."""

    dataset: str
    model: str = "smallcnn"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 42
    size: int = 28
    aug: str = "light"
    label_frac: float = 1.0
    finetune: str = "all"
    pretrained: bool = False
    weights: str | None = None
    stem: str = "auto"
    encoder: str | None = None
    encoder_lr: float | None = None
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    loader: str = "tensor"
    device: str = "auto"
    root: str | None = None
    indices_dir: str | None = None
    n_bins: int = 15
    eval_batch_size: int = 512
    progress: bool = True
    compile: bool = False              # torch.compile the model for training (CUDA; slow first epoch)
    # recipe options (defaults keep the plain behaviour)
    select: str = "auroc"              # validation metric that picks best.pt: auroc | f1_macro | acc
    mixup: float = 0.0                 # MixUp Beta(alpha, alpha); 0 = off
    patience: int = 0                  # early stopping after this many epochs without a better val score; 0 = off
    cosine_frac: float = 0.5           # cosine-plateau: fraction of epochs on the cosine before plateau mode
    plateau_factor: float = 0.5        # cosine-plateau: LR multiplier when the val loss stalls
    plateau_patience: int = 3          # cosine-plateau: epochs without a lower val loss before a cut
    tta: str = "none"                  # test-time augmentation preset for the extra "tta" test metrics
    as_rgb: bool = False               # repeat grey images to 3 channels (model takes RGB)
    require_pretrained: bool = False   # with pretrained: raise WeightsUnavailableError instead of falling back
    precision: str = "auto"            # auto: bf16 (CUDA >= 8.0) / fp16 + GradScaler (older CUDA) / fp32 (CPU, MPS)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> TrainConfig:
        get_spec(self.dataset)
        check_fraction(self.label_frac, "--label-frac")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if not (self.lr > 0):
            raise ConfigError(f"--lr must be > 0, got {self.lr}.")
        if self.loader not in ("tensor", "dataset"):
            raise ConfigError(f"--loader must be 'tensor' or 'dataset', got {self.loader!r}.")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"--optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}.")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}.")
        if self.select not in SELECT_METRICS:
            raise ConfigError(f"--select must be one of {', '.join(SELECT_METRICS)}, got {self.select!r}.")
        if not (self.mixup >= 0 and math.isfinite(self.mixup)):
            raise ConfigError(f"--mixup must be >= 0 (0 = off; 0.1-0.4 is usual), got {self.mixup}.")
        if self.patience < 0:
            raise ConfigError(f"--patience must be >= 0 (0 = no early stopping), got {self.patience}.")
        if not 0.0 <= self.cosine_frac <= 1.0:
            raise ConfigError(f"--cosine-frac must be in [0, 1], got {self.cosine_frac}.")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ConfigError(f"--plateau-factor must be in (0, 1), got {self.plateau_factor}.")
        if self.plateau_patience < 0:
            raise ConfigError(f"--plateau-patience must be >= 0, got {self.plateau_patience}.")
        if self.tta not in TTA_PRESETS:
            raise ConfigError(f"--tta must be one of {', '.join(TTA_PRESETS)}, got {self.tta!r}.")
        accel.check_precision(self.precision)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------- batches
def train_batches(data: SplitData, cfg_batch_size: int, device: torch.device, aug: AugSpec, loader: str,
                  shuffle_gen: torch.Generator, aug_gen: torch.Generator,
                  tensor_split: TensorSplit | None = None, augment: Callable | None = None) -> tuple[Iterator, int]:
    """Normalised, augmented training batches from either path, and how many there are.

    ``augment(x, generator)`` (uint8 batch -> float batch in [0, 1]) replaces ``BatchAugment(aug)``
    on the tensor path.
    """
    if loader == "tensor":
        split = tensor_split or TensorSplit(data, device)
        augment = augment or BatchAugment(aug)

        def gen():
            for xb, yb in split.batches(cfg_batch_size, shuffle=True, generator=shuffle_gen):
                yield to_float(augment(xb, aug_gen), normalize=False).sub_(0.5).div_(0.5), yb

        return gen(), split.num_batches(cfg_batch_size)
    ds = MedMNISTDataset(data, transform=None if aug.is_identity else aug.torchvision(data.size))
    dl = torch.utils.data.DataLoader(ds, batch_size=cfg_batch_size, shuffle=True, generator=shuffle_gen,
                                     num_workers=0)

    def gen_dl():
        for xb, yb in dl:
            yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    return gen_dl(), len(dl)


class LossTracker:
    """The sample-weighted mean loss of an epoch, accumulated on the device and read once at the end.

    Reading a GPU number (``loss.item()``, ``if not torch.isfinite(loss)``) makes
    the CPU wait for the GPU; once per step that leaves the GPU idle between
    steps. Here the sum stays on the device, and so does a flag with the first
    step whose loss was NaN or infinite; :meth:`finish` reads both once per epoch.
    On CPU the sum is the same float64 arithmetic as summing ``loss.item() * n``.
    """

    def __init__(self, device: torch.device | str):
        device = torch.device(device)
        dtype = torch.float32 if device.type == "mps" else torch.float64   # MPS has no float64
        self.total = torch.zeros((), dtype=dtype, device=device)
        self.first_bad = torch.zeros((), dtype=torch.long, device=device)   # 0 = every loss finite so far
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=device)
        self.count = 0
        self.steps = 0

    def add(self, loss: torch.Tensor, n: int) -> None:
        """Add one step's mean loss over ``n`` samples (no host sync)."""
        self.steps += 1
        loss = loss.detach()
        self.total += loss.to(self.total.dtype) * n
        self.count += n
        newly_bad = (self.first_bad == 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(newly_bad, self.steps, self.first_bad)
        self.bad_loss = torch.where(newly_bad, loss.float(), self.bad_loss)

    def mean(self) -> float:
        """The mean so far (a host sync: only for progress bars and :meth:`finish`)."""
        return float(self.total) / max(self.count, 1)

    def finish(self) -> tuple[float, tuple[int, float] | None]:
        """``(mean loss, None)``, or ``(mean, (first bad step, its loss))`` when a loss was not finite."""
        bad = int(self.first_bad)
        return self.mean(), ((bad, float(self.bad_loss)) if bad else None)


def train_one_epoch(model: nn.Module, batches, n_batches: int, optimizer: torch.optim.Optimizer,
                    scheduler=None, device: torch.device | None = None, desc: str = "train",
                    progress: bool = True, mixup: MixUp | None = None, scaler: torch.amp.GradScaler | None = None,
                    precision: str = "auto") -> float:
    """One pass over ``batches``; returns the sample-weighted mean training loss.

    With ``mixup`` every batch is mixed (:class:`medssl.recipes.MixUp`) and the
    loss is the cross-entropy against the mixed soft targets. Each step runs under
    :func:`medssl.accel.autocast` for ``precision``; ``scaler`` (default
    :func:`medssl.accel.grad_scaler`) scales the loss when that is float16.
    A NaN or infinite loss is detected on the device and raised at the end of the epoch.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    scaler = scaler if scaler is not None else accel.grad_scaler(device, precision)
    model.train()
    tracker = LossTracker(device)
    bar = progress_bar(batches, progress, total=n_batches, desc=desc, leave=False)
    show, next_show = not getattr(bar, "disable", True), 0.0
    with accel.training_math(device, precision):
        for x, y in bar:
            if mixup is not None:
                x, soft = mixup(x, y)
            x = accel.channels_last(x)
            with accel.autocast(device, precision):
                loss = F.cross_entropy(model(x), y) if mixup is None else soft_cross_entropy(model(x), soft)
            accel.optimizer_step(loss, optimizer, scaler, scheduler)
            tracker.add(loss, len(y))
            if show and time.perf_counter() >= next_show:   # reading the mean waits for the GPU: once a second
                bar.set_postfix(loss=f"{tracker.mean():.4f}")
                next_show = time.perf_counter() + 1.0
    mean, bad = tracker.finish()
    if bad is not None:
        raise ConfigError(f"training loss became {bad[1]} at step {bad[0]} ({desc}); lower --lr and try again.")
    return mean


def predict_tensor(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 512,
                   device: torch.device | None = None, features: bool = False) -> torch.Tensor:
    """Logits (or encoder features) for uint8 images (N, C, H, W), in eval mode, as a float32 CPU tensor.

    Always computed in float32 (:func:`medssl.accel.fp32_eval`: no autocast, no
    TF32), whatever precision the model was trained in.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    x_all = torch.as_tensor(images)
    outs = []
    with torch.no_grad(), accel.fp32_eval(device):
        for start in range(0, len(x_all), batch_size):
            x = accel.channels_last(to_float(x_all[start:start + batch_size].to(device)))
            out = model.features(x) if features else model(x)
            outs.append(out.float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.zeros((0, 0), dtype=torch.float32)


def predict_logits(model: nn.Module, images: torch.Tensor | np.ndarray, batch_size: int = 512,
                   device: torch.device | None = None, features: bool = False) -> np.ndarray:
    """Logits (or encoder features) for uint8 images (N, C, H, W), in eval mode, as float32 numpy (in fp32)."""
    return predict_tensor(model, images, batch_size, device, features).numpy()


def evaluate(model: nn.Module, data: SplitData, spec: DatasetSpec, batch_size: int = 512,
             n_bins: int = 15, device=None) -> tuple[dict, np.ndarray]:
    """Metrics and logits of ``model`` on one split; metrics include the cross-entropy ``loss``."""
    logits = predict_logits(model, data.images, batch_size, device)
    m = classification_metrics(data.labels, softmax(logits), spec, n_bins=n_bins)
    m["loss"] = float(F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(data.labels)).item())
    return m, logits


def build_optimizer(model: Classifier, lr: float, weight_decay: float, encoder_lr: float | None = None,
                    kind: str = "adamw") -> torch.optim.Optimizer:
    """AdamW (or SGD) over trainable parameters; ``encoder_lr`` puts the encoder in its own group."""
    enc = [p for p in model.encoder.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    groups = []
    if enc:
        groups.append({"params": enc, "lr": encoder_lr if encoder_lr is not None else lr, "name": "encoder"})
    groups.append({"params": head, "lr": lr, "name": "head"})
    fused = accel.fused_ok(enc + head)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused)


def optimizer_summary(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """What an optimizer does to each parameter of ``model`` (in ``model.parameters()`` order).

    ``lr`` / ``weight_decay``: the setting of the group holding the parameter (NaN when no group
    holds it); ``n_groups``: how many groups hold it (1 is right); ``requires_grad``: 1 when it
    will get gradients. Used to check a hand-written optimizer against :func:`build_optimizer`.
    """
    params = list(model.parameters())
    where = {id(p): i for i, p in enumerate(params)}
    lr, wd = np.full(len(params), np.nan), np.full(len(params), np.nan)
    n_groups = np.zeros(len(params), dtype=np.int64)
    for g in optimizer.param_groups:
        for p in g["params"]:
            i = where.get(id(p))
            if i is None:
                continue
            n_groups[i] += 1
            lr[i] = g.get("initial_lr", g["lr"])
            wd[i] = g.get("weight_decay", 0.0)
    return {"optimizer": type(optimizer).__name__, "lr": lr, "weight_decay": wd, "n_groups": n_groups,
            "requires_grad": np.array([int(p.requires_grad) for p in params], dtype=np.int64)}


def check_optimizer(model: nn.Module, optimizer, what: str = "optimizer_fn") -> torch.optim.Optimizer:
    """``optimizer`` when it is a torch optimizer that updates every trainable parameter of ``model`` exactly once."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"{what} must return a torch.optim.Optimizer, got {type(optimizer).__name__}.")
    s = optimizer_summary(model, optimizer)
    missing = int(np.sum((s["n_groups"] == 0) & (s["requires_grad"] == 1)))
    if missing or np.any(s["n_groups"] > 1):
        raise ConfigError(f"{what}: every trainable parameter must be in exactly one parameter group "
                          f"({missing} not in any, {int(np.sum(s['n_groups'] > 1))} in more than one).")
    return optimizer


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int):
    """Per-step cosine decay from each group's lr to zero."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1))))


def selection_score(val_metrics: dict, select: str = "auroc") -> float:
    """The number ``fit`` maximises: val AUROC (minus the val loss when AUROC is undefined), macro-F1 or accuracy."""
    if select == "auroc":
        return val_metrics["auroc"] if not math.isnan(val_metrics["auroc"]) else -val_metrics["loss"]
    if select not in SELECT_METRICS:
        raise ConfigError(f"select must be one of {', '.join(SELECT_METRICS)}, got {select!r}.")
    return val_metrics[select]


def fit(model: Classifier, train: SplitData, val: SplitData, spec: DatasetSpec, cfg: TrainConfig,
        device: torch.device, log_path: Path | None = None, on_best=None,
        optimizer_fn=None, augment: Callable | None = None) -> tuple[list[dict], dict, int]:
    """Train with validation after every epoch; keep the weights with the best val AUROC (or ``cfg.select``).

    Returns ``(history, best_state_dict, best_epoch)``. ``on_best(model, epoch, val_metrics)``
    is called whenever the best model improves (the CLI saves ``best.pt`` there).
    With ``cfg.patience > 0`` training stops after that many epochs without a
    better selection score; ``cfg.mixup > 0`` mixes the training batches.
    ``optimizer_fn(model, head_lr=cfg.lr, encoder_lr=cfg.encoder_lr, weight_decay=cfg.weight_decay)``
    replaces :func:`build_optimizer` (a hand-written optimizer setup); the loop, schedule, precision
    and best-epoch choice stay the library's.
    ``augment(x, generator)`` replaces the batch augmentation of ``cfg.aug`` (see :func:`run`).
    """
    aug = supervised_augmentation(cfg.aug, spec.modality)
    shuffle_gen = make_generator(cfg.seed + 1)
    aug_gen = make_generator(cfg.seed + 2, device)
    if optimizer_fn is None:
        optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, cfg.encoder_lr, cfg.optimizer)
    else:
        optimizer = check_optimizer(model, optimizer_fn(model, head_lr=cfg.lr, encoder_lr=cfg.encoder_lr,
                                                        weight_decay=cfg.weight_decay))
    scaler = accel.grad_scaler(device, cfg.precision)
    tsplit = TensorSplit(train, device) if cfg.loader == "tensor" else None
    steps = (tsplit.num_batches(cfg.batch_size) if tsplit else -(-len(train) // cfg.batch_size)) * cfg.epochs
    scheduler = None
    if cfg.scheduler == "cosine":
        scheduler = cosine_schedule(optimizer, steps)
    elif cfg.scheduler == "cosine-plateau":
        scheduler = CosineThenPlateau(optimizer, steps // cfg.epochs, cfg.epochs, cfg.cosine_frac,
                                      cfg.plateau_factor, cfg.plateau_patience)
    mixup = MixUp(cfg.mixup, spec.n_classes, seed=cfg.seed + 3) if cfg.mixup > 0 else None
    step_model = accel.maybe_compile(model, cfg.compile)
    history: list[dict] = []
    best_score, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        batches, n_batches = train_batches(train, cfg.batch_size, device, aug, cfg.loader, shuffle_gen, aug_gen, tsplit,
                                           augment)
        lr_used = optimizer.param_groups[-1]["lr"]
        phase = scheduler.phase if isinstance(scheduler, CosineThenPlateau) else None
        train_loss = train_one_epoch(step_model, batches, n_batches, optimizer, scheduler, device,
                                     desc=f"epoch {epoch}/{cfg.epochs}", progress=cfg.progress, mixup=mixup,
                                     scaler=scaler, precision=cfg.precision)
        vm, _ = evaluate(model, val, spec, cfg.eval_batch_size, cfg.n_bins, device)
        if isinstance(scheduler, CosineThenPlateau):
            scheduler.epoch_end(vm["loss"])
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": vm["loss"], "val_acc": vm["acc"],
               "val_auroc": vm["auroc"], "val_ece": vm["ece"], "lr": optimizer.param_groups[-1]["lr"],
               "seconds": time.perf_counter() - t0, "val_f1_macro": vm["f1_macro"]}
        if isinstance(scheduler, CosineThenPlateau):
            row.update(lr_start=lr_used, lr_phase=phase)
        history.append(row)
        if log_path is not None:
            append_jsonl(log_path, row)
        score = selection_score(vm, cfg.select)
        if score > best_score:
            best_score, best_epoch, best_state = score, epoch, copy.deepcopy(model.state_dict())
            if on_best is not None:
                on_best(model, epoch, vm)
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            break
    return history, best_state, best_epoch


# ------------------------------------------------------------------ checkpoints
def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """Rebuild a trained model from ``best.pt``; returns ``(model, checkpoint_dict)``."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} not found; train a model first (python -m medssl.train ... --out DIR).")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"could not read {p} ({type(exc).__name__}); is it a complete file?") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} is not a medssl classifier checkpoint.")
    meta = ckpt["meta"]
    model = build_model(meta["arch"], meta["n_classes"], meta["in_channels"], input_size=meta["input_size"],
                        stem=meta["stem"] if meta["stem"] != "n/a" else "auto")
    if meta.get("feature_norm"):
        model.add_feature_norm()
    model.load_state_dict(ckpt["model_state"])
    model.meta.update(meta)
    return model.to(device).eval(), ckpt


@dataclass
class LoadedRun:
    """A trained model with the splits it should be evaluated on (same size, root and channels)."""

    model: Classifier
    checkpoint: dict
    dataset: str
    size: int
    root: str | None
    splits: dict[str, SplitData]


def load_run(run: str | Path, dataset: str | None = None, root: str | None = None, device: str | torch.device = "cpu",
             splits: Sequence[str] = ("val", "test")) -> LoadedRun:
    """Load ``best.pt`` from a run folder (or a checkpoint path) and the data splits that match it.

    The dataset, image size, data root and grey-as-RGB setting come from the
    checkpoint, so a model is always fed images the way it was trained.
    """
    p = Path(run)
    ckpt_path = p / "best.pt" if p.is_dir() else p
    model, ckpt = load_classifier(ckpt_path, device)
    cfg = ckpt.get("config", {}) or {}
    dataset = dataset or ckpt.get("dataset") or cfg.get("dataset")
    if not dataset:
        raise ConfigError(f"checkpoint {ckpt_path} does not say its dataset; pass dataset='...'.")
    size = int(model.meta.get("input_size", cfg.get("size", 28)))
    root = root or cfg.get("root")
    as_rgb = bool(model.meta.get("as_rgb", cfg.get("as_rgb", False)))
    data = {s: load_split(dataset, s, size=size, root=root, as_rgb=as_rgb) for s in splits}
    return LoadedRun(model, ckpt, dataset, size, root, data)


# ------------------------------------------------------------------------ job
def run(cfg: TrainConfig, out: str | Path, overwrite: bool = False, augment: Callable | None = None) -> dict:
    """The whole supervised job: data, model, training, test evaluation, files. Returns test metrics.

    ``augment(x, generator)`` -- a uint8 batch (B, C, H, W) on the device and a generator in, the
    augmented batch as float in [0, 1] out -- replaces the ``cfg.aug`` preset (e.g. a notebook's own
    pipeline; needs ``loader="tensor"``). The metrics record it under ``augmentation``.
    """
    cfg.validate()
    if augment is not None and cfg.loader != "tensor":
        raise ConfigError("a custom batch augmentation needs --loader tensor (it works on whole batches).")
    t_start = time.perf_counter()
    spec = get_spec(cfg.dataset)
    out = prepare_out_dir(out, overwrite)
    device = resolve_device(cfg.device)
    accel.set_deterministic(cfg.deterministic, device)
    numerics = accel.describe(device, cfg.precision, cfg.deterministic)
    set_seed(cfg.seed)
    splits = load_splits(cfg.dataset, size=cfg.size, root=cfg.root, as_rgb=cfg.as_rgb)
    train_full = splits["train"]
    idx = None
    if cfg.label_frac < 1.0:
        idx = fraction_indices(train_full.labels, cfg.label_frac, cfg.seed, cfg.indices_dir or out, spec.key)
    train = train_full.subset(idx) if idx is not None else train_full
    write_json(out / "config.json", {"config": cfg.to_dict(), "n_train_used": len(train), "numerics": numerics})

    in_channels = 3 if cfg.as_rgb else spec.n_channels
    model = build_model(cfg.model, spec.n_classes, in_channels, input_size=cfg.size, stem=cfg.stem,
                        pretrained=cfg.pretrained, weights_path=cfg.weights, finetune="all",
                        require_pretrained=cfg.require_pretrained)
    if cfg.encoder:
        load_encoder(model, cfg.encoder)
    if cfg.finetune == "head":
        model.freeze_encoder()
    model.meta["finetune"] = cfg.finetune
    if cfg.as_rgb:
        model.meta["as_rgb"] = True
    # A frozen encoder with no pretrained weights keeps BatchNorm statistics that were never estimated
    # (mean 0, var 1): its features are badly scaled and the head barely moves off the class prior.
    # Estimate them on the (un-augmented) training images once, then standardise the features the
    # head sees with their training-set mean and variance (random features share a large offset).
    model.meta["bn_recalibrated"] = needs_bn_recalibration(model, from_encoder=bool(cfg.encoder))
    if model.meta["bn_recalibrated"]:
        model.add_feature_norm()
    accel.to_device(model, device)
    if model.meta["bn_recalibrated"]:
        recalibrate_bn(model.encoder, torch.from_numpy(train.images), cfg.eval_batch_size, device)
        fit_feature_norm(model, torch.from_numpy(train.images), cfg.eval_batch_size, device)

    def save_best(m: Classifier, epoch: int, vm: dict) -> None:
        save_torch({"format": CHECKPOINT_FORMAT, "model_state": m.state_dict(), "meta": m.meta,
                    "config": cfg.to_dict(), "epoch": epoch, "val_metrics": vm, "dataset": spec.key}, out / "best.pt")

    log_path = out / "val_log.jsonl"
    log_path.unlink(missing_ok=True)
    history, best_state, best_epoch = fit(model, train, splits["val"], spec, cfg, device, log_path, save_best,
                                          augment=augment)
    model.load_state_dict(best_state)
    val_m, val_logits = evaluate(model, splits["val"], spec, cfg.eval_batch_size, cfg.n_bins, device)
    test_m, test_logits = evaluate(model, splits["test"], spec, cfg.eval_batch_size, cfg.n_bins, device)
    tta_block, tta_probs = None, None
    if cfg.tta != "none":
        transforms = tta_transforms(cfg.tta, spec.modality, cfg.size)
        tta_probs = predict_tta(model, splits["test"].images, transforms, cfg.eval_batch_size, device)
        tta_block = classification_metrics(splits["test"].labels, tta_probs, spec, n_bins=cfg.n_bins)
        tta_block["loss"] = float(F.nll_loss(torch.from_numpy(probs_to_logits(tta_probs)).double(),
                                             torch.from_numpy(splits["test"].labels)).item())
        tta_block.update(preset=cfg.tta, transforms=[t.name for t in transforms], averaged="softmax probabilities")
    wall = time.perf_counter() - t_start
    path = ensure_file(spec.key, cfg.size, cfg.root)
    result = {
        **test_m,
        "dataset": spec.key, "split": "test", "seed": cfg.seed, "device": str(device), "wall_time_s": wall,
        "best_epoch": best_epoch, "epochs_run": len(history), "label_frac": cfg.label_frac,
        "n_train_labels": len(train),
        "split_sizes": {"train": len(train_full), "train_used": len(train), "val": len(splits["val"]),
                        "test": len(splits["test"])},
        "val_metrics": {k: val_m[k] for k in ("acc", "auroc", "ece", "f1_macro", "loss")},
        "model": model.meta, "n_parameters": count_parameters(model),
        "n_trainable": count_parameters(model, trainable_only=True),
        "bn_recalibrated": model.meta["bn_recalibrated"],
        "augmentation": (supervised_augmentation(cfg.aug, spec.modality).describe() if augment is None
                         else describe_augment(augment)),
        "config": cfg.to_dict(), "numerics": numerics,
        "data": {"file": path.name, "md5": file_md5(path), "synthetic": spec.synthetic,
                 "train_indices_file": None if idx is None else indices_filename(cfg.label_frac, cfg.seed)},
        "versions": {"medssl": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    if cfg.select != "auroc":
        result["selected_on"] = f"val {cfg.select}"
    if cfg.patience:
        result["early_stopped"] = len(history) < cfg.epochs
    if tta_block is not None:
        result["tta"] = tta_block
    write_json(out / "test_metrics.json", result)
    extra = {} if tta_probs is None else {"test_probs_tta": tta_probs}
    with open(out / "predictions.npz", "wb") as fh:
        np.savez(fh, val_logits=val_logits, val_labels=splits["val"].labels, test_logits=test_logits,
                 test_labels=splits["test"].labels, train_indices=np.asarray(idx if idx is not None else []),
                 **extra)
    label = f"{spec.key} {cfg.model} ({spec.describe_positive()})"
    save_figure(reliability_diagram(softmax(test_logits), splits["test"].labels, spec.positive_class, cfg.n_bins,
                                    title=f"{label}\ntest reliability", positive_label=spec.positive_name),
                out / "reliability.png")
    save_figure(learning_curves(history, title=f"{spec.key} {cfg.model}"), out / "curves.png")
    return result


def describe_augment(augment: Callable) -> list[str]:
    """The operations of a custom batch augmentation: a ``BatchAugment``'s list, else ``custom (<name>)``."""
    if isinstance(augment, BatchAugment):
        return augment.spec.describe()
    return [f"custom ({getattr(augment, '__name__', None) or type(augment).__name__})"]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names}
    kw["progress"] = not args.no_progress
    kw["pretrained"] = args.pretrained == "imagenet"
    return TrainConfig(**kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.train", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_common_args(p)
    p.add_argument("--model", default="smallcnn", choices=("smallcnn", "resnet18", "resnet50"))
    p.add_argument("--finetune", default="all", choices=("all", "head"), help="head = frozen backbone")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--encoder-lr", type=float, default=None, help="separate LR for the encoder (fine-tuning)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--aug", default="light", choices=("none", "basic", "light"))
    p.add_argument("--label-frac", type=float, default=1.0, help="fraction of training labels, in (0, 1]")
    p.add_argument("--indices-dir", default=None, help="folder for indices_frac=<f>_seed=<s>.json (default --out)")
    p.add_argument("--pretrained", default="none", choices=("none", "imagenet"))
    p.add_argument("--weights", default=None, help="local ImageNet weights file (.pth)")
    p.add_argument("--stem", default="auto", choices=("auto", "small", "imagenet"))
    p.add_argument("--encoder", default=None, help="start from an SSL encoder checkpoint (ssl_encoder.pt)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--scheduler", default="cosine", choices=SCHEDULERS,
                   help="cosine-plateau = cosine for --cosine-frac of the epochs, then ReduceLROnPlateau")
    p.add_argument("--select", default="auroc", choices=SELECT_METRICS, help="val metric that picks best.pt")
    p.add_argument("--mixup", type=float, default=0.0, help="MixUp alpha (0 = off; small values such as 0.2)")
    p.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    p.add_argument("--cosine-frac", type=float, default=0.5, help="cosine-plateau: share of epochs on the cosine")
    p.add_argument("--plateau-factor", type=float, default=0.5, help="cosine-plateau: LR cut factor")
    p.add_argument("--plateau-patience", type=int, default=3, help="cosine-plateau: epochs before a cut")
    p.add_argument("--tta", default="none", choices=TTA_PRESETS,
                   help="also report test metrics with test-time augmentation (key 'tta')")
    p.add_argument("--as-rgb", action="store_true", help="repeat grey images to 3 channels")
    p.add_argument("--require-pretrained", action="store_true",
                   help="fail instead of falling back to random init when ImageNet weights are unavailable")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA; first epoch is slower)")
    accel.add_precision_args(p)
    p.add_argument("--loader", default="tensor", choices=("tensor", "dataset"),
                   help="tensor = whole split on the device, batched augmentation; dataset = readable per-image path")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    res = run(cfg, args.out, overwrite=args.overwrite)
    note = "  [SYNTHETIC data: not a real result]" if res["data"]["synthetic"] else ""
    print(f"[{res['dataset']} {cfg.model}] best epoch {res['best_epoch']}/{cfg.epochs}: test {format_summary(res)} "
          f"| {res['wall_time_s']:.1f}s on {res['device']} -> {args.out}{note}")
    if "tta" in res:
        print(f"  with TTA ({res['tta']['preset']}, {len(res['tta']['transforms'])} transforms): "
              f"{format_summary(res['tta'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
