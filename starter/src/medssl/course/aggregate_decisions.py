"""The class view beyond accuracy: temperature scaling (Week 6, P1), operating points (Week 7) and robustness
(Week 8), gathered from every student's folder, summarised per dataset and drawn for Week 9.

Each collector reads one machine-readable file the week writes (``P1_temp_scaling_ece.json``,
``operating_points.csv``, ``*8-1_robustness_table.csv``). A folder from a smoke run or synthetic data is left out
unless asked for; a file that does not parse is the checker's business and is skipped here.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .check import find_submissions, parse_location

ROBUSTNESS_FILES = ("P8-1_robustness_table.csv", "B8-1_robustness_table.csv")
POINT_ORDER = ("default", "youden", "max_f1", "target_tpr", "target_fpr")
SEVERITY_ORDER = {"none": 0, "mild": 1, "moderate": 2, "severe": 3}


def _is_smoke(data) -> bool:
    return isinstance(data, dict) and bool((data.get("course") or {}).get("smoke")
                                           or (data.get("data") or {}).get("synthetic"))


def folder_is_smoke(folder: Path) -> bool:
    """True when any JSON in ``folder`` says it came from a smoke run or synthetic data."""
    for path in folder.glob("*.json"):
        try:
            if _is_smoke(json.loads(path.read_text())):
                return True
        except (OSError, ValueError):
            continue
    return False


def _folders(results_root, week: int, include_smoke: bool):
    for folder in find_submissions(results_root):
        w, dataset, student = parse_location(folder)
        if w == week and (include_smoke or not folder_is_smoke(folder)):
            yield folder, dataset, student


def _read_csv(path: Path) -> list[dict] | None:
    import pandas as pd

    try:
        return pd.read_csv(path).to_dict("records")
    except Exception:  # a malformed table is reported by the checker, not here
        return None


def collect_temperature_scaling(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """One row per Week 6 ``P1_temp_scaling_ece.json``: the temperature fitted on validation and test ECE/AUROC/NLL
    before and after it."""
    rows = []
    for folder, dataset, student in _folders(results_root, 6, include_smoke):
        path = folder / "P1_temp_scaling_ece.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.append({"dataset": dataset, "student": student,
                     **{k: data.get(k) for k in ("temperature", "ece_before", "ece_after", "auroc_before",
                                                 "auroc_after", "nll_before", "nll_after", "fitted_on")}})
    return rows


def collect_operating_points(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """One row per operating point in every Week 7 ``operating_points.csv`` (threshold chosen on validation,
    sensitivity and specificity measured on test)."""
    rows = []
    for folder, dataset, student in _folders(results_root, 7, include_smoke):
        for r in _read_csv(folder / "operating_points.csv") or []:
            if "point" not in r or "test_sensitivity" not in r:
                continue
            rows.append({"dataset": dataset, "student": student, "point": r["point"],
                         "threshold": r.get("threshold"), "val_tpr": r.get("val_tpr"), "val_fpr": r.get("val_fpr"),
                         **{k: r.get(f"test_{k}") for k in ("sensitivity", "specificity", "ppv", "npv")}})
    return rows


def collect_robustness(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """One row per (perturbation, severity) of every Week 8 robustness table (P8-1 or B8-1)."""
    rows = []
    for folder, dataset, student in _folders(results_root, 8, include_smoke):
        for name in ROBUSTNESS_FILES:
            for r in _read_csv(folder / name) or []:
                if "perturbation" not in r or "auroc" not in r:
                    continue
                rows.append({"dataset": dataset, "student": student, "task": name.split("_")[0],
                             "perturbation": r["perturbation"], "severity": r.get("severity", ""),
                             "level": r.get("level"),
                             **{k: r.get(k) for k in ("acc", "auroc", "ece", "d_acc", "d_auroc", "d_ece")}})
    return rows


def mean_std(values) -> tuple[float, float, int]:
    import numpy as np

    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def _ms(values, digits: int = 3) -> str:
    mean, std, n = mean_std(values)
    return "-" if n == 0 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _point_key(name: str):
    return (POINT_ORDER.index(name) if name in POINT_ORDER else len(POINT_ORDER), name)


def _severity_key(r: dict):
    return SEVERITY_ORDER.get(str(r["severity"]), 9), float(r["level"] or 0.0)


def markdown(ts_rows: Sequence[dict], op_rows: Sequence[dict], rob_rows: Sequence[dict]) -> str:
    """The three sections of ``class_summary.md`` after the metrics table (mean ± std over students, n)."""
    out = []
    if ts_rows:
        out += ["## Temperature scaling (Week 6, P1; T fitted on validation, ECE on test)", "",
                "| dataset | T | ECE before | ECE after | AUROC before | AUROC after | n |",
                "|---|---|---|---|---|---|---|"]
        for d in sorted({r["dataset"] for r in ts_rows}):
            g = [r for r in ts_rows if r["dataset"] == d]
            out.append(f"| {d} | {_ms((r['temperature'] for r in g), 2)} | {_ms(r['ece_before'] for r in g)} | "
                       f"{_ms(r['ece_after'] for r in g)} | {_ms(r['auroc_before'] for r in g)} | "
                       f"{_ms(r['auroc_after'] for r in g)} | {len(g)} |")
        out.append("")
    if op_rows:
        out += ["## Operating points (Week 7; thresholds chosen on validation, rates on test)", "",
                "| dataset | point | threshold | val TPR | val FPR | test sensitivity | test specificity | test PPV "
                "| n |",
                "|---|---|---|---|---|---|---|---|---|"]
        for d in sorted({r["dataset"] for r in op_rows}):
            for p in sorted({r["point"] for r in op_rows if r["dataset"] == d}, key=_point_key):
                g = [r for r in op_rows if r["dataset"] == d and r["point"] == p]
                out.append(f"| {d} | {p} | {_ms((r['threshold'] for r in g), 4)} | {_ms(r['val_tpr'] for r in g)} | "
                           f"{_ms(r['val_fpr'] for r in g)} | {_ms(r['sensitivity'] for r in g)} | "
                           f"{_ms(r['specificity'] for r in g)} | {_ms(r['ppv'] for r in g)} | {len(g)} |")
        out.append("")
    if rob_rows:
        out += ["## Robustness (Week 8; test images perturbed, model and threshold unchanged)", "",
                "| dataset | perturbation | severity | AUROC | Δ AUROC | ECE | Δ ECE | n |",
                "|---|---|---|---|---|---|---|---|"]
        for d in sorted({r["dataset"] for r in rob_rows}):
            sub = [r for r in rob_rows if r["dataset"] == d and r["perturbation"] != "clean"]
            for pert in sorted({r["perturbation"] for r in sub}):
                sev = sorted({(r["severity"], r["level"]) for r in sub if r["perturbation"] == pert},
                             key=lambda s: _severity_key({"severity": s[0], "level": s[1]}))
                for s, lvl in sev:
                    g = [r for r in sub if r["perturbation"] == pert and (r["severity"], r["level"]) == (s, lvl)]
                    out.append(f"| {d} | {pert} | {s} | {_ms(r['auroc'] for r in g)} | {_ms(r['d_auroc'] for r in g)} "
                               f"| {_ms(r['ece'] for r in g)} | {_ms(r['d_ece'] for r in g)} | {len(g)} |")
        out.append("")
    return "\n".join(out)


def operating_points_figure(op_rows: Sequence[dict]):
    """Per dataset: test sensitivity and specificity at each validation-chosen operating point (mean ± std)."""
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in op_rows}) or ["(no results yet)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = [r for r in op_rows if r["dataset"] == d]
        points = sorted({r["point"] for r in sub}, key=_point_key)
        x = np.arange(len(points))
        for i, (metric, label) in enumerate((("sensitivity", "test sensitivity"), ("specificity", "test specificity"))):
            stats = [mean_std(r[metric] for r in sub if r["point"] == p) for p in points]
            ax.bar(x + (i - 0.5) * 0.38, [s[0] for s in stats], 0.38, yerr=[s[1] for s in stats], capsize=3,
                   label=label)
        ax.set_xticks(x, points, rotation=25, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{d}: operating points (chosen on val)", fontsize=10)
        if sub:
            ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def robustness_figure(rob_rows: Sequence[dict], metric: str = "auroc"):
    """Per dataset: test ``metric`` against perturbation severity, one line per perturbation, the clean value
    dashed (mean over students, error bars = std)."""
    import matplotlib.pyplot as plt

    datasets = sorted({r["dataset"] for r in rob_rows}) or ["(no results yet)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = [r for r in rob_rows if r["dataset"] == d]
        clean = mean_std(r[metric] for r in sub if r["perturbation"] == "clean")
        if clean[2]:
            ax.axhline(clean[0], color="grey", ls="--", lw=1, label=f"clean ({clean[0]:.3f})")
        for pert in sorted({r["perturbation"] for r in sub} - {"clean"}):
            sev = sorted({r["severity"] for r in sub if r["perturbation"] == pert},
                         key=lambda s: SEVERITY_ORDER.get(str(s), 9))
            stats = [mean_std(r[metric] for r in sub if r["perturbation"] == pert and r["severity"] == s)
                     for s in sev]
            ax.errorbar([SEVERITY_ORDER.get(str(s), 9) for s in sev], [s[0] for s in stats],
                        yerr=[s[1] for s in stats], marker="o", capsize=3, label=pert)
        ax.set_xticks([1, 2, 3], ["mild", "moderate", "severe"])
        ax.set_ylabel(f"test {metric}")
        ax.set_title(f"{d}: robustness", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
