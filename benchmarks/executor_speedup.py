"""Wall time of one small label-efficiency grid, inline and on submitit's local executor, in one run.

    python benchmarks/executor_speedup.py                       # 2 fractions x 2 seeds x scratch, smallcnn
    python benchmarks/executor_speedup.py --parallelism 4 --epochs 20 --out benchmarks/results/executor.json

The same grid (``python -m medssl.efficiency`` with ``--methods scratch --backbone smallcnn``) runs three times into
fresh folders: inline (one cell after another in this process), through submitit's ``LocalExecutor`` with
``--parallelism`` worker processes using torch's default threads (as inline: the same ``label_grid.csv``, byte for
byte), and the same with ``--cpus 1`` (one thread per worker: no oversubscription; numbers differ slightly). It prints
the wall times, the speed-ups, the CSV comparisons, and the machine's load (``os.getloadavg``, what ``uptime``
shows) before and after each run, since a shared machine's other jobs move the numbers. Real BreastMNIST is used when
``breastmnist.npz`` is in the data root ($MEDMNIST_ROOT); otherwise the synthetic set, and the output says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from medssl.data import ensure_file
from medssl.efficiency import GridConfig, run_grid
from medssl.errors import DatasetNotAvailableError
from medssl.jobs.executors import ClusterSettings
from medssl.utils import write_json


def real_breastmnist() -> bool:
    try:
        ensure_file("breastmnist", download=False)    # a corrupt file raises: never time a broken set
        return True
    except DatasetNotAvailableError:
        return False


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--parallelism", type=int, default=2, help="local executor: worker processes")
    p.add_argument("--out", default=None, help="JSON file for the numbers")
    a = p.parse_args(argv)
    dataset = "breastmnist" if real_breastmnist() else "synthetic"

    def cfg(root: Path) -> GridConfig:
        return GridConfig(dataset, backbone="smallcnn", methods=["scratch"], fractions=a.fractions, seeds=a.seeds,
                          epochs=a.epochs, min_steps=0, progress=False, device="cpu",
                          root=None if dataset == "breastmnist" else str(root))

    variants = {"inline": None,
                "local": ClusterSettings("local", parallelism=a.parallelism),
                "local_1thread": ClusterSettings("local", parallelism=a.parallelism, cpus=1)}
    walls, loads, csv = {}, [load()], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, cluster in variants.items():
            t0 = time.perf_counter()
            run_grid(cfg(tmp / "data"), tmp / name, cluster=cluster.validate() if cluster else None)
            walls[name] = time.perf_counter() - t0
            loads.append(load())
            csv[name] = pd.read_csv(tmp / name / "label_grid.csv")
        same = (tmp / "inline" / "label_grid.csv").read_bytes() == (tmp / "local" / "label_grid.csv").read_bytes()
    numbers = csv["inline"].select_dtypes("number").columns
    one_thread_diff = float((csv["inline"][numbers] - csv["local_1thread"][numbers]).abs().max().max())
    n = len(a.fractions) * len(a.seeds)
    result = {"dataset": dataset, "synthetic": dataset == "synthetic", "cells": n, "method": "scratch",
              "backbone": "smallcnn", "epochs": a.epochs, "parallelism": a.parallelism, "cpus": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "wall_s": walls,
              "speedup": {k: walls["inline"] / v for k, v in walls.items() if k != "inline"},
              "label_grid_csv_identical": same, "one_thread_max_abs_diff": one_thread_diff,
              "load_before_and_after_each": loads, "torch": torch.__version__, "python": platform.python_version()}
    print(f"{dataset}{' (SYNTHETIC: no breastmnist.npz in the data root)' if dataset == 'synthetic' else ''}: "
          f"{n} cells (fractions {a.fractions} x seeds {a.seeds}), scratch smallcnn, {a.epochs} epochs")
    print(f"inline ({torch.get_num_threads()} torch threads): {walls['inline']:.1f} s")
    print(f"local executor, {a.parallelism} workers, same threads: {walls['local']:.1f} s  "
          f"speed-up x{result['speedup']['local']:.2f}  label_grid.csv byte-identical to inline: {same}")
    print(f"local executor, {a.parallelism} workers, --cpus 1: {walls['local_1thread']:.1f} s  "
          f"speed-up x{result['speedup']['local_1thread']:.2f}  largest difference from inline: {one_thread_diff:.1e}")
    print(f"load average (1, 5, 15 min) before, then after each run: {' | '.join(loads)} on {os.cpu_count()} CPUs")
    if a.out:
        write_json(a.out, result)
        print(f"wrote {a.out}")
    else:
        print(json.dumps(result, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
