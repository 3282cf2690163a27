"""Class-wide tables and figures from every student's metrics files (``python -m medssl.course aggregate``)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from . import aggregate_decisions as AD
from . import manifest as M
from .aggregate_decisions import folder_is_smoke as _folder_is_smoke
from .aggregate_decisions import mean_std as _mean_std
from .check import find_submissions, parse_location

_METRIC_COLS = ("acc", "auroc", "ece", "f1_macro", "sensitivity", "specificity")
_PCT = re.compile(r"_(\d+(?:\.\d+)?)pct$")


def variant_of(week: int, stem: str) -> str:
    """A readable name for a metrics file: ``metrics_resnet18_head`` -> ``resnet18_head``, ``test_metrics`` ->
    ``baseline``, ``probe_metrics_5pct`` -> ``probe@5%``."""
    if stem == "test_metrics":
        return "baseline"
    m = _PCT.search(stem)
    if m:
        return f"{stem[:m.start()].replace('_metrics', '')}@{m.group(1)}%"
    return stem.replace("metrics_", "")


def collect_metrics(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """One row per metrics JSON in ``results/week<N>/<dataset>/<student>/`` (files with the metric keys)."""
    rows = []
    for folder in find_submissions(results_root):
        week, dataset, student = parse_location(folder)
        for path in sorted(folder.glob("*.json")):
            try:
                spec = M.file_spec(week, path.name)
            except ConfigError:
                continue
            if spec.keys is not M.METRIC_RULES:
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            course = data.get("course") or {}
            smoke = bool(course.get("smoke")) or bool((data.get("data") or {}).get("synthetic"))
            if smoke and not include_smoke:
                continue
            row = {"week": week, "dataset": dataset, "student": student, "file": path.name,
                   "variant": variant_of(week, path.stem), "smoke": smoke,
                   "label_frac": data.get("label_frac", course.get("label_frac"))}
            row.update({k: data.get(k) for k in _METRIC_COLS})
            rows.append(row)
    return rows


def collect_label_efficiency(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """Label-efficiency rows of every student's Week 5 folder (method, fraction, metrics).

    From ``probe_vs_supervised.csv`` (core: probe vs supervised at 5% / 10%) and,
    when the student ran task B1, ``B1_label_grid.csv`` (the probe's mean over seeds).
    """
    import pandas as pd

    rows = []
    for folder in find_submissions(results_root):
        week, dataset, student = parse_location(folder)
        if week != 5 or (not include_smoke and _folder_is_smoke(folder)):
            continue
        core_csv, grid_csv = folder / "probe_vs_supervised.csv", folder / "B1_label_grid.csv"
        try:
            if core_csv.is_file():
                for r in pd.read_csv(core_csv).to_dict("records"):
                    rows.append({"dataset": dataset, "student": student, **r})
            if grid_csv.is_file():
                for r in pd.read_csv(grid_csv).to_dict("records"):
                    rows.append({"dataset": dataset, "student": student, "method": f"{r['method']} (B1 seed mean)",
                                 "fraction": r["fraction"], **{m: r.get(f"{m}_mean") for m in ("acc", "auroc", "ece")}})
        except Exception:  # a malformed CSV is the checker's business; aggregation skips it
            continue
    return rows


def summarise(rows: Sequence[dict], metrics: Sequence[str] = ("acc", "auroc", "ece")) -> list[dict]:
    """Mean, std (over students) and n per (week, variant, dataset)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["week"], r["variant"], r["dataset"]), []).append(r)
    out = []
    for (w, v, d), rs in sorted(groups.items()):
        row = {"week": w, "variant": v, "dataset": d, "n_students": len({r["student"] for r in rs})}
        for m in metrics:
            mean, std, n = _mean_std(r.get(m) for r in rs)
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        out.append(row)
    return out


def _fmt_ms(mean: float, std: float) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "-"
    return f"{mean:.3f} ± {std:.3f}"


def summary_markdown(summary: Sequence[dict], metrics: Sequence[str] = ("acc", "auroc", "ece")) -> str:
    """Breast vs Pneumonia side by side: one row per (week, variant), mean ± std over students (n)."""
    datasets = sorted({r["dataset"] for r in summary})
    keys = sorted({(r["week"], r["variant"]) for r in summary})
    by = {(r["week"], r["variant"], r["dataset"]): r for r in summary}
    head = ["week", "variant"] + [f"{d} {m}" for d in datasets for m in metrics] + [f"n {d}" for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, v in keys:
        cells = [str(w), v]
        for d in datasets:
            r = by.get((w, v, d))
            cells += [_fmt_ms(r[f"{m}_mean"], r[f"{m}_std"]) if r else "-" for m in metrics]
        cells += [str(by[(w, v, d)]["n_students"]) if (w, v, d) in by else "0" for d in datasets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_figure(summary: Sequence[dict], weeks: Sequence[int] = (1, 2, 3, 6), metric: str = "auroc",
                      title: str | None = None):
    """Grouped bars: each (week, variant) with one bar per dataset, error bars = std over students."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in summary if r["week"] in weeks]
    datasets = sorted({r["dataset"] for r in rows})
    keys = sorted({(r["week"], r["variant"]) for r in rows})
    by = {(r["week"], r["variant"], r["dataset"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(keys) + 2), 3.8))
    width = 0.8 / max(len(datasets), 1)
    x = np.arange(len(keys))
    for i, d in enumerate(datasets):
        means = [by[(w, v, d)][f"{metric}_mean"] if (w, v, d) in by else np.nan for w, v in keys]
        stds = [by[(w, v, d)][f"{metric}_std"] if (w, v, d) in by else 0.0 for w, v in keys]
        ax.bar(x + (i - (len(datasets) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=d)
    ax.set_xticks(x, [f"W{w} {v}" for w, v in keys], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric} (mean ± std over students)")
    if metric in ("acc", "auroc"):
        ax.set_ylim(0.4, 1.0)
    if not keys:
        ax.text(0.5, 0.5, "(no results yet)", transform=ax.transAxes, ha="center")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title(title or f"Breast vs Pneumonia: test {metric}", fontsize=10)
    fig.tight_layout()
    return fig


def label_efficiency_figure(rows: Sequence[dict], metric: str = "auroc"):
    """Per dataset: metric vs label fraction per method, mean ± std over students."""
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in rows}) or ["(no results yet)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = [r for r in rows if r["dataset"] == d]
        for method in sorted({r["method"] for r in sub}):
            fr = sorted({float(r["fraction"]) for r in sub if r["method"] == method})
            stats = [_mean_std(r.get(metric) for r in sub if r["method"] == method and float(r["fraction"]) == f)
                     for f in fr]
            ax.errorbar(np.array(fr) * 100, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o",
                        capsize=3, label=f"{method} (n={max((s[2] for s in stats), default=0)})")
        ax.set_xscale("log")
        ax.set_xlabel("% of training labels")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(d, fontsize=10)
        if sub and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def aggregate(results_root: str | os.PathLike = "results", out: str | os.PathLike | None = None,
              include_smoke: bool = False) -> dict:
    """Class-wide tables and plots from every student's metrics; returns the paths written."""
    import pandas as pd

    from ..utils import save_figure, write_text

    results_root = Path(results_root)
    if not results_root.is_dir():
        raise ConfigError(f"{results_root} is not a folder; point --results-root at the course's results/.")
    out = Path(out) if out else results_root.resolve().parent / "reports"
    rows = collect_metrics(results_root, include_smoke)
    le = collect_label_efficiency(results_root, include_smoke)
    summary = summarise(rows)
    paths = {}
    cols = ["week", "dataset", "student", "file", "variant", "label_frac", *_METRIC_COLS, "smoke"]
    df = pd.DataFrame(rows, columns=cols)
    paths["metrics_csv"] = out / "class_metrics.csv"
    write_text(paths["metrics_csv"], df.to_csv(index=False))
    n_students = df.groupby("dataset")["student"].nunique().to_dict() if len(df) else {}
    note = "smoke/synthetic runs included" if include_smoke else "smoke and synthetic runs excluded"
    md = [f"# Class-wide results ({note})", "",
          f"Generated by `python -m medssl.course aggregate` from {len(rows)} metrics files of "
          "students per dataset: "
          + (", ".join(f"{d}: {n}" for d, n in sorted(n_students.items())) or "none yet") + ".",
          "Values are test-set mean ± std over students (std = 0 with one student).", "",
          summary_markdown(summary) if summary else "_No metrics found yet._", ""]
    if le:
        le_sum = []
        for (d, meth, fr), grp in _group(le, ("dataset", "method", "fraction")).items():
            mean, std, n = _mean_std(r.get("auroc") for r in grp)
            le_sum.append(f"| {d} | {meth} | {float(fr) * 100:g}% | {_fmt_ms(mean, std)} | {n} |")
        md += ["## Label efficiency (Week 5, test AUROC)", "", "| dataset | method | labels | AUROC | n |",
               "|---|---|---|---|---|", *le_sum, ""]
    ts_rows = AD.collect_temperature_scaling(results_root, include_smoke)
    op_rows = AD.collect_operating_points(results_root, include_smoke)
    rob_rows = AD.collect_robustness(results_root, include_smoke)
    md.append(AD.markdown(ts_rows, op_rows, rob_rows))
    paths["summary_md"] = out / "class_summary.md"
    write_text(paths["summary_md"], "\n".join(md))
    paths["comparison_png"] = out / "class_breast_vs_pneumonia.png"
    save_figure(comparison_figure(summary), paths["comparison_png"])
    paths["label_efficiency_png"] = out / "class_label_efficiency.png"
    save_figure(label_efficiency_figure(le), paths["label_efficiency_png"])
    paths["label_efficiency_csv"] = out / "class_label_efficiency.csv"
    write_text(paths["label_efficiency_csv"], pd.DataFrame(le).to_csv(index=False))
    paths["calibration_png"] = out / "class_calibration.png"
    save_figure(comparison_figure(summary, weeks=(1, 3, 6), metric="ece",
                                  title="Breast vs Pneumonia: test ECE (lower is better)"), paths["calibration_png"])
    for key, figure, data in (("operating_points", AD.operating_points_figure, op_rows),
                              ("robustness", AD.robustness_figure, rob_rows)):
        paths[f"{key}_png"] = out / f"class_{key}.png"
        save_figure(figure(data), paths[f"{key}_png"])
        paths[f"{key}_csv"] = out / f"class_{key}.csv"
        write_text(paths[f"{key}_csv"], pd.DataFrame(data).to_csv(index=False))
    paths["temperature_scaling_csv"] = out / "class_temperature_scaling.csv"
    write_text(paths["temperature_scaling_csv"], pd.DataFrame(ts_rows).to_csv(index=False))
    return {"paths": paths, "n_rows": len(rows), "n_label_efficiency": len(le), "summary": summary,
            "n_temperature_scaling": len(ts_rows), "n_operating_points": len(op_rows), "n_robustness": len(rob_rows)}


def _group(rows, keys):
    out: dict[tuple, list] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(str(x) for x in kv[0])))
