"""Label efficiency: how much does SSL pretraining save in labels?

``python -m medssl.efficiency --dataset breastmnist --encoder runs/ssl/ssl_encoder.pt --out runs/grid``

For every label fraction (default 1, 2, 5, 10, 20, 100 %) and seed (default 3
seeds) it runs

* ``probe``    -- linear probe on the frozen SSL encoder (features computed once for the whole grid),
* ``finetune`` -- the SSL encoder fine-tuned (small encoder LR, larger head LR),
* ``scratch``  -- the same architecture trained from random weights on the same labels,
* ``imagenet`` -- (optional) fine-tuned from ImageNet weights, skipped with the reason when unavailable.

All methods of one (fraction, seed) use the *same* labelled images: the indices
are drawn once by :func:`medssl.data.fraction_indices` into ``<out>/indices``
(or ``--indices-dir``) and read back by every method; each result row carries
the fingerprint of the indices it used. For one seed the subsets are nested
(the 1 % subset lies inside the 2 % one, and so on), so the curve compares
growing label sets rather than unrelated draws.

Files in ``--out``: ``runs/<method>_frac=<f>_seed=<s>.json`` (one per run),
``label_grid_runs.csv`` (one row per run), ``label_grid.csv`` (mean and sample
std over seeds per method and fraction), ``label_grid.md``,
``label_efficiency.png`` (metric vs fraction, log x, error bars = std) and
``grid_config.json``. A grid that was interrupted continues with ``--resume``
(finished runs are kept; the hyperparameters must match).

``--executor local|slurm`` (:mod:`medssl.jobs.executors`) runs each (fraction, seed, method) cell as a submitit job
reading the label indices drawn here beforehand; ``local`` waits for the cells and writes the tables, ``slurm``
queues one job array and a summary job that writes them after it. ``label_grid.csv`` is byte for byte the same.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from . import accel
from .cli import HelpFormatter, add_common_args, run_cli
from .data import load_splits
from .errors import ConfigError, OutputExistsError, WeightsUnavailableError
from .grid_cells import frozen_features, grid_cell, run_cell
from .jobs.executors import (
    ClusterSettings,
    add_executor_args,
    check_executor,
    make_executor,
    settings_from_args,
    use_threads,
)
from .jobs.jobbook import Job, JobBook, format_status, run_local, submit_slurm
from .plots import label_fraction_axis
from .probe import DownstreamConfig, add_downstream_args, build_init_model, function_name, label_subset
from .registry import get_spec
from .utils import (
    RUN_MARKERS,
    get_logger,
    prepare_out_dir,
    resolve_device,
    save_figure,
    write_json,
    write_text,
)

GRID_METHODS = ("probe", "finetune", "scratch", "imagenet")
DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
METRICS = ("auroc", "acc", "ece", "f1_macro", "sensitivity", "specificity")
RAW_COLUMNS = ("dataset", "method", "fraction", "pct", "seed", "n_labels", *METRICS, "val_auroc", "epochs",
               "best_epoch", "seconds", "indices_file", "indices_md5", "init")
SUMMARY_COLUMNS = ("dataset", "method", "fraction", "pct", "n_seeds", "n_labels",
                   *[f"{m}_{s}" for m in METRICS for s in ("mean", "std")])
METHOD_LABELS = {"probe": "SSL linear probe", "finetune": "SSL fine-tune", "scratch": "supervised from scratch",
                 "imagenet": "ImageNet fine-tune"}
# settings that must match for --resume to add to an existing grid
_RESUME_KEYS = ("dataset", "encoder", "backbone", "stem", "size", "probe_c", "probe_max_iter", "epochs", "min_steps",
                "batch_size", "lr", "encoder_lr", "weight_decay", "aug", "weights", "n_bins", "precision")
# what a grid saved before a setting existed ran with
_RESUME_DEFAULTS = {"precision": "auto"}


@dataclass
class GridConfig(DownstreamConfig):
    """A :class:`~medssl.probe.DownstreamConfig` plus the grid's fractions, seeds and methods."""

    fractions: list[float] = field(default_factory=lambda: list(DEFAULT_FRACTIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["probe", "finetune", "scratch"])
    metric: str = "auroc"

    def validate(self) -> GridConfig:
        super().validate()
        bad = [m for m in self.methods if m not in GRID_METHODS]
        if bad or not self.methods:
            raise ConfigError(f"--methods must be some of {', '.join(GRID_METHODS)}, got {self.methods}.")
        if not self.seeds:
            raise ConfigError("give at least one seed (--seeds 0 1 2).")
        if self.metric not in METRICS:
            raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}.")
        if not self.encoder and {"probe", "finetune"} & set(self.methods):
            raise ConfigError("probe and finetune need --encoder PATH/ssl_encoder.pt (from python -m medssl.pretrain); "
                              "or run only --methods scratch imagenet with --backbone.")
        self.fractions = sorted(set(self.fractions))
        self.seeds = list(dict.fromkeys(int(s) for s in self.seeds))
        return self


def run_filename(method: str, frac: float, seed: int) -> str:
    """``<method>_frac=<repr(frac)>_seed=<seed>.json``: repr keeps fractions apart that agree to 6 digits."""
    return f"{method}_frac={frac!r}_seed={seed}.json"


def saved_run(runs_dir: Path, method: str, frac: float, seed: int) -> Path | None:
    """The saved run of one grid cell, or None.

    Grids saved before run files were named with ``repr(frac)`` used ``{frac:g}``, which gives the same name to
    fractions that agree to 6 digits (and ``1`` for 1.0); such a file counts only when its recorded label
    fraction is exactly ``frac``.
    """
    path = runs_dir / run_filename(method, frac, seed)
    if path.exists():
        return path
    legacy = runs_dir / f"{method}_frac={frac:g}_seed={seed}.json"
    if legacy.exists():
        try:
            if json.loads(legacy.read_text()).get("fraction") == frac:
                return legacy
        except (OSError, ValueError):
            pass
    return None


def _row(res: dict) -> dict:
    row = {k: res.get(k) for k in RAW_COLUMNS}
    row["val_auroc"] = res.get("val_metrics", {}).get("auroc")
    row["init"] = res.get("model_init", "ssl encoder (frozen)" if res.get("method") == "probe" else None)
    return row


def summarize(raw: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof=1; NaN for a single seed) over seeds, per method and fraction."""
    if raw.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    agg = []
    for (dataset, method, frac), g in raw.groupby(["dataset", "method", "fraction"], sort=False):
        r = {"dataset": dataset, "method": method, "fraction": frac, "pct": frac * 100, "n_seeds": len(g),
             "n_labels": float(g["n_labels"].mean())}
        for m in METRICS:
            vals = g[m].astype(float)
            r[f"{m}_mean"] = float(vals.mean())
            r[f"{m}_std"] = float(vals.std(ddof=1)) if len(g) > 1 else float("nan")
        agg.append(r)
    order = {m: i for i, m in enumerate(GRID_METHODS)}
    df = pd.DataFrame(agg, columns=list(SUMMARY_COLUMNS))
    return df.sort_values(["method", "fraction"], key=lambda s: s.map(order) if s.name == "method" else s,
                          ignore_index=True)


def summary_markdown(summary: pd.DataFrame, metrics: Sequence[str] = ("auroc", "acc", "ece")) -> str:
    """Mean ± std per fraction (rows) and method (columns), one table per metric."""
    out = []
    methods = [m for m in GRID_METHODS if m in set(summary["method"])]
    for metric in metrics:
        out += [f"### test {metric} (mean ± std over seeds)", "",
                "| labels | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
                "|---|" + "---:|" * len(methods)]
        for frac in sorted(summary["fraction"].unique()):
            cells = []
            for m in methods:
                r = summary[(summary["method"] == m) & (summary["fraction"] == frac)]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                std = "" if math.isnan(r[f"{metric}_std"]) else f" ± {r[f'{metric}_std']:.3f}"
                cells.append(f"{r[f'{metric}_mean']:.3f}{std} (n={int(r['n_seeds'])})")
            n_lab = summary[summary["fraction"] == frac]["n_labels"].iloc[0]
            out.append(f"| {frac * 100:g}% ({n_lab:.0f}) | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def label_efficiency_plot(summary: pd.DataFrame, metric: str = "auroc", title: str | None = None):
    """Test ``metric`` against the percentage of labels (log x), one line per method, error bars = std."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"probe": "o", "finetune": "s", "scratch": "^", "imagenet": "D"}
    for method in [m for m in GRID_METHODS if m in set(summary["method"])]:
        g = summary[summary["method"] == method].sort_values("fraction")
        ax.errorbar(g["pct"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"].fillna(0.0), marker=markers[method],
                    capsize=3, label=METHOD_LABELS[method])
    label_fraction_axis(ax, summary["pct"].unique(), metric, title)
    fig.tight_layout()
    return fig


def _check_resume(out: Path, cfg: GridConfig) -> None:
    path = out / "grid_config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text()).get("config", {})
    old = {**_RESUME_DEFAULTS, **old}
    diff = [k for k in _RESUME_KEYS if old.get(k) != cfg.to_dict().get(k)]
    if diff:
        raise ConfigError(f"--resume: {out} holds a grid made with different settings "
                          f"({', '.join(f'{k}: {old.get(k)!r} -> {cfg.to_dict().get(k)!r}' for k in diff)}). "
                          "Use a new --out, or --overwrite to start again.")


def run_grid(cfg: GridConfig, out: str | Path, overwrite: bool = False, resume: bool = False, sampler=None,
             probe_fn=None, optimizer_fn=None, cluster: ClusterSettings | None = None) -> dict:
    """Run (or continue) the grid and write the CSVs, table and plot; returns the file paths and summary.

    ``sampler``, ``probe_fn`` and ``optimizer_fn`` replace the library's label-subset draw, linear probe
    and SSL fine-tune optimizer, as in :func:`medssl.probe.run`; their names go into ``grid_config.json``.
    ``cluster``: run the cells as submitit jobs (see the module docstring); with Slurm the result's ``summary``
    is None (queued: the summary job writes the tables) and ``record["batch"]`` names the jobs' record.
    """
    cfg.validate()
    if cluster is not None:
        check_executor(cluster)
    t_start = time.perf_counter()
    spec = get_spec(cfg.dataset)
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume keeps earlier runs and --overwrite deletes them; pick one.")
    if resume:
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"{out} is a file, not a grid folder.")
        _check_resume(out, cfg)
        out.mkdir(parents=True, exist_ok=True)
    else:
        if (out / "runs").is_dir() and any((out / "runs").iterdir()) and not overwrite:
            raise OutputExistsError(f"{out} already holds grid runs. Pick a new --out, pass --resume to continue "
                                    "that grid, or --overwrite to replace it.")
        out = prepare_out_dir(out, overwrite, markers=(*RUN_MARKERS, "grid_config.json", "label_grid.csv"))
        shutil.rmtree(out / "runs", ignore_errors=True)
    runs_dir = out / "runs"
    runs_dir.mkdir(exist_ok=True)
    indices_dir = _indices_dir(cfg, out)
    device = resolve_device(cfg.device)
    accel.set_deterministic(cfg.deterministic, device)
    record = {"config": cfg.to_dict(), "status": "running", "device": str(device), "indices_dir": str(indices_dir),
              "numerics": accel.describe(device, cfg.precision, cfg.deterministic), "skipped": {},
              "synthetic": spec.synthetic}
    custom = {k: function_name(f) for k, f in (("sampler", sampler), ("probe_fn", probe_fn),
                                               ("optimizer_fn", optimizer_fn)) if f is not None}
    if custom:
        record["custom"] = custom
    write_json(out / "grid_config.json", record)
    splits = load_splits(cfg.dataset, size=cfg.size, root=cfg.root)
    methods = list(cfg.methods)
    if "imagenet" in methods:
        try:
            build_init_model("imagenet", spec, cfg)
        except WeightsUnavailableError as exc:
            reason = str(exc).split(". To use")[0]
            record["skipped"]["imagenet"] = reason
            get_logger().warning("imagenet fine-tuning skipped: %s", reason)
            methods.remove("imagenet")
    todo = [(f, s, m) for f in cfg.fractions for s in cfg.seeds for m in methods
            if not (resume and saved_run(runs_dir, m, f, s))]
    hooks = (sampler, probe_fn, optimizer_fn)
    if cluster is not None and cluster.executor != "inline" and todo:
        if cluster.executor == "slurm":   # written before the summary job that reads it can start
            record.update(status="queued", n_new_runs=len(todo), queued_at=time.time())
            write_json(out / "grid_config.json", record)
        record["batch"] = _run_jobs(cfg, out, splits, todo, hooks, cluster).batch
        if cluster.executor == "slurm":
            write_json(out / "grid_config.json", record)
            return {"summary": None, "raw": None, "out": out, "record": record}
    else:
        use_threads(cluster.cpus if cluster else None)   # as a job would: the thread count changes the last digits
        feats = None
        if any(m == "probe" for _, _, m in todo):
            t0 = time.perf_counter()
            feats = frozen_features(cfg, splits, device, cfg.seeds[0])
            record["feature_seconds"] = time.perf_counter() - t0
        for i, (frac, seed, method) in enumerate(todo, 1):
            res = run_cell(cfg, runs_dir / run_filename(method, frac, seed), indices_dir, splits, feats, device,
                           record["numerics"], frac, seed, method, hooks)
            print(f"[{i}/{len(todo)}] {method:8s} {frac * 100:g}% seed {seed}: n={res['n_labels']} "
                  f"auroc={res['auroc']:.4f} acc={res['acc']:.4f} ece={res['ece']:.4f} ({res['seconds']:.1f}s)",
                  flush=True)
    record.update(wall_time_s=time.perf_counter() - t_start, n_new_runs=len(todo))
    return _write_tables(cfg, out, record, methods)


def _indices_dir(cfg: GridConfig, out: Path) -> Path:
    return Path(cfg.indices_dir) if cfg.indices_dir else out / "indices"


def _run_jobs(cfg: GridConfig, out: Path, splits, todo: list, hooks: tuple, cluster: ClusterSettings) -> JobBook:
    """The cells as submitit jobs: local ones are waited for; Slurm gets one array and a summary job after it.

    Each job loads the data itself (and, for the probe, computes the frozen encoder's features)."""
    for frac, seed in dict.fromkeys((f, s) for f, s, _ in todo):   # drawn here, once: no two jobs draw the same
        label_subset(splits["train"], frac, seed, _indices_dir(cfg, out), hooks[0])
    job_cfg = GridConfig(**{**cfg.to_dict(), "progress": False})   # no progress bars in the jobs' logs
    jobs = [Job(run_filename(m, f, s).removesuffix(".json"), f"{m} {f * 100:g}% seed {s}", grid_cell,
                (job_cfg, str(out / "runs" / run_filename(m, f, s)), str(_indices_dir(cfg, out)), f, s, m,
                 cfg.seeds[0], hooks)) for f, s, m in todo]
    then = Job("summary", "tables (label_grid.csv), after every cell", finish_grid, (str(out),))
    book = JobBook.create(out, "grid", cluster.executor, jobs + ([then] if cluster.executor == "slurm" else []))
    executor = make_executor(cluster, book.log_dir, name="medssl-grid")
    if cluster.executor == "local":
        states = run_local(executor, book, jobs, cluster.jobs_at_once, cluster.cpus)
        if any(st != "done" for st in states.values()):
            print(format_status(book.status(), book))
    else:
        ids = submit_slurm(executor, book, [(jobs, [])], cluster.cpus, then=then)
        print(f"queued {len(jobs)} cells as job array {ids[0]} and the tables after them; "
              f"watch: python -m medssl.course status {out}")
    return book


def finish_grid(out: str | Path) -> str:
    """The tables and plot of a grid whose cells ran as Slurm jobs (the summary job after the array)."""
    out = Path(out)
    record = json.loads((out / "grid_config.json").read_text())
    cfg = GridConfig(**record["config"])
    methods = [m for m in cfg.methods if m not in record.get("skipped", {})]
    record["wall_time_s"] = time.time() - record.get("queued_at", time.time())
    _write_tables(cfg, out, record, methods)
    return "done"


def _write_tables(cfg: GridConfig, out: Path, record: dict, methods: list[str]) -> dict:
    """Read every saved run and write the CSVs, the markdown table, the plot and the final ``grid_config.json``."""
    spec, runs_dir = get_spec(cfg.dataset), out / "runs"
    rows = []
    for frac in cfg.fractions:
        for seed in cfg.seeds:
            for method in methods:
                p = saved_run(runs_dir, method, frac, seed)
                if p is not None:
                    rows.append(_row(json.loads(p.read_text())))
    raw = pd.DataFrame(rows, columns=list(RAW_COLUMNS))
    summary = summarize(raw)
    write_text(out / "label_grid_runs.csv", raw.to_csv(index=False))
    write_text(out / "label_grid.csv", summary.to_csv(index=False))
    write_text(
        out / "label_grid.md",
        f"## Label efficiency on {spec.key}{' (SYNTHETIC)' if spec.synthetic else ''}\n\n"
        + summary_markdown(summary)
        + "".join(f"\n{m} skipped: {r}\n" for m, r in record["skipped"].items()))
    title = f"{spec.key}: label efficiency ({len(cfg.seeds)} seeds)" + (" [SYNTHETIC]" if spec.synthetic else "")
    save_figure(label_efficiency_plot(summary, cfg.metric, title), out / "label_efficiency.png")
    expected = len(cfg.fractions) * len(cfg.seeds) * len(methods)
    record.update(status="done" if len(raw) == expected else f"incomplete: {len(raw)} of {expected} runs",
                  n_runs=len(raw), seconds_by_method=raw.groupby("method")["seconds"].sum().to_dict() if len(raw)
                  else {})
    write_json(out / "grid_config.json", record)
    return {"summary": summary, "raw": raw, "out": out, "record": record}


def config_from_args(args: argparse.Namespace) -> GridConfig:
    names = {f.name for f in fields(GridConfig)}
    kw = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.seeds is None:
        kw["seeds"] = [args.seed + i for i in range(args.n_seeds)]
    kw["progress"] = not args.no_progress
    return GridConfig(**kw)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.efficiency", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_common_args(p)
    add_downstream_args(p)
    p.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                   help="label fractions in (0, 1]")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (label subset + training); default: --n-seeds seeds starting at --seed")
    p.add_argument("--n-seeds", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=["probe", "finetune", "scratch"], choices=GRID_METHODS)
    p.add_argument("--metric", default="auroc", choices=METRICS, help="metric drawn in label_efficiency.png")
    p.add_argument("--resume", action="store_true", help="continue a grid in --out, keeping its finished runs")
    add_executor_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    res = run_grid(cfg, args.out, overwrite=args.overwrite, resume=args.resume, cluster=settings_from_args(args))
    if res["summary"] is None:   # queued on Slurm
        return 0
    print(summary_markdown(res["summary"], (cfg.metric,)))
    note = "  [SYNTHETIC data]" if res["record"]["synthetic"] else ""
    print(f"{res['record']['n_new_runs']} new runs in {res['record']['wall_time_s']:.1f}s -> {res['out']}{note}")
    return 0 if res["record"]["status"] == "done" else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main))

