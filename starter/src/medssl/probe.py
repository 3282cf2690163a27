"""Downstream evaluation of an SSL encoder: linear probe, fine-tuning, and initialisations compared.

``python -m medssl.probe --dataset pneumoniamnist --encoder runs/ssl/ssl_encoder.pt --label-frac 0.05 0.1
--finetune --compare-inits --out runs/probe``

* **Linear probe** -- the encoder is frozen. Its features are computed *once*
  per split (train, val, test) and a logistic regression is fitted on the
  features of a label fraction (C chosen on the validation AUROC). Nothing in
  the encoder can change: no gradients, no BatchNorm statistics.
* **Fine-tuning** -- the whole network trains, the encoder with a small
  learning rate (``--encoder-lr``) and the new linear head with a larger one
  (``--lr``), with :func:`medssl.train.fit` (best validation AUROC kept).
* **Initialisations compared** (``--compare-inits``) at the same labels: SSL
  encoder vs ImageNet weights (skipped, with the reason, when unavailable)
  vs random initialisation ("scratch").

The labelled subset of every fraction and seed comes from
:func:`medssl.data.fraction_indices`, saved in ``--indices-dir`` (default
``<out>/indices``) and reused, so every method sees the same labelled images.
The validation split is used whole for model selection, as in ``medssl.train``.

From Python, three pieces can be swapped for one's own (the notebooks' exercises):
``sampler`` draws the labelled subset, ``probe_fn`` fits the linear probe on the
features, ``optimizer_fn`` builds the SSL fine-tune's optimizer (see :func:`run`).
The library still extracts the features, drives the training loop and writes the files.

Files: ``probe_metrics_<pct>pct.json``, ``finetune_metrics_<pct>pct.json``
(+ ``finetune_<pct>pct.pt``, ``finetune_predictions_<pct>pct.npz``,
``finetune_reliability_<pct>pct.png``), ``probe_predictions_<pct>pct.npz``,
``init_comparison_<pct>pct.json`` and ``.md``, and ``downstream_config.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from . import accel
from .calibration import softmax
from .cli import HelpFormatter, add_common_args, run_cli
from .data import SplitData, fraction_indices, indices_filename, labels_hash, load_splits
from .errors import CheckpointError, ConfigError, WeightsUnavailableError
from .metrics import classification_metrics, format_summary
from .models import Classifier, build_model, model_from_encoder, read_encoder
from .plots import reliability_diagram
from .registry import DatasetSpec, get_spec
from .train import CHECKPOINT_FORMAT, TrainConfig, evaluate, fit, predict_logits
from .utils import (
    RUN_MARKERS,
    check_fraction,
    get_logger,
    prepare_out_dir,
    resolve_device,
    save_figure,
    save_torch,
    set_seed,
    write_json,
    write_text,
)

INITS = ("ssl", "imagenet", "scratch")
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
SUMMARY_KEYS = ("acc", "auroc", "ece", "f1_macro", "sensitivity", "specificity")


def pct_tag(frac: float) -> str:
    """0.1 -> '10', 0.005 -> '0.5', 1.0 -> '100' (file names like ``probe_metrics_10pct.json``)."""
    return f"{check_fraction(frac) * 100:.4g}"


@dataclass
class DownstreamConfig:
    """Hyperparameters of the probe, fine-tuning and scratch runs (saved next to every result)."""

    dataset: str
    encoder: str | None = None
    backbone: str | None = None        # for scratch/imagenet without an encoder; else the encoder's arch
    stem: str | None = None
    fractions: list[float] = field(default_factory=lambda: [0.1])
    seed: int = 42
    size: int = 28
    # linear probe
    probe_c: list[float] = field(default_factory=lambda: list(DEFAULT_C_GRID))
    probe_max_iter: int = 2000
    # fine-tuning and scratch (medssl.train.fit)
    epochs: int = 30
    min_steps: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr: float = 1e-4
    weight_decay: float = 1e-4
    aug: str = "light"
    weights: str | None = None
    device: str = "auto"
    root: str | None = None
    indices_dir: str | None = None
    n_bins: int = 15
    eval_batch_size: int = 512
    progress: bool = True
    precision: str = "auto"            # fine-tune/scratch training: see medssl.accel.amp_dtype (features are fp32)
    deterministic: bool = False        # deterministic cuDNN/cuBLAS kernels, no autotuning (see accel.set_deterministic)

    def validate(self) -> DownstreamConfig:
        get_spec(self.dataset)
        if not self.fractions:
            raise ConfigError("give at least one label fraction, e.g. --label-frac 0.1.")
        self.fractions = [check_fraction(f, "--label-frac") for f in self.fractions]
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be >= 1, got {self.epochs}.")
        if self.min_steps < 0:
            raise ConfigError(f"--min-steps must be >= 0, got {self.min_steps}.")
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be >= 2, got {self.batch_size}.")
        if not (self.lr > 0 and self.encoder_lr > 0):
            raise ConfigError(f"--lr and --encoder-lr must be > 0, got {self.lr} and {self.encoder_lr}.")
        if not self.probe_c or any(c <= 0 for c in self.probe_c):
            raise ConfigError(f"--probe-c needs positive inverse regularisation strengths, got {self.probe_c}.")
        accel.check_precision(self.precision)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def arch(self) -> tuple[str, str]:
        """(arch, stem) of the models to compare: the SSL encoder's, else ``backbone``/``stem``."""
        if self.encoder:
            ck = read_encoder(self.encoder)
            return ck["arch"], ck["stem"] if ck["stem"] != "n/a" else "auto"
        if not self.backbone:
            raise ConfigError("pass --encoder (an ssl_encoder.pt) or, for scratch/ImageNet only, --backbone.")
        # "n/a" is the stem a smallcnn checkpoint records (it has no stem choice): build it as "auto"
        return self.backbone, self.stem if self.stem not in (None, "n/a") else "auto"


# ------------------------------------------------------------------ features
def extract_features(model: Classifier, splits: Mapping[str, SplitData], batch_size: int = 512,
                     device: torch.device | None = None) -> dict[str, np.ndarray]:
    """Encoder features of every split, computed once, in eval mode (BatchNorm statistics untouched), in float32."""
    return {name: predict_logits(model, data.images, batch_size, device, features=True)
            for name, data in splits.items()}


def indices_md5(idx: np.ndarray) -> str:
    """A short fingerprint of a labelled subset, to show that two methods used the same images."""
    return hashlib.md5(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:12]


def function_name(fn) -> str:
    """How a swapped-in function is recorded in the results (its ``__name__``)."""
    return getattr(fn, "__name__", type(fn).__name__)


def checked_indices(idx, train: SplitData, what: str = "the sampler") -> np.ndarray:
    """``idx`` as sorted int64 indices into ``train``, after checking they are distinct indices in range."""
    arr = np.asarray(idx)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ConfigError(f"{what} must return a 1-D array of integer indices into the training split, got "
                          f"{arr.dtype} of shape {arr.shape}.")
    arr = arr.astype(np.int64)
    if arr.size == 0 or arr.min() < 0 or arr.max() >= len(train) or len(np.unique(arr)) != len(arr):
        raise ConfigError(f"{what} must return distinct indices in 0..{len(train) - 1} (at least one), got "
                          f"{len(arr)} indices" + (f" in {arr.min()}..{arr.max()}" if arr.size else "") + ".")
    return np.sort(arr)


def save_subset(idx: np.ndarray, train: SplitData, frac: float, seed: int, indices_dir: str | Path,
                drawn_by: str) -> Path:
    """Write ``indices_frac=<f>_seed=<s>.json`` in the library's format for indices drawn by ``drawn_by``.

    With the label hash and class counts in it, every later reader
    (:func:`medssl.data.fraction_indices`: the supervised comparison, other methods) reuses exactly these indices.
    """
    path = Path(indices_dir) / indices_filename(frac, seed)
    write_json(path, {"dataset": train.spec.key, "frac": frac, "seed": seed, "n_total": len(train),
                      "n_selected": len(idx), "class_counts": np.bincount(train.labels[idx]).tolist(),
                      "drawn_by": drawn_by, "labels_sha256": labels_hash(train.labels), "indices": idx.tolist()})
    return path


def label_subset(train: SplitData, frac: float, seed: int, indices_dir: str | Path | None,
                 sampler=None) -> np.ndarray:
    """The labelled training indices for (frac, seed), saved in / reused from ``indices_dir``.

    ``sampler(labels, frac, seed, save_dir)`` replaces the library's draw
    (:func:`medssl.data.fraction_indices`): it gets a copy of the training labels only, and the
    indices it returns are the ones used, saved in ``indices_dir`` in the library's format.
    """
    if sampler is None:
        return fraction_indices(train.labels, frac, seed, indices_dir, train.spec.key)
    idx = checked_indices(sampler(train.labels.copy(), frac, seed, None if indices_dir is None else str(indices_dir)),
                          train, f"the sampler {function_name(sampler)}")
    if indices_dir is not None:
        save_subset(idx, train, frac, seed, indices_dir, function_name(sampler))
    return idx


def _subset_info(train: SplitData, idx: np.ndarray, frac: float, seed: int) -> dict:
    return {"fraction": frac, "pct": float(pct_tag(frac)), "seed": seed, "n_labels": int(len(idx)),
            "n_labels_per_class": np.bincount(train.labels[idx], minlength=train.spec.n_classes).tolist(),
            "indices_file": indices_filename(frac, seed), "indices_md5": indices_md5(idx)}


# --------------------------------------------------------------- linear probe
def fit_logistic_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                       spec: DatasetSpec, c_grid: Sequence[float] = DEFAULT_C_GRID, seed: int = 0,
                       max_iter: int = 2000):
    """Standardise + logistic regression; the inverse regularisation C is picked on validation AUROC.

    Returns ``(pipeline, {"C": best, "val_auroc_by_C": {...}})``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:
        raise ConfigError("the labelled subset has a single class; use a larger --label-frac.")
    scores, best, best_score = {}, None, -math.inf
    for c in c_grid:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
        clf.fit(x_train, y_train)
        m = classification_metrics(y_val, clf.predict_proba(x_val), spec)
        score = m["auroc"] if not math.isnan(m["auroc"]) else m["acc"]
        scores[f"{c:g}"] = score
        if score > best_score + 1e-12:
            best, best_score = (c, clf), score
    return best[1], {"C": best[0], "val_score_by_C": scores, "selected_on": "val AUROC"}


def probe_predictions(clf, x: np.ndarray) -> np.ndarray:
    """Log-probabilities (N, K): softmax of them gives the probe's probabilities back, like logits."""
    return np.log(np.clip(clf.predict_proba(x), 1e-12, 1.0)).astype(np.float32)


def log_probabilities(probs, n: int, n_classes: int, what: str = "the probe") -> np.ndarray:
    """(N, K) probabilities -> log-probabilities (float32), as :func:`probe_predictions` gives them.

    The arithmetic is done in the probabilities' own dtype, as there (float32 stays float32).
    """
    p = np.asarray(probs)
    if p.dtype.kind != "f":
        p = p.astype(np.float64)
    if p.shape != (n, n_classes) or not np.all(np.isfinite(p)):
        raise ConfigError(f"{what} must give finite probabilities of shape ({n}, {n_classes}), got {p.shape}.")
    return np.log(np.clip(p, 1e-12, 1.0)).astype(np.float32)


def linear_probe(features: Mapping[str, np.ndarray], splits: Mapping[str, SplitData], spec: DatasetSpec,
                 frac: float, seed: int, indices_dir: str | Path | None = None,
                 c_grid: Sequence[float] = DEFAULT_C_GRID, max_iter: int = 2000, n_bins: int = 15,
                 sampler=None, probe_fn=None) -> dict:
    """One linear probe on precomputed features: fit on the (frac, seed) labels, report on test.

    ``sampler``: see :func:`label_subset`. ``probe_fn(train_feats, train_labels, val_feats, val_labels,
    c_grid=..., seed=...)`` replaces :func:`fit_logistic_probe`; it returns ``(predict_proba, info)``, a
    function from features to (N, K) probabilities and a dict (``info["C"]``: the choice it made on
    validation). It never sees the test labels: the test features go through ``predict_proba`` only.
    Returns the metrics dict (plus ``_val_logits`` / ``_test_logits`` arrays for saving).
    """
    t0 = time.perf_counter()
    train = splits["train"]
    idx = label_subset(train, frac, seed, indices_dir, sampler)
    if probe_fn is None:
        clf, sel = fit_logistic_probe(features["train"][idx], train.labels[idx], features["val"],
                                      splits["val"].labels, spec, c_grid, seed, max_iter)
        val_logits, test_logits = probe_predictions(clf, features["val"]), probe_predictions(clf, features["test"])
    else:
        what = f"the probe {function_name(probe_fn)}"
        predict, sel = probe_fn(features["train"][idx].copy(), train.labels[idx].copy(), features["val"].copy(),
                                splits["val"].labels.copy(), c_grid=tuple(c_grid), seed=seed)
        if not isinstance(sel, Mapping):
            raise ConfigError(f"{what} must return (predict_proba, info dict), got info of type {type(sel).__name__}.")
        sel = dict(sel)
        val_logits = log_probabilities(predict(features["val"].copy()), len(splits["val"]), spec.n_classes, what)
        test_logits = log_probabilities(predict(features["test"].copy()), len(splits["test"]), spec.n_classes, what)
    test_m = classification_metrics(splits["test"].labels, softmax(test_logits), spec, n_bins)
    val_m = classification_metrics(splits["val"].labels, softmax(val_logits), spec, n_bins)
    res = {"method": "probe", **test_m, "split": "test", **_subset_info(train, idx, frac, seed),
           "val_metrics": {k: val_m[k] for k in ("acc", "auroc", "ece")}, "probe": sel,
           "feature_dim": int(features["train"].shape[1]), "seconds": time.perf_counter() - t0,
           "_val_logits": val_logits, "_test_logits": test_logits, "_indices": idx}
    return {**res, **_custom(sampler=sampler, probe_fn=probe_fn)}


def _custom(**fns) -> dict:
    """``{"custom": {hook: function name}}`` for the hooks that were given (nothing when none was)."""
    given = {k: function_name(f) for k, f in fns.items() if f is not None}
    return {"custom": given} if given else {}


# -------------------------------------------------------------- fine-tuning
def epochs_for(n_labels: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """``epochs``, raised so that even a tiny labelled subset gets at least ``min_steps`` updates."""
    steps_per_epoch = max(1, -(-n_labels // batch_size))
    return max(epochs, -(-min_steps // steps_per_epoch))


def build_init_model(init: str, spec: DatasetSpec, cfg: DownstreamConfig) -> Classifier:
    """A classifier for ``init`` in ssl | imagenet | scratch (ImageNet raises WeightsUnavailableError)."""
    arch, stem = cfg.arch()
    if init == "ssl":
        if not cfg.encoder:
            raise ConfigError("fine-tuning from SSL needs --encoder PATH/ssl_encoder.pt.")
        model = model_from_encoder(cfg.encoder, spec.n_classes)
    elif init == "imagenet":
        if arch == "smallcnn":
            raise WeightsUnavailableError("smallcnn has no ImageNet weights (use --backbone resnet18).")
        model = build_model(arch, spec.n_classes, spec.n_channels, input_size=cfg.size, stem=stem, pretrained=True,
                            weights_path=cfg.weights, require_pretrained=True)
    elif init == "scratch":
        model = build_model(arch, spec.n_classes, spec.n_channels, input_size=cfg.size, stem=stem)
    else:
        raise ConfigError(f"init must be one of {INITS}, got {init!r}.")
    if model.meta["in_channels"] != spec.n_channels:
        raise CheckpointError(f"the encoder takes {model.meta['in_channels']}-channel images but {spec.key} has "
                              f"{spec.n_channels}; pretrain on the same dataset.")
    return model


def finetune_config(init: str, cfg: DownstreamConfig, frac: float, seed: int, n_labels: int, arch: str) -> TrainConfig:
    """The :class:`TrainConfig` for one fine-tune/scratch run: head ``lr``, encoder ``encoder_lr``
    (pretrained inits only; scratch trains everything at ``lr``)."""
    return TrainConfig(dataset=cfg.dataset, model=arch, epochs=epochs_for(n_labels, cfg.batch_size, cfg.epochs,
                                                                          cfg.min_steps),
                       batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=seed, size=cfg.size,
                       aug=cfg.aug, label_frac=frac, encoder=cfg.encoder if init == "ssl" else None,
                       encoder_lr=None if init == "scratch" else cfg.encoder_lr, pretrained=init == "imagenet",
                       weights=cfg.weights, device=cfg.device, root=cfg.root, indices_dir=cfg.indices_dir,
                       n_bins=cfg.n_bins, eval_batch_size=cfg.eval_batch_size, progress=cfg.progress,
                       precision=cfg.precision, deterministic=cfg.deterministic)


def finetune(init: str, splits: Mapping[str, SplitData], spec: DatasetSpec, cfg: DownstreamConfig, frac: float,
             seed: int, device: torch.device, indices_dir: str | Path | None = None, sampler=None,
             optimizer_fn=None) -> dict:
    """Train a classifier from ``init`` on the (frac, seed) labels; report test metrics of the best-val epoch.

    ``sampler``: see :func:`label_subset`; ``optimizer_fn``: see :func:`medssl.train.fit` (called with
    ``head_lr=cfg.lr``, ``encoder_lr=cfg.encoder_lr``, ``weight_decay=cfg.weight_decay``).
    Returns the metrics dict (plus ``_model``, ``_val_logits``, ``_test_logits``, ``_history`` for saving).
    """
    t0 = time.perf_counter()
    train = splits["train"]
    idx = label_subset(train, frac, seed, indices_dir, sampler)
    set_seed(seed)
    model = accel.to_device(build_init_model(init, spec, cfg), device)
    tcfg = finetune_config(init, cfg, frac, seed, len(idx), model.meta["arch"])
    history, best_state, best_epoch = fit(model, train.subset(idx), splits["val"], spec, tcfg, device,
                                          optimizer_fn=optimizer_fn)
    model.load_state_dict(best_state)
    val_m, val_logits = evaluate(model, splits["val"], spec, cfg.eval_batch_size, cfg.n_bins, device)
    test_m, test_logits = evaluate(model, splits["test"], spec, cfg.eval_batch_size, cfg.n_bins, device)
    method = "finetune" if init == "ssl" else init
    return {"method": method, "init": init, "model_init": model.meta["init"], **test_m, "split": "test",
            **_subset_info(train, idx, frac, seed), "best_epoch": best_epoch, "epochs": tcfg.epochs,
            "lr_head": tcfg.lr, "lr_encoder": tcfg.encoder_lr if tcfg.encoder_lr is not None else tcfg.lr,
            "val_metrics": {k: val_m[k] for k in ("acc", "auroc", "ece", "loss")}, "train_config": tcfg.to_dict(),
            "seconds": time.perf_counter() - t0, "_model": model, "_val_logits": val_logits,
            "_test_logits": test_logits, "_history": history, "_indices": idx,
            **_custom(sampler=sampler, optimizer_fn=optimizer_fn)}


def public(result: dict) -> dict:
    """The JSON-able part of a result (drops the arrays/model under ``_`` keys)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


INIT_NAMES = {"ssl": "ssl fine-tune", "imagenet": "imagenet fine-tune", "scratch": "scratch (supervised only)"}


def skipped(init: str, frac: float, seed: int, reason: str) -> dict:
    return {"method": INIT_NAMES.get(init, init), "init": init, "status": "skipped", "reason": reason,
            "fraction": frac, "seed": seed}


# ---------------------------------------------------------------- the job
def _save_predictions(path: Path, res: dict, splits: Mapping[str, SplitData]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, val_logits=res["_val_logits"], val_labels=splits["val"].labels, test_logits=res["_test_logits"],
                 test_labels=splits["test"].labels, train_indices=res["_indices"])


def comparison_table(rows: Sequence[dict], title: str) -> str:
    """A markdown table of test metrics, one row per method; skipped rows keep their reason."""
    lines = [f"### {title}", "", "| method | n labels | test AUROC | test acc | test ECE | note |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("status") == "skipped":
            lines.append(f"| {r['method']} | | | | | skipped: {r['reason']} |")
            continue
        note = r.get("model_init", "")
        lines.append(f"| {r['method']} | {r['n_labels']} | {r['auroc']:.4f} | {r['acc']:.4f} | {r['ece']:.4f} | "
                     f"{note} |")
    return "\n".join(lines) + "\n"


def run(cfg: DownstreamConfig, out: str | Path, overwrite: bool = False, do_finetune: bool = False,
        compare_inits: bool = False, sampler=None, probe_fn=None, optimizer_fn=None) -> dict:
    """Probe (and optionally fine-tune / compare initialisations) at every fraction; returns all results.

    Optional replacements (the notebooks pass the student's functions): ``sampler`` draws every labelled
    subset (all methods then use its indices, :func:`label_subset`), ``probe_fn`` fits the linear probe
    (:func:`linear_probe`), ``optimizer_fn`` builds the optimizer of the SSL fine-tune (only ``init="ssl"``;
    ImageNet and scratch keep the library's). The names of the functions used are recorded in each
    result (``"custom"``) and in ``downstream_config.json``.
    """
    cfg.validate()
    if not cfg.encoder:
        raise ConfigError("the linear probe needs --encoder PATH/ssl_encoder.pt (from python -m medssl.pretrain).")
    t_start = time.perf_counter()
    spec = get_spec(cfg.dataset)
    out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "downstream_config.json"))
    indices_dir = Path(cfg.indices_dir) if cfg.indices_dir else out / "indices"
    device = resolve_device(cfg.device)
    accel.set_deterministic(cfg.deterministic, device)
    numerics = accel.describe(device, cfg.precision, cfg.deterministic)
    enc_meta = read_encoder(cfg.encoder)
    write_json(out / "downstream_config.json", {"config": cfg.to_dict(), "encoder_extra": enc_meta.get("extra"),
                                                "indices_dir": str(indices_dir), "device": str(device),
                                                "numerics": numerics,
                                                **_custom(sampler=sampler, probe_fn=probe_fn,
                                                          optimizer_fn=optimizer_fn)})
    splits = load_splits(cfg.dataset, size=cfg.size, root=cfg.root)
    if enc_meta.get("input_size") not in (None, cfg.size):
        get_logger().warning("the encoder was pretrained on %spx images; evaluating at %spx.",
                             enc_meta.get("input_size"), cfg.size)
    set_seed(cfg.seed)
    probe_model = accel.to_device(model_from_encoder(cfg.encoder, spec.n_classes, finetune="head"), device)
    t0 = time.perf_counter()
    feats = extract_features(probe_model, splits, cfg.eval_batch_size, device)
    feature_seconds = time.perf_counter() - t0
    results: dict[str, list[dict]] = {"probe": [], "finetune": [], "compare": []}
    unavailable: dict[str, str] = {}
    for frac in cfg.fractions:
        tag = pct_tag(frac)
        res = linear_probe(feats, splits, spec, frac, cfg.seed, indices_dir, cfg.probe_c, cfg.probe_max_iter,
                           cfg.n_bins, sampler=sampler, probe_fn=probe_fn)
        res.update(dataset=spec.key, encoder=str(cfg.encoder), feature_seconds=feature_seconds, device=str(device),
                   config=cfg.to_dict(), numerics=numerics, synthetic=spec.synthetic)
        write_json(out / f"probe_metrics_{tag}pct.json", public(res))
        _save_predictions(out / f"probe_predictions_{tag}pct.npz", res, splits)
        results["probe"].append(public(res))
        print(f"[probe {tag}%] n={res['n_labels']} test {format_summary(res)}")
        rows = [public(res) | {"method": "ssl linear probe"}]
        inits = (["ssl"] if do_finetune else []) + (["imagenet", "scratch"] if compare_inits else [])
        if compare_inits and "ssl" not in inits:
            inits.insert(0, "ssl")
        for init in inits:
            try:
                if init in unavailable:           # tried once already: don't wait for a download again
                    raise WeightsUnavailableError(unavailable[init])
                r = finetune(init, splits, spec, cfg, frac, cfg.seed, device, indices_dir, sampler=sampler,
                             optimizer_fn=optimizer_fn if init == "ssl" else None)
            except WeightsUnavailableError as exc:
                unavailable[init] = str(exc).split(". To use")[0]
                rows.append(skipped(init, frac, cfg.seed, unavailable[init]))
                print(f"[{init} {tag}%] skipped: {rows[-1]['reason']}")
                continue
            r.update(dataset=spec.key, encoder=str(cfg.encoder), device=str(device), config=cfg.to_dict(),
                     numerics=numerics, synthetic=spec.synthetic)
            print(f"[{r['method']} {tag}%] n={r['n_labels']} epochs={r['epochs']} best={r['best_epoch']} "
                  f"test {format_summary(r)} ({r['seconds']:.1f}s)")
            if init == "ssl":
                write_json(out / f"finetune_metrics_{tag}pct.json", public(r))
                _save_predictions(out / f"finetune_predictions_{tag}pct.npz", r, splits)
                m = r["_model"]
                save_torch({"format": CHECKPOINT_FORMAT, "model_state": m.state_dict(), "meta": m.meta,
                            "config": r["train_config"], "epoch": r["best_epoch"], "val_metrics": r["val_metrics"],
                            "dataset": spec.key}, out / f"finetune_{tag}pct.pt")
                save_figure(reliability_diagram(softmax(r["_test_logits"]), splits["test"].labels,
                                                spec.positive_class, cfg.n_bins,
                                                title=f"{spec.key}: SSL fine-tuned, {tag}% labels (test)",
                                                positive_label=spec.positive_name),
                            out / f"finetune_reliability_{tag}pct.png")
                results["finetune"].append(public(r))
            rows.append(public(r) | {"method": INIT_NAMES[init]})
        if compare_inits:
            title = f"{spec.key}, {tag}% labels (n={res['n_labels']}), seed {cfg.seed}"
            write_json(out / f"init_comparison_{tag}pct.json", {"fraction": frac, "seed": cfg.seed, "rows": rows})
            write_text(out / f"init_comparison_{tag}pct.md", comparison_table(rows, title))
            results["compare"].append({"fraction": frac, "rows": rows})
    results["wall_time_s"] = time.perf_counter() - t_start
    return results


def config_from_args(args: argparse.Namespace) -> DownstreamConfig:
    names = {f.name for f in fields(DownstreamConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names and v is not None}
    kw["progress"] = not args.no_progress
    return DownstreamConfig(**kw)


def add_downstream_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``medssl.probe`` and ``medssl.efficiency``."""
    p.add_argument("--encoder", default=None, help="SSL encoder checkpoint (ssl_encoder.pt from medssl.pretrain)")
    p.add_argument("--backbone", default=None, choices=("smallcnn", "resnet18", "resnet50"),
                   help="architecture when no --encoder is given (scratch / ImageNet only)")
    p.add_argument("--probe-c", type=float, nargs="+", default=list(DEFAULT_C_GRID),
                   help="logistic-regression C values tried; the best validation AUROC wins")
    p.add_argument("--epochs", type=int, default=30, help="fine-tune/scratch epochs (raised to reach --min-steps)")
    p.add_argument("--min-steps", type=int, default=100, help="fewest optimizer steps for small label fractions")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="head learning rate (and every layer's for scratch)")
    p.add_argument("--encoder-lr", type=float, default=1e-4, help="encoder learning rate when fine-tuning")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--aug", default="light", choices=("none", "basic", "light"), help="supervised augmentation")
    p.add_argument("--weights", default=None, help="local ImageNet weights file (.pth) for the ImageNet init")
    p.add_argument("--indices-dir", default=None, help="folder of indices_frac=<f>_seed=<s>.json "
                                                       "(default <out>/indices); reuse it to share labels")
    accel.add_precision_args(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.probe", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_common_args(p)
    add_downstream_args(p)
    p.add_argument("--label-frac", dest="fractions", type=float, nargs="+", default=[0.1],
                   help="label fraction(s) in (0, 1], e.g. 0.05 0.1")
    p.add_argument("--finetune", action="store_true", help="also fine-tune the SSL encoder at each fraction")
    p.add_argument("--compare-inits", action="store_true",
                   help="also fine-tune from ImageNet and from scratch at each fraction (task B3)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    res = run(cfg, args.out, overwrite=args.overwrite, do_finetune=args.finetune, compare_inits=args.compare_inits)
    note = "  [SYNTHETIC data]" if get_spec(cfg.dataset).synthetic else ""
    print(f"done in {res['wall_time_s']:.1f}s -> {args.out}{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
