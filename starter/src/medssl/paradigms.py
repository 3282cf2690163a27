"""The seed projects' BloodMNIST experiments, on any 2D MedMNIST dataset.

``python -m medssl.paradigms seed000|recipe|survey --dataset bloodmnist --out runs/paradigms/x``

Three earlier projects (the course's *seed projects*) studied BloodMNIST, an
8-class blood-cell set. Each of their headline experiments is one function here,
built from the library's own pieces (:func:`medssl.train.run`,
:func:`medssl.pretrain.run`, :mod:`medssl.probe`, :mod:`medssl.embed`):

* :func:`run_seed000` -- *seed project 000*: one backbone (ResNet-50, 64x64, RGB,
  Normalize(0.5, 0.5)) in three regimes: from scratch, ImageNet fine-tune, and
  SimCLR (tau = 0.5, training split only, no labels) then fine-tune; the
  checkpoint with the best validation macro-F1 is tested. The ImageNet regime
  runs when the weights can be had (torchvision cache, download, or a local
  file) and is reported as ``skipped: <reason>`` otherwise.
* :func:`run_recipe` -- *seed projects 001/003*: ResNet-18 with a 3x3 stride-1
  stem and no max-pool (ImageNet's 7x7 kernel bicubic-resized into it when the
  weights exist), MixUp, cosine then ReduceLROnPlateau, early stopping,
  test-time augmentation, fixed seeds. Every run also gets a confusion matrix,
  training curves, a sample-prediction grid and an Excel report.
* :func:`run_survey` -- *seed project 004*: frozen encoders (SSL if given or
  pretrained here, ImageNet if available, random always) read by a logistic
  regression, and PCA / t-SNE pictures of their features, for several datasets
  in one call.

Every table prints the seeds' published BloodMNIST numbers next to ours. Those
numbers are quoted from the seed projects' READMEs; they are on BloodMNIST, so
they compare with ours only when ``--dataset bloodmnist``.

Smoke mode (``--smoke``; the notebook's ``SMOKE``) runs the same code on tiny
settings: 1 epoch, at most a few hundred training images, 28 px, ImageNet-style
ResNet stems, no downloads. If the dataset is not on disk it falls back to a
synthetic set (``synthetic8`` for multi-class keys) and says so loudly. Smoke and
synthetic numbers are never results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import accel
from .calibration import softmax
from .cli import HelpFormatter, add_common_args, run_cli
from .data import ensure_file, load_split, load_splits, stratified_fraction
from .errors import CheckpointError, ConfigError, DatasetNotAvailableError, WeightsUnavailableError
from .models import ENCODER_FORMAT, MODELS, build_model, imagenet_state_dict, model_from_encoder, read_encoder
from .recipes import TTA_PRESETS
from .registry import get_spec
from .train import SELECT_METRICS, TrainConfig
from .utils import (
    RUN_MARKERS,
    atomic_path,
    get_logger,
    mean_std,
    prepare_out_dir,
    read_jsonl,
    resolve_device,
    save_figure,
    save_torch,
    set_seed,
    write_json,
    write_text,
)

# ------------------------------------------------------------ published numbers
# Quoted from the seed projects' READMEs (all on BloodMNIST, official splits).
PUBLISHED_SEED000 = {
    "source": "seed project 000", "dataset": "bloodmnist", "arch": "resnet50", "size": 64,
    "rows": {"scratch": {"loss": 0.2291, "acc": 0.9366, "f1_macro": 0.9290},
             "imagenet": {"loss": 0.1970, "acc": 0.9617, "f1_macro": 0.9588},
             "ssl": {"loss": 0.1708, "acc": 0.9591, "f1_macro": 0.9533}},
}
PUBLISHED_RECIPE = (
    {"source": "seed project 001", "dataset": "bloodmnist", "arch": "resnet18 (3x3 stem, no max-pool)",
     "size": 28, "val_acc": 0.9743, "acc_tta": 0.9722, "f1_macro_tta": 0.9695, "seeds": "42 (one run)"},
    {"source": "seed project 003", "dataset": "bloodmnist", "arch": "resnet18 (3x3 stem, no max-pool)",
     "size": 28, "val_acc": 0.9696, "acc_tta": 0.9719, "f1_macro_tta": 0.9693, "seeds": "42 (one run)"},
)
# The MedMNIST v2 paper's ResNet-18 (28) row (test AUC / ACC), for the binary course datasets.
MEDMNIST_V2_RESNET18_28 = {
    "breastmnist": {"auroc": 0.901, "acc": 0.863},
    "pneumoniamnist": {"auroc": 0.944, "acc": 0.854},
}
REGIMES = ("scratch", "imagenet", "ssl")
REGIME_NAMES = {"scratch": "A: scratch (random init)", "imagenet": "B: ImageNet fine-tune",
                "ssl": "C: SimCLR pretrain + fine-tune"}

SMOKE_MAX_TRAIN = 200     # training images used for supervised / probe fits in smoke mode
SMOKE_MAX_EVAL = 200      # val/test images used by the survey in smoke mode
SMOKE_SIZE = 28
SMOKE_SSL_MAX_TRAIN = 1000  # the survey pretrains SSL encoders in smoke mode only on training splits this small


# ================================================================== helpers
def log(msg: str) -> None:
    """Print for notebooks and logs alike (one line, flushed)."""
    print(msg, flush=True)


def banner(text: str) -> str:
    line = "!" * 100
    return f"{line}\n{textwrap.fill(text, 96, initial_indent='!! ', subsequent_indent='!! ')}\n{line}"


def synthetic_fallback(key: str) -> str:
    """The synthetic stand-in for a dataset: ``synthetic8`` for multi-class keys, ``synthetic`` for binary ones."""
    spec = get_spec(key)
    return "synthetic" if spec.is_binary else "synthetic8"


def resolve_dataset(key: str, size: int = 28, root: str | os.PathLike | None = None,
                    smoke: bool = False) -> tuple[str, str | None]:
    """``(key to run on, warning or None)``.

    Real runs use (and download if needed) the requested file. Smoke runs never
    download: without the file on disk they switch to the synthetic stand-in
    and return a loud warning that is printed and stored with every result.
    """
    spec = get_spec(key)
    if spec.synthetic:
        return spec.key, None
    try:
        ensure_file(spec.key, size=size, root=root, download=not smoke)
        return spec.key, None
    except DatasetNotAvailableError:
        if not smoke:
            raise
    fb = synthetic_fallback(spec.key)
    msg = (f"SMOKE MODE: {spec.filename(size)} is not on this machine, so this smoke run uses the SYNTHETIC "
           f"'{fb}' set instead of {spec.key}. Its numbers only show that the code runs; they are NOT results. "
           f"Run with SMOKE = False (or without --smoke) where {spec.key} can be downloaded for real numbers.")
    log(banner(msg))
    get_logger().warning(msg)
    return fb, msg


def smoke_label_frac(key: str, max_train: int = SMOKE_MAX_TRAIN) -> float:
    """The label fraction that leaves about ``max_train`` training images (split size from the registry)."""
    n = get_spec(key).n_samples["train"]
    return 1.0 if n <= max_train else max(max_train / n, 1e-6)


def imagenet_status(arch: str, weights: str | os.PathLike | None = None,
                    allow_download: bool = True) -> tuple[bool, str]:
    """Can ImageNet weights for ``arch`` be used? ``(ok, how-or-why-not)``; nothing is loaded into a model.

    Order: a local ``weights`` file; torchvision's cache; a download (only with ``allow_download``).
    """
    if arch not in MODELS:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(MODELS)}.")
    if arch == "smallcnn":
        return False, "smallcnn has no ImageNet weights"
    if weights:
        p = Path(weights)
        return (True, f"file:{p.name}") if p.is_file() else (False, f"weights file {p} does not exist")
    from torchvision.models import get_model_weights

    w = get_model_weights(arch).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)
    if cached.is_file():
        return True, f"imagenet:{w} (cached)"
    if not allow_download:
        return False, (f"ImageNet weights for {arch} are not in the torchvision cache ({cached.parent}) and smoke "
                       "mode does not download; pass a local weights file to use them")
    try:
        imagenet_state_dict(arch, required=True)
        return True, f"imagenet:{w} (downloaded)"
    except WeightsUnavailableError as exc:
        return False, str(exc).split(". To use")[0]


def encoder_as_rgb(path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A 3-channel copy of a 1-channel encoder checkpoint, for models fed grey images repeated to RGB.

    The first convolution's weights are repeated over R, G and B and divided by
    3, so on an image whose three channels are equal it computes exactly what
    the 1-channel encoder computed. Needed because SSL pretraining reads the
    grey images as they are stored, while seed 000's recipe feeds RGB.
    """
    ck = read_encoder(path)
    if ck["in_channels"] == 3:
        return Path(path)
    if ck["in_channels"] != 1:
        raise CheckpointError(f"{path}: can only expand 1-channel encoders to RGB, got {ck['in_channels']} channels.")
    target = build_model(ck["arch"], 2, 3, input_size=ck.get("input_size", 28),
                         stem=ck["stem"] if ck["stem"] != "n/a" else "auto").encoder.state_dict()
    sd, expanded = {}, []
    for k, v in ck["state_dict"].items():
        t = target.get(k)
        if t is not None and v.ndim == 4 and v.shape[1] == 1 and t.shape[1] == 3 and t.shape[0] == v.shape[0]:
            v = v.repeat(1, 3, 1, 1) / 3.0
            expanded.append(k)
        sd[k] = v
    if not expanded:
        raise CheckpointError(f"{path}: found no 1-channel input convolution to expand.")
    extra = dict(ck.get("extra", {}), rgb_from=str(Path(path).name), rgb_expanded=expanded)
    return save_torch({**{k: v for k, v in ck.items() if k not in ("state_dict", "extra")}, "format": ENCODER_FORMAT,
                       "in_channels": 3, "extra": extra, "state_dict": sd}, out)


def _md_table(rows: Sequence[Mapping], columns: Sequence[str], digits: int = 4) -> str:
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "/")

    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def _write_csv(path: Path, rows: Sequence[Mapping], columns: Sequence[str]) -> Path:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=list(columns)).to_csv(tmp, index=False)
    return path


def _notice(dataset: str, smoke: bool, fallback: str | None) -> list[str]:
    spec = get_spec(dataset)
    lines = []
    if fallback:
        lines.append(f"> **{fallback}**")
    elif spec.synthetic:
        lines.append("> **SYNTHETIC data: these numbers only show that the code runs; they are not results.**")
    if smoke:
        lines.append("> **SMOKE run (1 epoch, tiny subsets): not a result.**")
    return lines


def short_name(name: str, width: int = 16) -> str:
    """Class names for axis labels: cut at '(' (BloodMNIST's long granulocyte label) and at ``width``."""
    name = name.split("(")[0].strip() or name
    return name if len(name) <= width else name[:width - 1] + "."


# ================================================================== seed 000
@dataclass
class Seed000Config:
    """Seed project 000's comparison: one backbone, three initialisations, best val macro-F1 tested."""

    dataset: str
    arch: str = "resnet50"
    size: int = 64
    stem: str = "auto"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0          # AdamW with no decay = the seed's Adam
    aug: str = "light"
    ssl_epochs: int = 50
    ssl_batch_size: int = 128
    ssl_lr: float = 1e-3
    tau: float = 0.5
    ssl_aug: str = "strong"
    regimes: list[str] = field(default_factory=lambda: list(REGIMES))
    weights: str | None = None         # local ImageNet weights file for the ImageNet regime
    label_frac: float = 1.0
    seed: int = 42
    root: str | None = None
    device: str = "auto"
    progress: bool = True
    smoke: bool = False
    precision: str = "auto"            # training precision, see medssl.accel.amp_dtype (evaluation is always fp32)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> Seed000Config:
        get_spec(self.dataset)
        bad = [r for r in self.regimes if r not in REGIMES]
        if bad or not self.regimes:
            raise ConfigError(f"--regimes must be some of {', '.join(REGIMES)}, got {list(self.regimes)}.")
        if self.arch not in MODELS:
            raise ConfigError(f"--arch must be one of {', '.join(MODELS)}, got {self.arch!r}.")
        if self.epochs < 1 or self.ssl_epochs < 1:
            raise ConfigError(f"--epochs and --ssl-epochs must be >= 1, got {self.epochs} and {self.ssl_epochs}.")
        if not self.tau > 0:
            raise ConfigError(f"--tau must be > 0, got {self.tau}.")
        accel.check_precision(self.precision)
        return self

    def effective(self) -> Seed000Config:
        """The settings actually run: smoke mode shrinks epochs, image size and stems."""
        if not self.smoke:
            return self
        return replace(self, epochs=1, ssl_epochs=1, size=SMOKE_SIZE, batch_size=min(self.batch_size, 64),
                       ssl_batch_size=min(self.ssl_batch_size, 64),
                       stem="imagenet" if self.arch != "smallcnn" else "auto")

    def train_config(self, dataset: str, out: Path, label_frac: float) -> TrainConfig:
        return TrainConfig(dataset=dataset, model=self.arch, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, weight_decay=self.weight_decay, seed=self.seed, size=self.size, aug=self.aug,
                           label_frac=label_frac, stem=self.stem, optimizer="adamw", scheduler="constant",
                           select="f1_macro", as_rgb=True, device=self.device, root=self.root,
                           indices_dir=str(out / "indices"), progress=self.progress, precision=self.precision,
                           deterministic=self.deterministic)


def _regime_row(regime: str, res: dict | None = None, status: str = "ok", extra_seconds: float = 0.0) -> dict:
    pub = PUBLISHED_SEED000["rows"][regime]
    row = {"regime": REGIME_NAMES[regime], "key": regime, "status": status,
           "seed000_loss": pub["loss"], "seed000_acc": pub["acc"], "seed000_f1_macro": pub["f1_macro"]}
    if res is not None:
        row.update(init=res["model"]["init"], test_loss=res["loss"], test_acc=res["acc"],
                   test_f1_macro=res["f1_macro"], test_auroc=res["auroc"], test_ece=res["ece"],
                   best_epoch=res["best_epoch"], epochs_run=res["epochs_run"],
                   wall_time_s=res["wall_time_s"] + extra_seconds)
    return row


SEED000_COLUMNS = ("regime", "status", "init", "test_loss", "test_acc", "test_f1_macro", "test_auroc", "test_ece",
                   "best_epoch", "wall_time_s", "seed000_loss", "seed000_acc", "seed000_f1_macro")


def seed000_markdown(record: dict) -> str:
    c = record["config"]
    lines = [f"### Seed 000 comparison on {record['dataset']} ({c['arch']}, {c['size']} px, RGB, "
             f"{c['epochs']} epochs; SimCLR tau={c['tau']:g}, {c['ssl_epochs']} epochs)", ""]
    lines += _notice(record["dataset"], c["smoke"], record.get("fallback"))
    lines += ["", _md_table(record["rows"], SEED000_COLUMNS), "",
              f"Checkpoint: best validation macro-F1. Columns `seed000_*`: {PUBLISHED_SEED000['source']}'s published "
              f"test numbers on **BloodMNIST** ({PUBLISHED_SEED000['arch']}, {PUBLISHED_SEED000['size']} px)"
              + ("" if record["dataset"] == "bloodmnist" else f", a different dataset from {record['dataset']}")
              + ". Wall time of the SSL row includes pretraining."]
    return "\n".join(lines)


def run_seed000(cfg: Seed000Config, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Scratch vs ImageNet fine-tune vs SimCLR + fine-tune.

    Writes ``seed000_table.md``, ``seed000_table.csv`` and ``seed000_results.json`` (plus one run folder per regime).
    """
    cfg.validate()
    t0 = time.perf_counter()
    run_cfg = cfg.effective()
    key, fallback = resolve_dataset(cfg.dataset, run_cfg.size, cfg.root, cfg.smoke)
    out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "seed000_results.json"))
    label_frac = min(cfg.label_frac, smoke_label_frac(key)) if cfg.smoke else cfg.label_frac
    record: dict = {"experiment": "seed000", "dataset": key, "requested_dataset": cfg.dataset, "fallback": fallback,
                    "synthetic": get_spec(key).synthetic, "smoke": cfg.smoke, "config": asdict(run_cfg),
                    "label_frac": label_frac, "published": PUBLISHED_SEED000, "rows": [], "status": "running"}
    write_json(out / "seed000_results.json", record)
    base = run_cfg.train_config(key, out, label_frac)
    rows: list[dict] = []
    for regime in run_cfg.regimes:
        log(f"[seed000 {key}] regime {REGIME_NAMES[regime]} ...")
        if regime == "scratch":
            rows.append(_regime_row(regime, _train(base, out / "scratch", overwrite)))
        elif regime == "imagenet":
            ok, how = imagenet_status(run_cfg.arch, run_cfg.weights, allow_download=not cfg.smoke)
            if not ok:
                rows.append(_regime_row(regime, status=f"skipped: {how}"))
                log(f"[seed000 {key}] ImageNet fine-tune skipped: {how}")
                continue
            try:
                res = _train(replace(base, pretrained=True, weights=run_cfg.weights, require_pretrained=True),
                             out / "imagenet", overwrite)
                rows.append(_regime_row(regime, res))
            except WeightsUnavailableError as exc:
                rows.append(_regime_row(regime, status=f"skipped: {str(exc).split('. To use')[0]}"))
        else:
            from .pretrain import SSLConfig
            from .pretrain import run as pretrain_run

            ssl_cfg = SSLConfig(dataset=key, method="simclr", backbone=run_cfg.arch, stem=run_cfg.stem,
                                epochs=run_cfg.ssl_epochs, batch_size=run_cfg.ssl_batch_size, lr=run_cfg.ssl_lr,
                                tau=run_cfg.tau, aug=run_cfg.ssl_aug, seed=run_cfg.seed, size=run_cfg.size,
                                device=run_cfg.device, root=run_cfg.root, progress=run_cfg.progress,
                                precision=run_cfg.precision, deterministic=run_cfg.deterministic)
            ssl_rec = pretrain_run(ssl_cfg, out / "ssl_pretrain", overwrite)
            enc = encoder_as_rgb(out / "ssl_pretrain" / "ssl_encoder.pt", out / "ssl_pretrain" / "ssl_encoder_rgb.pt")
            res = _train(replace(base, encoder=str(enc)), out / "ssl", overwrite)
            row = _regime_row(regime, res, extra_seconds=ssl_rec["wall_time_s"])
            row.update(ssl_final_loss=ssl_rec["final_loss"], ssl_chance_loss=ssl_rec["chance_loss"],
                       ssl_seconds=ssl_rec["wall_time_s"])
            rows.append(row)
        record["rows"] = rows
        write_json(out / "seed000_results.json", record)
    record.update(rows=rows, status="done", wall_time_s=time.perf_counter() - t0,
                  device=str(resolve_device(cfg.device)))
    record["table_md"] = seed000_markdown(record)
    write_text(out / "seed000_table.md", record["table_md"] + "\n")
    _write_csv(out / "seed000_table.csv", rows, (*SEED000_COLUMNS, "key"))
    write_json(out / "seed000_results.json", record)
    return record


def _train(tcfg: TrainConfig, out: Path, overwrite: bool) -> dict:
    from .train import run as train_run

    return train_run(tcfg, out, overwrite=overwrite)


# ================================================================== recipe (seeds 001/003)
@dataclass
class RecipeConfig:
    """Seeds 001/003's adapted ResNet-18 recipe (their defaults, MixUp alpha raised to a small 0.2)."""

    dataset: str
    arch: str = "resnet18"
    size: int = 28
    stem: str = "small"
    pretrained: bool = True            # ImageNet weights into the 3x3 stem when available (else random, logged)
    weights: str | None = None
    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.008
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    aug: str = "light"
    mixup: float = 0.2
    cosine_frac: float = 0.55          # ~33 of 60 epochs on the cosine, as in the seeds
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    patience: int = 15
    select: str = "acc"
    tta: str = "standard"
    seeds: list[int] = field(default_factory=lambda: [42])
    label_frac: float = 1.0
    grid_images: int = 16
    root: str | None = None
    device: str = "auto"
    progress: bool = True
    smoke: bool = False
    precision: str = "auto"            # training precision, see medssl.accel.amp_dtype (evaluation is always fp32)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> RecipeConfig:
        get_spec(self.dataset)
        if self.arch not in MODELS:
            raise ConfigError(f"--arch must be one of {', '.join(MODELS)}, got {self.arch!r}.")
        if not self.seeds:
            raise ConfigError("give at least one seed, e.g. --seeds 42 43 44.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds must be distinct, got {list(self.seeds)}.")
        if self.tta not in TTA_PRESETS:
            raise ConfigError(f"--tta must be one of {', '.join(TTA_PRESETS)}, got {self.tta!r}.")
        if self.select not in SELECT_METRICS:
            raise ConfigError(f"--select must be one of {', '.join(SELECT_METRICS)}, got {self.select!r}.")
        accel.check_precision(self.precision)
        return self

    def effective(self) -> RecipeConfig:
        if not self.smoke:
            return self
        return replace(self, epochs=1, size=SMOKE_SIZE, batch_size=min(self.batch_size, 64), patience=0,
                       stem="imagenet" if self.arch != "smallcnn" else "auto")

    def train_config(self, dataset: str, seed: int, pretrained: bool, label_frac: float) -> TrainConfig:
        return TrainConfig(dataset=dataset, model=self.arch, epochs=self.epochs, batch_size=self.batch_size,
                           lr=self.lr, weight_decay=self.weight_decay, seed=seed, size=self.size, aug=self.aug,
                           label_frac=label_frac, pretrained=pretrained, weights=self.weights if pretrained else None,
                           stem=self.stem, optimizer=self.optimizer, scheduler="cosine-plateau",
                           cosine_frac=self.cosine_frac, plateau_factor=self.plateau_factor,
                           plateau_patience=self.plateau_patience, patience=self.patience, mixup=self.mixup,
                           select=self.select, tta=self.tta, device=self.device, root=self.root,
                           progress=self.progress, precision=self.precision, deterministic=self.deterministic)


def training_curves_figure(history: Sequence[dict], best_epoch: int | None = None, title: str | None = None,
                           mixup: bool = False):
    """Loss, validation accuracy / macro-F1 / AUROC and the learning rate against epoch."""
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    a.plot(ep, [r["train_loss"] for r in history], "o-",
           label="train loss (against MixUp targets)" if mixup else "train loss")
    a.plot(ep, [r["val_loss"] for r in history], "s-", label="val loss")
    a.set_ylabel("cross-entropy")
    b.plot(ep, [r["val_acc"] for r in history], "o-", label="val accuracy")
    b.plot(ep, [r.get("val_f1_macro", float("nan")) for r in history], "s-", label="val macro-F1")
    b.plot(ep, [r["val_auroc"] for r in history], "^-", label="val AUROC")
    c.plot(ep, [r.get("lr_start", r["lr"]) for r in history], "o-", color="gray")
    c.set_yscale("log")
    c.set_ylabel("learning rate (head group)")
    for ax in (a, b, c):
        ax.set_xlabel("epoch")
        if best_epoch:
            ax.axvline(best_epoch, color="red", ls=":", lw=1, label=f"best epoch {best_epoch}" if ax is b else None)
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_indices(labels: np.ndarray, n: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` test indices, round-robin over the classes (seeded), so every class is shown."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        for pool in pools:
            if pool and len(out) < n:
                out.append(int(pool.pop(0)))
    return np.asarray(out, dtype=np.int64)


def sample_prediction_grid(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, class_names: Mapping[int, str],
                           n: int = 16, seed: int = 0, title: str | None = None):
    """Test images with true and predicted class (and its probability); wrong ones marked."""
    from .plots import image_grid

    idx = sample_indices(labels, n, seed)
    pred = probs.argmax(1)
    caps = [f"true: {short_name(class_names[int(labels[i])])}\npred: {short_name(class_names[int(pred[i])])} "
            f"{probs[i, pred[i]]:.2f}{'' if pred[i] == labels[i] else '  WRONG'}" for i in idx]
    return image_grid(images[idx], caps, ncols=min(8, max(1, len(idx))), title=title)


def per_class_table(cm: Sequence[Sequence[int]], class_names: Mapping[int, str]) -> list[dict]:
    """Precision, recall and F1 of each class from a confusion matrix (rows = true class)."""
    cm = np.asarray(cm, dtype=float)
    rows = []
    for k in range(len(cm)):
        tp, n_true, n_pred = cm[k, k], cm[k].sum(), cm[:, k].sum()
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_true if n_true else 0.0
        rows.append({"class": k, "name": class_names[k], "n_test": int(n_true), "precision": p, "recall": r,
                     "f1": 2 * p * r / (p + r) if p + r else 0.0})
    return rows


def write_excel_report(path: str | os.PathLike, result: Mapping, history: Sequence[Mapping],
                       class_names: Mapping[int, str]) -> Path:
    """One ``.xlsx`` per run: summary, per-class metrics, confusion matrix, epoch log and configuration."""
    import pandas as pd

    keys = ("acc", "f1_macro", "auroc", "precision", "recall", "ece", "loss")
    tta = result.get("tta")
    summary = pd.DataFrame({"metric": keys, "test": [result.get(k) for k in keys],
                            "test_tta": [tta.get(k) if tta else None for k in keys]})
    headline = tta or result
    names = [short_name(class_names[k], 30) for k in range(len(headline["confusion_matrix"]))]
    cm = pd.DataFrame(headline["confusion_matrix"], index=[f"true {n}" for n in names],
                      columns=[f"pred {n}" for n in names])
    run = {"dataset": result["dataset"], "synthetic": result["data"]["synthetic"], "seed": result["seed"],
           "device": result["device"], "wall_time_s": result["wall_time_s"], "best_epoch": result["best_epoch"],
           "epochs_run": result["epochs_run"], "init": result["model"]["init"], "stem": result["model"]["stem"],
           "tta_transforms": ", ".join(tta["transforms"]) if tta else "none",
           "confusion/per-class from": "TTA predictions" if tta else "plain predictions"}
    cfg = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in result["config"].items()}
    with atomic_path(path) as tmp:
        with pd.ExcelWriter(tmp, engine="openpyxl") as xw:
            summary.to_excel(xw, sheet_name="summary", index=False)
            pd.DataFrame(per_class_table(headline["confusion_matrix"], class_names)).to_excel(
                xw, sheet_name="per_class", index=False)
            cm.to_excel(xw, sheet_name="confusion_matrix")
            pd.DataFrame(list(history)).to_excel(xw, sheet_name="history", index=False)
            pd.DataFrame({"key": list(run), "value": [str(v) for v in run.values()]}).to_excel(
                xw, sheet_name="run", index=False)
            pd.DataFrame({"key": list(cfg), "value": [str(v) for v in cfg.values()]}).to_excel(
                xw, sheet_name="config", index=False)
    return Path(path)


def recipe_artifacts(run_dir: str | os.PathLike, result: Mapping, grid_images: int = 16) -> dict[str, str]:
    """Confusion matrix, training curves, sample-prediction grid and Excel report for one finished run."""
    from .plots import confusion_matrix_figure

    run_dir = Path(run_dir)
    spec = get_spec(result["dataset"])
    cfg = result["config"]
    history = read_jsonl(run_dir / "val_log.jsonl")
    with np.load(run_dir / "predictions.npz") as pz:
        probs = pz["test_probs_tta"] if "test_probs_tta" in pz.files else softmax(pz["test_logits"])
        labels = pz["test_labels"]
    tag = "with TTA" if "tta" in result else "plain"
    head = result.get("tta") or result
    title = f"{spec.key} {cfg['model']} seed {result['seed']}"
    names = [short_name(spec.labels[k]) for k in range(spec.n_classes)]
    save_figure(confusion_matrix_figure(head["confusion_matrix"], names,
                                        title=f"{title}: test ({tag}) acc {head['acc']:.4f}, macro-F1 "
                                              f"{head['f1_macro']:.4f}"), run_dir / "confusion_matrix.png")
    save_figure(training_curves_figure(history, result["best_epoch"], title, mixup=cfg.get("mixup", 0) > 0),
                run_dir / "training_curves.png")
    test = load_split(spec.key, "test", size=cfg["size"], root=cfg["root"])
    save_figure(sample_prediction_grid(test.images, labels, probs, spec.labels, grid_images, result["seed"],
                                       f"{title}: sample test predictions ({tag})"), run_dir / "sample_predictions.png")
    write_excel_report(run_dir / "report.xlsx", result, history, spec.labels)
    return {"confusion_matrix": "confusion_matrix.png", "training_curves": "training_curves.png",
            "sample_predictions": "sample_predictions.png", "excel_report": "report.xlsx"}


RECIPE_METRICS = ("acc", "f1_macro", "auroc", "ece", "acc_tta", "f1_macro_tta", "auroc_tta", "ece_tta")
RECIPE_COLUMNS = ("run", "init", "acc", "acc_tta", "f1_macro", "f1_macro_tta", "auroc", "auroc_tta", "ece_tta",
                  "best_epoch", "epochs_run", "wall_time_s")


def _fmt_mean_std(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def recipe_markdown(record: dict) -> str:
    c = record["config"]
    stem = c["stem"] if c["arch"] != "smallcnn" else "n/a"
    lines = [f"### Adapted {c['arch']} recipe on {record['dataset']} ({c['size']} px, stem {stem}, "
             f"MixUp alpha={c['mixup']:g}, cosine then plateau, patience {c['patience']}, TTA '{c['tta']}')", ""]
    lines += _notice(record["dataset"], c["smoke"], record.get("fallback"))
    if record.get("init_note"):
        lines.append(f"> Initialisation: {record['init_note']}")
    lines += ["", _md_table(record["rows"] + [record["summary"]], RECIPE_COLUMNS), "",
              f"Last row: mean ± sample std over n={len(record['rows'])} seed(s); `_tta` = test-time augmentation "
              f"({', '.join(record['tta_transforms'])}). Checkpoint: best validation {c['select']}.", "",
              "Published reference numbers:", ""]
    refs = [{"source": r["source"], "dataset": r["dataset"], "acc_tta": r["acc_tta"],
             "f1_macro_tta": r["f1_macro_tta"], "note": f"{r['arch']}, {r['size']} px, seed {r['seeds']}"}
            for r in PUBLISHED_RECIPE]
    mm = MEDMNIST_V2_RESNET18_28.get(record["dataset"])
    if mm:
        refs.append({"source": "MedMNIST v2, ResNet-18 (28)", "dataset": record["dataset"], "acc": mm["acc"],
                     "auroc": mm["auroc"], "note": "benchmark table, no TTA"})
    lines.append(_md_table(refs, ("source", "dataset", "acc", "auroc", "acc_tta", "f1_macro_tta", "note")))
    return "\n".join(lines)


def run_recipe(cfg: RecipeConfig, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """The adapted-ResNet-18 recipe for every seed, with per-run figures and Excel report, and a mean±std table."""
    cfg.validate()
    t0 = time.perf_counter()
    run_cfg = cfg.effective()
    key, fallback = resolve_dataset(cfg.dataset, run_cfg.size, cfg.root, cfg.smoke)
    out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "recipe_results.json"))
    label_frac = min(cfg.label_frac, smoke_label_frac(key)) if cfg.smoke else cfg.label_frac
    pretrained, init_note = False, "random initialisation (pretrained=False)"
    if run_cfg.pretrained:
        pretrained, how = imagenet_status(run_cfg.arch, run_cfg.weights, allow_download=not cfg.smoke)
        init_note = (f"ImageNet weights ({how}), first conv resized bicubically to the {run_cfg.stem} stem"
                     if pretrained else f"RANDOM initialisation: ImageNet weights unavailable ({how})")
        log(f"[recipe {key}] {init_note}")
    record: dict = {"experiment": "recipe", "dataset": key, "requested_dataset": cfg.dataset, "fallback": fallback,
                    "synthetic": get_spec(key).synthetic, "smoke": cfg.smoke, "config": asdict(run_cfg),
                    "label_frac": label_frac, "init_note": init_note, "published": list(PUBLISHED_RECIPE),
                    "medmnist_v2_resnet18_28": MEDMNIST_V2_RESNET18_28.get(key), "rows": [], "status": "running"}
    write_json(out / "recipe_results.json", record)
    rows, tta_names = [], []
    for seed in run_cfg.seeds:
        log(f"[recipe {key}] seed {seed} ...")
        run_dir = out / f"seed{seed}"
        res = _train(run_cfg.train_config(key, seed, pretrained, label_frac), run_dir, overwrite)
        files = recipe_artifacts(run_dir, res, run_cfg.grid_images)
        tta = res.get("tta", {})
        tta_names = tta.get("transforms", ["identity"])
        rows.append({"run": f"seed {seed}", "seed": seed, "init": res["model"]["init"], "acc": res["acc"],
                     "f1_macro": res["f1_macro"], "auroc": res["auroc"], "ece": res["ece"],
                     "acc_tta": tta.get("acc"), "f1_macro_tta": tta.get("f1_macro"), "auroc_tta": tta.get("auroc"),
                     "ece_tta": tta.get("ece"), "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
                     "early_stopped": res.get("early_stopped"), "wall_time_s": res["wall_time_s"],
                     "run_dir": run_dir.name, "files": files})
        record["rows"] = rows
        write_json(out / "recipe_results.json", record)
    summary: dict = {"run": f"mean ± std (n={len(rows)})" if len(rows) > 1 else "mean (n=1, no std)",
                     "init": rows[0]["init"]}
    for m in (*RECIPE_METRICS, "best_epoch", "epochs_run", "wall_time_s"):
        mean, std = mean_std([r[m] for r in rows])
        summary[f"{m}_mean"], summary[f"{m}_std"] = mean, std
        summary[m] = _fmt_mean_std(mean, std, 4 if m in RECIPE_METRICS else 1)
    record.update(rows=rows, summary=summary, tta_transforms=tta_names, status="done",
                  wall_time_s=time.perf_counter() - t0, device=str(resolve_device(cfg.device)))
    record["table_md"] = recipe_markdown(record)
    write_text(out / "recipe_table.md", record["table_md"] + "\n")
    _write_csv(out / "recipe_table.csv", rows + [summary], (*RECIPE_COLUMNS, "seed"))
    write_json(out / "recipe_results.json", record)
    return record


# ================================================================== survey (seed 004)
@dataclass
class SurveyConfig:
    """Seed project 004's analysis: frozen encoders -> logistic regression, and PCA / t-SNE of their features."""

    datasets: list[str]
    backbone: str = "resnet18"
    size: int = 28
    stem: str = "auto"
    encoders: dict[str, str] = field(default_factory=dict)   # dataset -> ssl_encoder.pt
    ssl_epochs: int = 0                # > 0: SimCLR-pretrain an encoder for datasets without one
    ssl_batch_size: int = 256
    label_frac: float = 1.0
    methods: list[str] = field(default_factory=lambda: ["pca", "tsne"])
    max_points: int = 1000
    max_train: int | None = None       # cap on training images for the probe (stratified)
    imagenet: bool = True              # include the ImageNet encoder when its weights can be had
    weights: str | None = None
    seed: int = 42
    root: str | None = None
    device: str = "auto"
    progress: bool = True
    smoke: bool = False
    precision: str = "auto"            # training precision, see medssl.accel.amp_dtype (evaluation is always fp32)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> SurveyConfig:
        from .embed import REDUCERS

        if not self.datasets:
            raise ConfigError("give at least one dataset, e.g. --dataset bloodmnist --also pathmnist dermamnist.")
        for d in self.datasets:
            get_spec(d)
        if self.backbone not in MODELS:
            raise ConfigError(f"--backbone must be one of {', '.join(MODELS)}, got {self.backbone!r}.")
        bad = [m for m in self.methods if m not in REDUCERS]
        if bad or not self.methods:
            raise ConfigError(f"--methods must be some of {', '.join(REDUCERS)}, got {list(self.methods)}.")
        if self.max_points < 10:
            raise ConfigError(f"--max-points must be >= 10, got {self.max_points}.")
        if self.ssl_epochs < 0:
            raise ConfigError(f"--ssl-epochs must be >= 0, got {self.ssl_epochs}.")
        accel.check_precision(self.precision)
        return self

    def effective(self) -> SurveyConfig:
        if not self.smoke:
            return self
        return replace(self, size=SMOKE_SIZE, ssl_epochs=min(self.ssl_epochs, 1), max_points=min(self.max_points, 150),
                       max_train=min(self.max_train or SMOKE_MAX_TRAIN, SMOKE_MAX_TRAIN),
                       stem="imagenet" if self.backbone != "smallcnn" else "auto")


SURVEY_COLUMNS = ("dataset", "encoder", "status", "probe_acc", "probe_auroc", "probe_f1_macro", "probe_ece",
                  "knn_bal_acc", "n_train_labels", "C")


def _cap(data, n: int | None, seed: int):
    if n is None or len(data) <= n:
        return data
    return data.subset(stratified_fraction(data.labels, n / len(data), seed))


def _survey_encoders(spec, cfg: SurveyConfig, encoder: str | None) -> tuple[dict, dict]:
    models, skipped = {}, {}
    if encoder:
        models["SSL"] = model_from_encoder(encoder, spec.n_classes, finetune="head")
    else:
        skipped["SSL"] = "no SSL encoder given (pass one, or ssl_epochs > 0)"
    arch = read_encoder(encoder)["arch"] if encoder else cfg.backbone
    stem = read_encoder(encoder)["stem"] if encoder else cfg.stem
    stem = "auto" if stem == "n/a" else stem
    if not cfg.imagenet:
        skipped["ImageNet"] = "ImageNet encoder not requested"
    else:
        ok, how = imagenet_status(arch, cfg.weights, allow_download=not cfg.smoke)
        if ok:
            models["ImageNet"] = build_model(arch, spec.n_classes, spec.n_channels, input_size=cfg.size, stem=stem,
                                             pretrained=True, weights_path=cfg.weights, require_pretrained=True,
                                             finetune="head")
        else:
            skipped["ImageNet"] = how
    set_seed(cfg.seed)
    models["random"] = build_model(arch, spec.n_classes, spec.n_channels, input_size=cfg.size, stem=stem,
                                   finetune="head")
    return models, skipped


def survey_markdown(record: dict) -> str:
    c = record["config"]
    lines = [f"### Frozen-encoder survey ({c['backbone']} features, {c['size']} px, logistic regression on "
             f"{c['label_frac']:.0%} of the training labels"
             + (f", at most {c['max_train']} images" if c.get("max_train") else "") + ")", ""]
    for d in record["datasets"]:
        lines += [n for n in _notice(d["dataset"], c["smoke"], d.get("fallback")) if n not in lines]
    lines += ["", _md_table(record["rows"], SURVEY_COLUMNS), "",
              "probe_* = test metrics of a standardised logistic regression on frozen encoder features (C picked on "
              "validation AUROC); knn_bal_acc = 5-fold 5-NN balanced accuracy on the test features drawn in "
              "`features_<dataset>.png`. Seed project 004 reports SimCLR on several MedMNIST sets, including over "
              "0.95 AUC on BloodMNIST after fine-tuning; it does not publish a single table to put here."]
    return "\n".join(lines)


def run_survey(cfg: SurveyConfig, out: str | os.PathLike, overwrite: bool = False) -> dict:
    """Linear probes and 2D feature maps of SSL / ImageNet / random encoders for every dataset in ``cfg.datasets``."""
    from .embed import knn_separability, reduce_2d, representation_figure
    from .probe import extract_features, linear_probe, public

    cfg.validate()
    t0 = time.perf_counter()
    run_cfg = cfg.effective()
    out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "survey_results.json"))
    dev = resolve_device(cfg.device)
    record: dict = {"experiment": "survey", "config": asdict(run_cfg), "smoke": cfg.smoke, "datasets": [],
                    "rows": [], "status": "running"}
    seen: set[str] = set()
    for requested in run_cfg.datasets:
        key, fallback = resolve_dataset(requested, run_cfg.size, cfg.root, cfg.smoke)
        entry = {"requested": requested, "dataset": key, "fallback": fallback, "synthetic": get_spec(key).synthetic}
        if key in seen:
            entry["status"] = f"skipped: same data as an earlier entry ({key})"
            record["datasets"].append(entry)
            continue
        seen.add(key)
        spec = get_spec(key)
        d_out = out / key
        d_out.mkdir(parents=True, exist_ok=True)
        encoder = run_cfg.encoders.get(requested) or run_cfg.encoders.get(key)
        ssl_skip = None
        if encoder is None and run_cfg.ssl_epochs > 0 and cfg.smoke:
            n_train = get_spec(key).n_samples["train"]
            if n_train > SMOKE_SSL_MAX_TRAIN:
                ssl_skip = (f"smoke mode pretrains SSL encoders only on training splits of <= {SMOKE_SSL_MAX_TRAIN} "
                            f"images ({key} has {n_train})")
        if encoder is None and run_cfg.ssl_epochs > 0 and ssl_skip is None:
            from .pretrain import SSLConfig
            from .pretrain import run as pretrain_run

            log(f"[survey {key}] SimCLR pretraining, {run_cfg.ssl_epochs} epoch(s) ...")
            pretrain_run(SSLConfig(dataset=key, method="simclr", backbone=run_cfg.backbone, stem=run_cfg.stem,
                                   epochs=run_cfg.ssl_epochs,
                                   batch_size=run_cfg.ssl_batch_size, seed=run_cfg.seed, size=run_cfg.size,
                                   device=cfg.device, root=cfg.root, progress=cfg.progress, precision=cfg.precision,
                                   deterministic=cfg.deterministic), d_out / "ssl", overwrite)
            encoder = str(d_out / "ssl" / "ssl_encoder.pt")
        splits = load_splits(key, size=run_cfg.size, root=cfg.root)
        splits["train"] = _cap(splits["train"], run_cfg.max_train, run_cfg.seed)
        if cfg.smoke:
            splits["val"] = _cap(splits["val"], SMOKE_MAX_EVAL, run_cfg.seed)
            splits["test"] = _cap(splits["test"], SMOKE_MAX_EVAL, run_cfg.seed)
        test = splits["test"]
        pts = np.arange(len(test))
        if len(pts) > run_cfg.max_points:
            pts = np.sort(np.random.default_rng(run_cfg.seed).choice(pts, run_cfg.max_points, replace=False))
        models, skipped = _survey_encoders(spec, run_cfg, encoder)
        if ssl_skip:
            skipped["SSL"] = ssl_skip
        points, scores = {}, {}
        for name, model in models.items():
            log(f"[survey {key}] {name} encoder: features, probe, {', '.join(run_cfg.methods)} ...")
            feats = extract_features(model.to(dev), splits, device=dev)
            res = public(linear_probe(feats, splits, spec, run_cfg.label_frac, run_cfg.seed, indices_dir=None))
            # contiguous labels: a class absent from the drawn points must not count as a class with 0 members
            y_pts = np.unique(test.labels[pts], return_inverse=True)[1]
            scores[name] = knn_separability(feats["test"][pts], y_pts, seed=run_cfg.seed)
            points[name] = {m: reduce_2d(feats["test"][pts], m, seed=run_cfg.seed) for m in run_cfg.methods}
            record["rows"].append({"dataset": key, "encoder": name, "status": "ok", "probe_acc": res["acc"],
                                   "probe_auroc": res["auroc"], "probe_f1_macro": res["f1_macro"],
                                   "probe_ece": res["ece"], "knn_bal_acc": scores[name],
                                   "n_train_labels": res["n_labels"], "C": res["probe"]["C"],
                                   "feature_dim": res["feature_dim"], "init": model.meta["init"],
                                   "synthetic": spec.synthetic})
        for name, why in skipped.items():
            record["rows"].append({"dataset": key, "encoder": name, "status": f"skipped: {why}"})
        title = (f"{key} test features (n={len(pts)}), {run_cfg.backbone}"
                 + (" [SYNTHETIC]" if spec.synthetic else "") + (" [SMOKE]" if cfg.smoke else ""))
        save_figure(representation_figure(points, test.labels[pts], spec.labels, scores, title, skipped),
                    d_out / f"features_{key}.png")
        with open(d_out / f"features_{key}.npz", "wb") as fh:
            np.savez(fh, labels=test.labels[pts], indices=pts,
                     **{f"{e}__{m}": xy for e, d in points.items() for m, xy in d.items()})
        entry.update(status="done", encoder=encoder, figure=f"{key}/features_{key}.png", skipped=skipped,
                     n_train=len(splits["train"]), n_test=len(test))
        record["datasets"].append(entry)
        write_json(out / "survey_results.json", record)
    record.update(status="done", wall_time_s=time.perf_counter() - t0, device=str(dev))
    record["table_md"] = survey_markdown(record)
    write_text(out / "survey_table.md", record["table_md"] + "\n")
    _write_csv(out / "survey_table.csv", record["rows"], (*SURVEY_COLUMNS, "init", "feature_dim", "synthetic"))
    write_json(out / "survey_results.json", record)
    return record


# ================================================================== notebook glue
def default_out_root(dataset: str, smoke: bool, out_root: str | os.PathLike | None = None) -> Path:
    """Where the notebook writes: ``out_root``, else ``runs/paradigms/<dataset>`` (a temp folder in smoke mode)."""
    if out_root:
        return Path(out_root)
    if smoke:
        base = os.environ.get("MEDSSL_RESULTS_ROOT") or tempfile.mkdtemp(prefix="medssl-paradigms-")
        return Path(base) / "paradigms" / dataset
    return Path("runs") / "paradigms" / dataset


def comparison_markdown(seed000: Mapping | None = None, recipe: Mapping | None = None,
                        survey: Mapping | None = None) -> str:
    """All three tables, one after the other, each with its published reference numbers."""
    parts = [r["table_md"] for r in (seed000, recipe, survey) if r]
    return "\n\n".join(parts) if parts else "_(nothing run)_"


# ================================================================== CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.paradigms", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fmt = HelpFormatter

    s0 = sub.add_parser("seed000", help="scratch vs ImageNet fine-tune vs SimCLR + fine-tune (ResNet-50, 64 px)",
                        formatter_class=fmt)
    add_common_args(s0)
    accel.add_precision_args(s0)
    s0.set_defaults(size=64)
    s0.add_argument("--arch", default="resnet50", choices=MODELS)
    s0.add_argument("--stem", default="auto", choices=("auto", "small", "imagenet"))
    s0.add_argument("--epochs", type=int, default=30)
    s0.add_argument("--batch-size", type=int, default=128)
    s0.add_argument("--lr", type=float, default=1e-3)
    s0.add_argument("--ssl-epochs", type=int, default=50)
    s0.add_argument("--ssl-batch-size", type=int, default=128)
    s0.add_argument("--tau", type=float, default=0.5)
    s0.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    s0.add_argument("--weights", default=None, help="local ImageNet weights file (.pth) for the ImageNet regime")
    s0.add_argument("--label-frac", type=float, default=1.0)
    s0.add_argument("--smoke", action="store_true", help="tiny settings; synthetic fallback without the data file")

    s1 = sub.add_parser("recipe", help="adapted ResNet-18 + MixUp + cosine/plateau + early stopping + TTA",
                        formatter_class=fmt)
    add_common_args(s1)
    accel.add_precision_args(s1)
    s1.add_argument("--arch", default="resnet18", choices=MODELS)
    s1.add_argument("--stem", default="small", choices=("auto", "small", "imagenet"))
    s1.add_argument("--no-pretrained", action="store_true", help="random init even if ImageNet weights exist")
    s1.add_argument("--weights", default=None, help="local ImageNet weights file (.pth)")
    s1.add_argument("--epochs", type=int, default=60)
    s1.add_argument("--batch-size", type=int, default=128)
    s1.add_argument("--lr", type=float, default=0.008)
    s1.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    s1.add_argument("--weight-decay", type=float, default=5e-4)
    s1.add_argument("--mixup", type=float, default=0.2, help="MixUp alpha (0 = off)")
    s1.add_argument("--patience", type=int, default=15)
    s1.add_argument("--cosine-frac", type=float, default=0.55)
    s1.add_argument("--select", default="acc", choices=SELECT_METRICS)
    s1.add_argument("--tta", default="standard", choices=TTA_PRESETS)
    s1.add_argument("--seeds", type=int, nargs="+", default=None, help="one run per seed (default: --seed)")
    s1.add_argument("--label-frac", type=float, default=1.0)
    s1.add_argument("--smoke", action="store_true", help="tiny settings; synthetic fallback without the data file")

    s2 = sub.add_parser("survey", help="frozen encoders -> logistic regression + PCA/t-SNE, several datasets",
                        formatter_class=fmt)
    add_common_args(s2)
    accel.add_precision_args(s2)
    s2.add_argument("--also", nargs="*", default=[], help="more dataset keys to survey in the same call")
    s2.add_argument("--backbone", default="resnet18", choices=MODELS)
    s2.add_argument("--stem", default="auto", choices=("auto", "small", "imagenet"))
    s2.add_argument("--encoder", nargs="*", default=[], metavar="DATASET=PATH",
                    help="SSL encoders per dataset, e.g. bloodmnist=runs/ssl/ssl_encoder.pt")
    s2.add_argument("--ssl-epochs", type=int, default=0, help="SimCLR-pretrain datasets without --encoder")
    s2.add_argument("--label-frac", type=float, default=1.0)
    s2.add_argument("--methods", nargs="+", default=["pca", "tsne"], choices=("pca", "tsne", "umap"))
    s2.add_argument("--max-points", type=int, default=1000)
    s2.add_argument("--max-train", type=int, default=None)
    s2.add_argument("--no-imagenet", action="store_true")
    s2.add_argument("--weights", default=None)
    s2.add_argument("--smoke", action="store_true", help="tiny settings; synthetic fallback without the data file")
    return p


def _encoders_arg(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--encoder takes DATASET=PATH pairs, got {it!r}.")
        k, v = it.split("=", 1)
        out[k.strip().lower()] = v
    return out


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    common = dict(seed=a.seed, root=a.root, device=a.device, progress=not a.no_progress, smoke=a.smoke,
                  precision=a.precision, deterministic=a.deterministic)
    if a.command == "seed000":
        rec = run_seed000(Seed000Config(dataset=a.dataset, arch=a.arch, size=a.size, stem=a.stem, epochs=a.epochs,
                                        batch_size=a.batch_size, lr=a.lr, ssl_epochs=a.ssl_epochs,
                                        ssl_batch_size=a.ssl_batch_size, tau=a.tau, regimes=list(a.regimes),
                                        weights=a.weights, label_frac=a.label_frac, **common), a.out, a.overwrite)
    elif a.command == "recipe":
        seeds = a.seeds or [a.seed]
        common.pop("seed")
        rec = run_recipe(RecipeConfig(dataset=a.dataset, arch=a.arch, size=a.size, stem=a.stem,
                                      pretrained=not a.no_pretrained, weights=a.weights, epochs=a.epochs,
                                      batch_size=a.batch_size, lr=a.lr, optimizer=a.optimizer,
                                      weight_decay=a.weight_decay, mixup=a.mixup, patience=a.patience,
                                      cosine_frac=a.cosine_frac, select=a.select, tta=a.tta, seeds=seeds,
                                      label_frac=a.label_frac, **common), a.out, a.overwrite)
    else:
        rec = run_survey(SurveyConfig(datasets=[a.dataset, *a.also], backbone=a.backbone, size=a.size, stem=a.stem,
                                      encoders=_encoders_arg(a.encoder), ssl_epochs=a.ssl_epochs,
                                      label_frac=a.label_frac, methods=list(a.methods), max_points=a.max_points,
                                      max_train=a.max_train, imagenet=not a.no_imagenet, weights=a.weights, **common),
                         a.out, a.overwrite)
    print(rec["table_md"])
    print(f"\n{rec['wall_time_s']:.1f}s on {rec['device']} -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
