"""Does the fast pipeline learn as well as the seed projects' one? Same model, seed, epochs; both test scores.

    python benchmarks/accuracy_parity.py --dataset pneumoniamnist --model resnet18 --epochs 10 \
        --out benchmarks/results/parity_<device>.json

Two supervised runs of the same architecture (3x3 stem at 28 px), same seed, batch size, optimizer (AdamW),
learning rate, weight decay, per-step cosine schedule and epochs, each keeping the epoch with the best
validation AUROC and scored on the test split by the same evaluation code:

* ``seed``    -- the seed projects' input pipeline (PIL transforms per image in DataLoader workers: flip,
                 rotation 10 degrees, ColorJitter 0.1; fp32, NCHW), in a plain training loop;
* ``library`` -- ``medssl.train.run`` at the same settings: uint8 split on the device, per-batch augmentation
                 (the ``light`` preset), the library's mixed precision (bf16 on compute capability >= 8.0,
                 fp16 with loss scaling on older GPUs) + channels_last + fused AdamW on CUDA.

It prints test accuracy / AUROC and wall time for both and writes them to a JSON file. The two runs draw
different random numbers (different augmentation code), so compare over several ``--seeds`` before reading
anything into a one-seed difference.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import seed_style_loader

from medssl.data import load_splits, stratified_fraction
from medssl.models import build_model
from medssl.registry import get_spec
from medssl.train import TrainConfig, cosine_schedule, evaluate, run
from medssl.utils import resolve_device, set_seed, write_json


def seed_style_run(key: str, arch: str, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                   size: int, workers: int, device: torch.device, label_frac: float = 1.0) -> dict:
    """The seed projects' way: per-image PIL augmentation, fp32, a hand-written loop; best val AUROC -> test."""
    set_seed(seed)
    spec = get_spec(key)
    splits = load_splits(key, size=size)
    model = build_model(arch, spec.n_classes, spec.n_channels, input_size=size, stem="small").to(device)
    loader = seed_style_loader(key, size, batch_size, ssl=False, workers=workers)
    if label_frac < 1.0:  # the same stratified subset medssl.train.run draws for (label_frac, seed)
        idx = stratified_fraction(splits["train"].labels, label_frac, seed)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(loader.dataset, idx.tolist()),
                                             batch_size=batch_size, shuffle=True, num_workers=workers,
                                             pin_memory=loader.pin_memory, drop_last=True,
                                             persistent_workers=workers > 0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = cosine_schedule(opt, len(loader) * epochs)
    best, best_state, best_epoch = -math.inf, None, 0
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        vm, _ = evaluate(model, splits["val"], spec, device=device)
        if vm["auroc"] > best:
            best, best_state, best_epoch = vm["auroc"], copy.deepcopy(model.state_dict()), epoch
    wall = time.perf_counter() - t0
    model.load_state_dict(best_state)
    tm, _ = evaluate(model, splits["test"], spec, device=device)
    return {"pipeline": "seed", "acc": tm["acc"], "auroc": tm["auroc"], "val_auroc": best, "best_epoch": best_epoch,
            "train_seconds": wall}


def library_run(key: str, arch: str, epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                size: int, device: str, label_frac: float = 1.0) -> dict:
    cfg = TrainConfig(dataset=key, model=arch, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                      seed=seed, size=size, aug="light", stem="small", device=device, progress=False,
                      label_frac=label_frac)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = run(cfg, Path(tmp) / "run")
        wall = time.perf_counter() - t0
    return {"pipeline": "library", "acc": m["acc"], "auroc": m["auroc"], "val_auroc": m["val_metrics"]["auroc"],
            "best_epoch": m["best_epoch"], "train_seconds": wall}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--model", default="resnet18", choices=["resnet18", "smallcnn"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128, help="the seed projects' batch size (both pipelines)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--label-frac", type=float, default=1.0,
                   help="train both pipelines on the same stratified fraction of the training split (smoke runs)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the seed-style pipeline")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="JSON file for the results")
    a = p.parse_args(argv)
    device = resolve_device(a.device)
    result = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "torch": torch.__version__, "args": vars(a), "dataset": a.dataset,
              "synthetic": get_spec(a.dataset).synthetic, "status": "running", "runs": [], "mean_std": {}}
    rows = result["runs"]
    for seed in a.seeds:
        common = dict(key=a.dataset, arch=a.model, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                      weight_decay=a.weight_decay, seed=seed, size=a.size, label_frac=a.label_frac)
        for pipeline in ("seed", "library"):
            row = (seed_style_run(**common, workers=a.workers, device=device) if pipeline == "seed"
                   else library_run(**common, device=str(device)))
            row["seed"] = seed
            rows.append(row)
            print(f"seed {seed} {row['pipeline']:>7}: test acc {row['acc']:.4f} auroc {row['auroc']:.4f} "
                  f"(val auroc {row['val_auroc']:.4f}, best epoch {row['best_epoch']}) in {row['train_seconds']:.0f}s",
                  flush=True)
            if a.out:  # after every run, so a run stopped by a time limit keeps what it finished
                write_json(a.out, result)
    summary = result["mean_std"]
    for pipe in ("seed", "library"):
        got = [r for r in rows if r["pipeline"] == pipe]
        summary[pipe] = {k: [float(np.mean([r[k] for r in got])), float(np.std([r[k] for r in got]))]
                         for k in ("acc", "auroc", "train_seconds")}
        print(f"{pipe:>7}: acc {summary[pipe]['acc'][0]:.4f} ± {summary[pipe]['acc'][1]:.4f}, "
              f"auroc {summary[pipe]['auroc'][0]:.4f} ± {summary[pipe]['auroc'][1]:.4f}, "
              f"{summary[pipe]['train_seconds'][0]:.0f}s per run")
    result["status"] = "done"
    if a.out:
        write_json(a.out, result)
        print(f"wrote {a.out}")
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
