"""One cell of the label-efficiency grid (:mod:`medssl.efficiency`): a label fraction, a seed and a method.

The inline grid runs its cells here one after another, sharing the data and the probe's features; a submitit
job runs a single cell (:func:`grid_cell`) and loads the data itself. Both read the label indices saved in the
grid's ``indices`` folder and write the same ``runs/<method>_frac=<f>_seed=<s>.json``.
"""

from __future__ import annotations

from pathlib import Path

from . import accel
from .data import load_splits
from .models import model_from_encoder
from .probe import DownstreamConfig, extract_features, finetune, label_subset, linear_probe, public
from .registry import get_spec
from .utils import resolve_device, set_seed, write_json

INITS = {"finetune": "ssl", "scratch": "scratch", "imagenet": "imagenet"}


def frozen_features(cfg: DownstreamConfig, splits, device, seed: int) -> dict:
    """The frozen SSL encoder's features of every split, for the probe (the same in every process)."""
    set_seed(seed)
    frozen = model_from_encoder(cfg.encoder, get_spec(cfg.dataset).n_classes, finetune="head")
    return extract_features(accel.to_device(frozen, device), splits, cfg.eval_batch_size, device)


def run_cell(cfg: DownstreamConfig, run_file: Path, indices_dir: Path, splits, feats, device, numerics: dict,
             frac: float, seed: int, method: str, hooks: tuple = (None, None, None)) -> dict:
    """Train (or probe) one cell and write its result to ``run_file``; ``hooks``: sampler, probe_fn, optimizer_fn."""
    sampler, probe_fn, optimizer_fn = hooks
    spec = get_spec(cfg.dataset)
    label_subset(splits["train"], frac, seed, indices_dir, sampler)  # drawn once, then read by every method
    if method == "probe":
        res = linear_probe(feats, splits, spec, frac, seed, indices_dir, cfg.probe_c, cfg.probe_max_iter,
                           cfg.n_bins, sampler=sampler, probe_fn=probe_fn)
    else:
        res = finetune(INITS[method], splits, spec, cfg, frac, seed, device, indices_dir, sampler=sampler,
                       optimizer_fn=optimizer_fn if method == "finetune" else None)
        res["method"] = method
    res.update(dataset=spec.key, device=str(device), encoder=cfg.encoder, numerics=numerics)
    write_json(run_file, public(res))
    return res


def grid_cell(cfg: DownstreamConfig, run_file: str, indices_dir: str, frac: float, seed: int, method: str,
              feature_seed: int, hooks: tuple = (None, None, None)) -> str:
    """One cell inside its job: load the data (and the probe's features), then :func:`run_cell`."""
    splits = load_splits(cfg.dataset, size=cfg.size, root=cfg.root)
    device = resolve_device(cfg.device)
    accel.set_deterministic(cfg.deterministic, device)
    feats = frozen_features(cfg, splits, device, feature_seed) if method == "probe" else None
    run_cell(cfg, Path(run_file), Path(indices_dir), splits, feats, device,
             accel.describe(device, cfg.precision, cfg.deterministic), frac, seed, method, hooks)
    return "done"
