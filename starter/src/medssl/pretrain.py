"""SSL pretraining: ``python -m medssl.pretrain --dataset pneumoniamnist --method simclr --epochs 30 --out runs/ssl``.

Uses the training split as unlabelled images (the labels are replaced by -1
before training starts, so nothing can read them). Outputs in ``--out``:

* ``ssl_encoder.pt`` -- the encoder, in the format of :func:`medssl.models.save_encoder`
  (load it with :func:`medssl.models.model_from_encoder`, ``--encoder`` of
  ``medssl.train``, or ``medssl.probe``); rewritten after every finished epoch;
* ``ssl_proj_head.pt`` -- the projection head (not needed downstream);
* ``ssl_config.json`` -- every hyperparameter, the exact augmentation list,
  dataset, seed, epochs run, final loss, wall time, device and status;
* ``ssl_log.jsonl`` -- one line per epoch (loss, lr, seconds);
* ``ssl_loss_curve.png`` -- loss against epoch, with the "learned nothing" level.

From Python, ``run(cfg, out, components=SSLComponents(...))`` trains with a notebook's
own two-view function, projection head, loss or forward step in place of the
library's (the library still drives the loop, devices and mixed precision);
``ssl_config.json`` records under ``components`` which pieces were replaced.

If the loss becomes NaN or infinite the run stops with a message; the files
of the last finished epoch stay as they are.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__, accel
from .augment import ssl_augmentation
from .cli import HelpFormatter, add_common_args, run_cli
from .data import SplitData, TensorSplit, ensure_file, file_md5, load_split
from .errors import ConfigError, MedSSLError
from .models import MODELS, build_model, count_parameters, save_encoder
from .registry import get_spec
from .ssl import (
    METHODS,
    SSLComponents,
    SSLDataset,
    build_ssl_model,
    head_config,
    num_two_view_batches,
    two_view_batches,
)
from .train import LossTracker, cosine_schedule
from .utils import (
    append_jsonl,
    get_logger,
    make_generator,
    prepare_out_dir,
    progress_bar,
    resolve_device,
    save_figure,
    save_torch,
    set_seed,
    write_json,
)

PROJ_HEAD_FORMAT = "medssl-proj-head-v1"


class TrainingDivergedError(MedSSLError):
    """The SSL loss became NaN or infinite."""


@dataclass
class SSLConfig:
    """Every hyperparameter of a pretraining run; saved in ``ssl_config.json``."""

    dataset: str
    method: str = "simclr"
    backbone: str = "resnet18"
    stem: str = "auto"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    proj_dim: int = 128
    hidden_dim: int | None = None
    tau: float = 0.2
    queue_size: int | None = None      # None: min(4096, half the training images), see resolve_queue_size
    momentum: float = 0.99
    aug: str = "strong"
    seed: int = 42
    size: int = 28
    loader: str = "tensor"
    device: str = "auto"
    root: str | None = None
    progress: bool = True
    precision: str = "auto"            # auto: bf16 (CUDA >= 8.0) / fp16 + GradScaler (older CUDA) / fp32 (CPU, MPS)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> SSLConfig:
        get_spec(self.dataset)
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        if self.backbone not in MODELS:
            raise ConfigError(f"--backbone must be one of {', '.join(MODELS)}, got {self.backbone!r}.")
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be >= 2 (contrastive learning needs negatives), "
                              f"got {self.batch_size}.")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}.")
        if not self.tau > 0:
            raise ConfigError(f"--tau must be > 0, got {self.tau} (0.1-0.5 is usual).")
        if self.proj_dim < 1:
            raise ConfigError(f"--proj-dim must be >= 1, got {self.proj_dim}.")
        if self.method == "moco" and self.queue_size is not None:
            if self.queue_size < self.batch_size:
                raise ConfigError(f"--queue-size ({self.queue_size}) should hold at least one batch "
                                  f"(--batch-size {self.batch_size}); 2048-8192 is usual.")
        if self.method == "moco" and not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum} (0.99 is usual).")
        if self.aug not in ("mild", "strong"):
            raise ConfigError(f"--aug must be 'mild' or 'strong', got {self.aug!r}.")
        if self.loader not in ("tensor", "dataset"):
            raise ConfigError(f"--loader must be 'tensor' or 'dataset', got {self.loader!r}.")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"--optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}.")
        if self.scheduler not in ("cosine", "constant"):
            raise ConfigError(f"--scheduler must be 'cosine' or 'constant', got {self.scheduler!r}.")
        accel.check_precision(self.precision)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_queue_size(queue_size: int | None, n_train: int, batch_size: int) -> int:
    """MoCo queue length: as given, or by default min(4096, n_train // 2) (but at least one batch).

    Every epoch puts two keys per image into the queue, so a queue longer than
    the training set holds older keys of the very image being matched: they
    become "negatives" that are really positives. Half the training images keeps
    that rare on small sets such as BreastMNIST (546 images -> 273).
    """
    if queue_size is not None:
        if queue_size > n_train:
            get_logger().warning("--queue-size %d is larger than the %d training images: older keys of the same "
                                 "image will act as negatives; consider --queue-size %d.", queue_size, n_train,
                                 max(batch_size, n_train // 2))
        return queue_size
    return max(batch_size, min(4096, n_train // 2))


def unlabelled(data: SplitData) -> SplitData:
    """A copy of ``data`` whose labels are all -1: SSL must not (and now cannot) use them."""
    return SplitData(data.spec, data.split, data.size, data.images, np.full(len(data), -1, dtype=np.int64))


def ssl_loss_curve(history: Sequence[dict], chance: float | None = None, title: str | None = None):
    """Loss against epoch; the dashed line is the loss of an encoder that has learned nothing."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ep = [r["epoch"] for r in history]
    ax.plot(ep, [r["loss"] for r in history], "o-", label="training loss")
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label=f"no learning ({chance:.2f})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def epoch_chance_loss(model: nn.Module, n: int, batch_size: int) -> float:
    """The epoch loss of an encoder that has learned nothing, for ``n`` images in batches of ``batch_size``.

    The epoch loss weights each batch's mean loss by its size, and a short last batch has its own, lower
    no-learning level (``log(2b - 1)`` for SimCLR), so the level is weighted the same way. A last batch of one
    image is skipped by the loop and left out here too.
    """
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full + ([rest] if rest >= 2 else [])
    if not sizes:
        raise ConfigError(f"{n} training image(s): too few for a batch of two.")
    return sum(b * model.chance_loss(b) for b in sizes) / sum(sizes)


def _optimizer(params, cfg: SSLConfig) -> torch.optim.Optimizer:
    params = list(params)
    fused = accel.fused_ok(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True,
                               fused=fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def ssl_train_epoch(model: nn.Module, batches, n_steps: int, optimizer: torch.optim.Optimizer, scheduler=None,
                    device: torch.device | str | None = None, scaler: torch.amp.GradScaler | None = None,
                    precision: str = "auto", desc: str = "ssl", progress: bool = True
                    ) -> tuple[float, int, tuple[int, float] | None]:
    """One epoch of contrastive training over two-view ``batches``.

    Returns ``(mean loss, images seen, None)``, or as the last item ``(step, loss)``
    of the first step whose loss was NaN or infinite. The loss is summed and
    checked on the device and read once, at the end (no per-step host sync).
    Steps run under :func:`medssl.accel.autocast` with ``scaler``
    (default :func:`medssl.accel.grad_scaler`) for float16.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    scaler = scaler if scaler is not None else accel.grad_scaler(device, precision)
    model.train()
    tracker = LossTracker(device)
    bar = progress_bar(batches, progress, total=n_steps, leave=False, desc=desc)
    show, next_show = not getattr(bar, "disable", True), 0.0
    with accel.training_math(device, precision):
        for v1, v2 in bar:
            v1 = accel.channels_last(v1.to(device, non_blocking=True))
            v2 = accel.channels_last(v2.to(device, non_blocking=True))
            with accel.autocast(device, precision):
                loss = model(v1, v2)
            accel.optimizer_step(loss, optimizer, scaler, scheduler)
            tracker.add(loss, len(v1))
            if show and time.perf_counter() >= next_show:   # reading the mean waits for the GPU: once a second
                bar.set_postfix(loss=f"{tracker.mean():.4f}")
                next_show = time.perf_counter() + 1.0
    mean, bad = tracker.finish()
    return mean, tracker.count, bad


def run(cfg: SSLConfig, out: str | Path, overwrite: bool = False, components: SSLComponents | None = None) -> dict:
    """The whole pretraining job; returns what is written to ``ssl_config.json``.

    ``components`` replaces pieces of SimCLR-lite with your own (see :class:`medssl.ssl.SSLComponents`).
    """
    cfg.validate()
    parts = components or SSLComponents()
    if parts.views is not None and cfg.loader != "tensor":
        raise ConfigError("custom two-view batches need --loader tensor (they work on whole batches).")
    t_start = time.perf_counter()
    spec = get_spec(cfg.dataset)
    out = prepare_out_dir(out, overwrite)
    device = resolve_device(cfg.device)
    accel.set_deterministic(cfg.deterministic, device)
    numerics = accel.describe(device, cfg.precision, cfg.deterministic)
    set_seed(cfg.seed)
    train = unlabelled(load_split(cfg.dataset, "train", size=cfg.size, root=cfg.root))
    aug = ssl_augmentation(spec.modality, cfg.aug)

    queue_size = resolve_queue_size(cfg.queue_size, len(train), cfg.batch_size) if cfg.method == "moco" else None

    classifier = build_model(cfg.backbone, spec.n_classes, spec.n_channels, input_size=cfg.size, stem=cfg.stem)
    model = build_ssl_model(cfg.method, classifier.encoder, classifier.feature_dim, proj_dim=cfg.proj_dim,
                            hidden_dim=cfg.hidden_dim, tau=cfg.tau, queue_size=queue_size or 1,
                            momentum=cfg.momentum, components=parts)
    accel.to_device(model, device)
    optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    scaler = accel.grad_scaler(device, cfg.precision)
    if cfg.loader == "tensor":
        tsplit = TensorSplit(train, device)
        steps_per_epoch = num_two_view_batches(len(tsplit), cfg.batch_size)
    else:
        ds = SSLDataset(train, aug)
        steps_per_epoch = num_two_view_batches(len(ds), cfg.batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"{cfg.dataset} has {len(train)} training images: too few for a batch of two.")
    scheduler = cosine_schedule(optimizer, steps_per_epoch * cfg.epochs) if cfg.scheduler == "cosine" else None
    shuffle_gen = make_generator(cfg.seed + 1)
    aug_gen = make_generator(cfg.seed + 2, device)
    chance = epoch_chance_loss(model, len(train), cfg.batch_size)

    data_file = ensure_file(spec.key, cfg.size, cfg.root)
    record = {
        "method": f"{cfg.method}-lite", "dataset": spec.key, "seed": cfg.seed, "epochs": cfg.epochs,
        "status": "running", "epochs_run": 0, "final_loss": None, "chance_loss": chance, "wall_time_s": None,
        "device": str(device), "config": cfg.to_dict(), "numerics": numerics,
        "augmentations": aug.describe(), "augmentation_spec": aug.to_dict(), "modality": spec.modality,
        "labels_used": False, "n_train_images": len(train), "steps_per_epoch": steps_per_epoch,
        "moco": {"queue_size": queue_size, "queue_size_given": cfg.queue_size, "momentum": cfg.momentum,
                 "symmetric_loss": True} if cfg.method == "moco" else None,
        "optimizer": {"name": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                      "scheduler": f"{cfg.scheduler} (per step)"},
        "encoder": {**{k: classifier.meta[k] for k in ("arch", "stem", "in_channels", "input_size")},
                    "feature_dim": classifier.feature_dim, "n_parameters": count_parameters(classifier.encoder)},
        "proj_head": head_config(model.head), "components": parts.describe(),
        "data": {"file": data_file.name, "md5": file_md5(data_file), "synthetic": spec.synthetic, "split": "train"},
        "versions": {"medssl": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "files": {"encoder": "ssl_encoder.pt", "proj_head": "ssl_proj_head.pt", "log": "ssl_log.jsonl",
                  "loss_curve": "ssl_loss_curve.png"},
    }
    write_json(out / "ssl_config.json", record)
    log_path = out / "ssl_log.jsonl"
    log_path.unlink(missing_ok=True)
    title = f"{cfg.method}-lite on {spec.key} ({cfg.backbone}, B={cfg.batch_size}, tau={cfg.tau:g})"

    def save_checkpoint(epoch: int, loss: float) -> None:
        extra = {"ssl_method": cfg.method, "dataset": spec.key, "epoch": epoch, "loss": loss, "seed": cfg.seed,
                 "augmentations": aug.describe()}
        save_encoder(classifier, out / "ssl_encoder.pt", extra=extra)
        save_torch({"format": PROJ_HEAD_FORMAT, "method": cfg.method, **head_config(model.head),
                    "state_dict": model.head.state_dict(), "epoch": epoch}, out / "ssl_proj_head.pt")

    def finish(status: str, history: list[dict]) -> dict:
        record.update(status=status, epochs_run=len(history), final_loss=history[-1]["loss"] if history else None,
                      wall_time_s=time.perf_counter() - t_start)
        write_json(out / "ssl_config.json", record)
        if history:
            save_figure(ssl_loss_curve(history, chance, title), out / "ssl_loss_curve.png")
        return record

    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        if cfg.loader == "tensor":
            batches = two_view_batches(tsplit, cfg.batch_size, aug, shuffle_gen, aug_gen, views=parts.views)
        else:
            batches = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=True, generator=shuffle_gen,
                                                  num_workers=0, drop_last=len(ds) % cfg.batch_size == 1)
        loss, count, bad = ssl_train_epoch(model, batches, steps_per_epoch, optimizer, scheduler, device, scaler,
                                           cfg.precision, f"{cfg.method} epoch {epoch}/{cfg.epochs}", cfg.progress)
        if bad is not None:
            finish("diverged", history)
            kept = (f"the checkpoint of epoch {history[-1]['epoch']} (loss {history[-1]['loss']:.4f}) is kept in "
                    f"{out / 'ssl_encoder.pt'}") if history else "no epoch finished, so no checkpoint was written"
            raise TrainingDivergedError(
                f"the {cfg.method} loss became {bad[1]} at epoch {epoch}, step {bad[0]}; "
                f"{kept}. Lower --lr (e.g. {cfg.lr / 3:.0e}) or raise --tau, then run again with --overwrite.")
        row = {"epoch": epoch, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
               "steps": steps_per_epoch, "images": count, "seconds": time.perf_counter() - t0}
        history.append(row)
        append_jsonl(log_path, row)
        save_checkpoint(epoch, row["loss"])
        record.update(epochs_run=epoch, final_loss=row["loss"])
    return finish("done", history)


def config_from_args(args: argparse.Namespace) -> SSLConfig:
    names = {f.name for f in fields(SSLConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names}
    kw["progress"] = not args.no_progress
    return SSLConfig(**kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.pretrain", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_common_args(p)
    p.add_argument("--method", default="simclr", choices=METHODS)
    p.add_argument("--backbone", default="resnet18", choices=MODELS)
    p.add_argument("--stem", default="auto", choices=("auto", "small", "imagenet"),
                   help="ResNet stem; auto = 3x3 stride-1 stem for images <= 32 px")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128, help="images per step (each gives two views)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"))
    p.add_argument("--scheduler", default="cosine", choices=("cosine", "constant"))
    p.add_argument("--proj-dim", type=int, default=128, help="output size of the projection head")
    p.add_argument("--hidden-dim", type=int, default=None, help="hidden size of the projection head (default: "
                   "the encoder's feature size)")
    p.add_argument("--tau", type=float, default=0.2, help="temperature of the contrastive softmax")
    p.add_argument("--queue-size", type=int, default=None,
                   help="MoCo: number of negative keys kept (default min(4096, half the training images))")
    p.add_argument("--momentum", type=float, default=0.99, help="MoCo: EMA factor of the key encoder")
    p.add_argument("--aug", default="strong", choices=("mild", "strong"), help="SSL augmentation strength "
                   "(modality-aware presets, see medssl.augment.ssl_augmentation)")
    p.add_argument("--loader", default="tensor", choices=("tensor", "dataset"),
                   help="tensor = whole split on the device, batched two-view augmentation; "
                        "dataset = readable SSLDataset + DataLoader")
    accel.add_precision_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    res = run(cfg, args.out, overwrite=args.overwrite)
    note = "  [SYNTHETIC data]" if res["data"]["synthetic"] else ""
    print(f"[{res['dataset']} {res['method']} {cfg.backbone}] {res['epochs_run']} epochs: final loss "
          f"{res['final_loss']:.4f} (no-learning level {res['chance_loss']:.4f}) | {res['wall_time_s']:.1f}s on "
          f"{res['device']} -> {args.out}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
