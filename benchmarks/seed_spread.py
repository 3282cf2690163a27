"""Seed spread of a reference run: re-run its exact configuration with other seeds, report mean ± std.

    python benchmarks/seed_spread.py results/week3/pneumoniamnist/reference/metrics_resnet18_all_basic.json \\
        --seeds 0 1 --report reports/seed_spread/pneumoniamnist_resnet18_all_basic.md

The configuration is the ``config`` record of the given metrics file (every hyperparameter of a supervised run is
saved there); only the seed changes. The committed run counts as one of the seeds. Each new seed trains into
``--runs/<dataset>/<name>/seed<N>/`` and is reused when its ``test_metrics.json`` is already there with the same
configuration, so an interrupted sweep resumes. Runs that used a notebook's own augmentation (not a preset) cannot
be rebuilt from the record and are refused. Test metrics are only reported; nothing is chosen here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "starter" / "src"))

from medssl.augment import supervised_augmentation  # noqa: E402
from medssl.data import get_spec  # noqa: E402
from medssl.errors import ConfigError  # noqa: E402
from medssl.train import TrainConfig, run  # noqa: E402
from medssl.utils import mean_std, write_text  # noqa: E402

METRICS = ("auroc", "acc", "ece")


def config_of(record: dict) -> TrainConfig:
    """The ``TrainConfig`` a metrics record was made with (its seed included)."""
    if "config" not in record:
        raise ConfigError("this metrics file has no 'config' record; give a supervised run's metrics JSON "
                          "(e.g. results/week3/<dataset>/<student>/metrics_<variant>.json).")
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in record["config"].items() if k in names})
    used = record.get("augmentation")
    preset = supervised_augmentation(cfg.aug, get_spec(cfg.dataset).modality).describe()
    if used is not None and list(used) != list(preset):
        raise ConfigError(f"the run's augmentation {used} is not the '{cfg.aug}' preset {preset} (a notebook's own "
                          "pipeline); other seeds cannot repeat it from the record.")
    return cfg


def row(seed: int, res: dict, source: Path) -> dict:
    """A table row: the seed, the test metrics, the best epoch, the wall time and the initialisation that ran."""
    return {"seed": seed, **{k: res[k] for k in METRICS}, "best_epoch": res.get("best_epoch"),
            "wall_time_s": res.get("wall_time_s"), "init": res.get("model", {}).get("init", "-"),
            "source": str(source)}


def sweep(metrics_file: Path, seeds: list[int], runs: Path, progress: bool = False) -> list[dict]:
    """One row per seed (the committed one first): seed, test metrics, best epoch, wall time, where it came from."""
    record = json.loads(metrics_file.read_text())
    base = config_of(record)
    name = metrics_file.stem.removeprefix("metrics_")
    rows = [row(base.seed, record, metrics_file)]
    for seed in seeds:
        if seed == base.seed:
            raise ConfigError(f"seed {seed} is the committed run's own seed; give other seeds.")
        cfg = TrainConfig(**{**base.to_dict(), "seed": seed, "progress": progress})
        out = runs / base.dataset / name / f"seed{seed}"
        done = out / "test_metrics.json"
        if done.exists():
            res = json.loads(done.read_text())
            same = {k: v for k, v in res.get("config", {}).items() if k != "progress"}
            want = {k: v for k, v in cfg.to_dict().items() if k != "progress"}
            if same != want:
                raise ConfigError(f"{out} holds a run with another configuration; move it away or give another "
                                  "--runs folder (nothing was overwritten).")
            print(f"seed {seed}: reusing {done}", flush=True)
        else:
            print(f"seed {seed}: training into {out}", flush=True)
            res = run(cfg, out, overwrite=out.exists())
        rows.append(row(seed, res, done))
    return rows


def report(rows: list[dict], metrics_file: Path, cfg: TrainConfig) -> str:
    lines = [f"# Seed spread: {metrics_file.stem.removeprefix('metrics_')} on {cfg.dataset}", "",
             f"Configuration from `{metrics_file}`, only the seed changed: model {cfg.model}, finetune "
             f"{cfg.finetune}, aug {cfg.aug}, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, "
             f"weight decay {cfg.weight_decay}, optimizer {cfg.optimizer}, scheduler {cfg.scheduler}, "
             f"select {cfg.select}, size {cfg.size}, ImageNet weights requested: {cfg.pretrained}. Test split, best "
             "validation epoch.",
             "", "| seed | test AUROC | test acc | test ECE | best epoch | wall time (s) | initialisation |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = "-" if r["wall_time_s"] is None else f"{r['wall_time_s']:.0f}"
        lines.append(f"| {r['seed']} | {r['auroc']:.4f} | {r['acc']:.4f} | {r['ece']:.4f} | {r['best_epoch']} "
                     f"| {wall} | {r['init']} |")
    stats = {k: mean_std([r[k] for r in rows]) for k in METRICS}
    lines.append("| mean ± std | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in stats.values()) + " | | | |")
    lines += ["", f"std: sample standard deviation over {len(rows)} seeds (n - 1)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", type=Path, help="a supervised run's metrics JSON with its config record")
    p.add_argument("--seeds", type=int, nargs="+", required=True, help="seeds besides the committed run's")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "seed_spread", help="where the new runs train")
    p.add_argument("--report", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--progress", action="store_true", help="show the training progress bars")
    args = p.parse_args(argv)
    try:
        cfg = config_of(json.loads(args.metrics.read_text()))
        rows = sweep(args.metrics, args.seeds, args.runs, args.progress)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = report(rows, args.metrics, cfg)
    print(text)
    if args.report is not None:
        write_text(args.report, text)
        print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
