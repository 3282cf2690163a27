"""Weeks 9-10, group work: the draft skeleton, the list of missing pieces, the reproducibility checklist."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import ConfigError
from . import manifest as M
from .check import check_tree, find_submissions, parse_location
from .environment import environment
from .readme import Readme, markdown_table


def _metric_files(results_root: Path, include_smoke: bool) -> list[tuple[Path, dict]]:
    """(path, data) of every metrics-like JSON (metrics files and ssl_config.json) in the submissions."""
    out = []
    for folder in find_submissions(results_root):
        week = parse_location(folder)[0]
        for path in sorted(folder.glob("*.json")):
            try:
                spec = M.file_spec(week, path.name)
            except ConfigError:
                continue
            if spec.keys not in (M.METRIC_RULES, M.SSL_CONFIG_RULES):
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            smoke = bool((data.get("course") or {}).get("smoke")) or bool((data.get("data") or {}).get("synthetic"))
            if smoke and not include_smoke:
                continue
            out.append((path, data))
    return out


def missing_pieces(results_root: str | os.PathLike, datasets: Sequence[str] = M.DATASETS,
                   include_smoke: bool = False) -> str:
    """A checklist of what the write-up still lacks: weeks without results, failing folders, text left to write."""
    results_root = Path(results_root)
    have: dict[tuple[int, str], list[str]] = {}
    for folder in find_submissions(results_root) if results_root.is_dir() else []:
        w, d, s = parse_location(folder)
        have.setdefault((w, d), []).append(s)
    lines = ["# Missing pieces (generated)", "",
             "Regenerate with the Week 9 notebook. Tick items off by making them true, not by editing this file.", "",
             "## Results per week and dataset", "", "| week | " + " | ".join(datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    todo = []
    for w in range(1, 9):
        cells = []
        for d in datasets:
            names = have.get((w, d), [])
            cells.append(", ".join(sorted(names)) if names else "**missing**")
            if not names:
                todo.append(f"Week {w} has no results for {d}.")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    reports = [r for r in (check_tree(results_root) if results_root.is_dir() else []) if r.week <= 8]
    for r in reports:
        rel = "/".join(Path(r.folder).parts[-3:])
        if not r.passed():
            todo.append(f"`{rel}` fails the checker ({len(r.of('missing', 'malformed'))} problem(s)).")
        for p in r.of("to add"):
            todo.append(f"`{rel}`: add {p.file}.")
        n_write = sum(int(p.message.split()[0]) for p in r.of("to write") if p.message.split()[0].isdigit())
        if n_write:
            todo.append(f"`{rel}`: {n_write} interpretation place(s) still to write.")
    smoke = [p for p, d in _metric_files(results_root, True) if (d.get("course") or {}).get("smoke")]
    if smoke and not include_smoke:
        todo.append(f"{len(smoke)} metrics file(s) come from smoke runs; re-run those weeks with SMOKE = False.")
    lines += ["", "## To do", ""] + ([f"- [ ] {t}" for t in todo] or ["- [x] nothing missing in results/"])
    lines += ["- [ ] Export `reports/final_writeup/draft_v1.md` as `draft_v1.pdf`.", ""]
    return "\n".join(lines)


def draft_skeleton(summary_md: str, label_efficiency_md: str | None, figures: Mapping[str, str],
                   n_students: Mapping[str, int]) -> str:
    """The paper-style skeleton of the write-up, with the class-wide tables and figures already in place."""
    who = ", ".join(f"{d}: {n} student(s)" for d, n in sorted(n_students.items())) or "no results yet"
    r = Readme("Self-supervised pretraining on small medical images: label efficiency and calibration "
               "on BreastMNIST and PneumoniaMNIST (draft v1)")
    r.p(f"*Generated skeleton ({who}). Tables and figures are filled from `results/`; every ✍️ place is for you. "
        "Aim for 4-6 pages.*")
    r.h("1. Introduction")
    r.student("Motivation: labels are expensive in medical imaging; can contrastive SSL save labels? Why care about "
              "calibration and operating points, and why compare an ultrasound and an X-ray dataset?")
    r.h("2. Methods")
    r.bullets(["Data: MedMNIST v2 BreastMNIST (546/78/156, positive = malignant) and PneumoniaMNIST "
               "(4708/524/624, positive = pneumonia), 28×28 greyscale.",
               "Models: smallcnn and ResNet-18 (3×3 stem for 28 px), supervised baselines (Weeks 1-3).",
               "SSL: SimCLR-lite (NT-Xent) on the unlabelled training split (Week 4); linear probe and fine-tuning "
               "with 5% and 10% of the labels (Weeks 5-6).",
               "Evaluation: accuracy, AUROC, ECE (15 bins, on P(positive)), thresholds chosen on validation "
               "(Week 7), mild perturbations (Week 8)."])
    r.student("Anything your group did differently (epochs, augmentations, seeds); say whether numbers are single "
              "runs or means over seeds.")
    r.h("3. Results")
    r.p("Test metrics, mean ± std over students:")
    r.table(summary_md)
    if label_efficiency_md:
        r.table(label_efficiency_md)
    for name, caption in figures.items():
        r.figure(f"../../{name}", caption)
    r.student("Describe the three or four findings the tables support, with numbers.")
    r.h("4. Discussion")
    r.student("When does SSL improve label efficiency? How does it affect calibration and thresholds? How do the "
              "effects differ between Breast and Pneumonia? Limits: dataset size, 28 px, single seeds.")
    r.h("5. Ethics and limitations")
    r.student("Summarise the Week 8 notes: benchmark vs clinical reality, which errors are more costly, deployment.")
    r.h("References")
    r.student("The references collected in reports/references/.")
    return r.render()


def reproducibility_checklist(root: str | os.PathLike, results_root: str | os.PathLike,
                              include_smoke: bool = False) -> str:
    """``results/week10/reproducibility_checklist.md``: what was actually run, with which settings, and checks."""
    from ..registry import get_spec
    root, results_root = Path(root), Path(results_root)
    files = _metric_files(results_root, include_smoke)
    rows, seeds_ok, md5_ok, md5_seen, walls, devices, torch_v = [], 0, 0, set(), {}, set(), set()
    for path, data in files:
        week, dataset, student = parse_location(path.parent)
        cfg = data.get("config") or data.get("train_config") or {}
        seed = data.get("seed", cfg.get("seed"))
        seeds_ok += seed is not None and bool(cfg)
        md5 = (data.get("data") or {}).get("md5")
        if md5:
            md5_seen.add((dataset, md5))
            try:
                md5_ok += md5 == get_spec(dataset).md5.get(int(cfg.get("size", 28)))
            except Exception:  # unknown dataset key in a student folder
                pass
        wall = data.get("wall_time_s") or data.get("seconds")
        if isinstance(wall, (int, float)):
            walls[(dataset, week)] = walls.get((dataset, week), 0.0) + float(wall)
        if data.get("device"):
            devices.add(str(data["device"]))
        if (data.get("versions") or {}).get("torch"):
            torch_v.add(data["versions"]["torch"])
        rows.append({"week": week, "dataset": dataset, "student": student, "file": path.name,
                     "model": (data.get("model") or {}).get("arch") if isinstance(data.get("model"), dict)
                     else cfg.get("model", cfg.get("backbone")),
                     "epochs": cfg.get("epochs"), "seed": seed,
                     "label_frac": data.get("label_frac", data.get("fraction")), "device": data.get("device"),
                     "wall s": wall, "smoke": (data.get("course") or {}).get("smoke", False)})
    reports = [r for r in (check_tree(results_root) if results_root.is_dir() else []) if r.week <= 8]
    n_pass = sum(r.passed() for r in reports)
    readme = root / "README.md"
    readme_ok = readme.exists() and "medssl.course run" in readme.read_text(errors="ignore")
    folders = sorted({(parse_location(p.parent)) for p, _ in files})
    env = environment()

    def box(ok: bool) -> str:
        return "[x]" if ok else "[ ]"

    n = len(files)
    lines = ["# Reproducibility checklist (generated)", "",
             f"Generated by `notebooks/Week10_Reproducibility.ipynb` from {n} result file(s) in "
             f"{len(reports)} results folder(s){' (smoke runs included)' if include_smoke else ''}. "
             "Every tick below is computed from the files, not typed in.", "",
             "## Checks", "",
             f"- {box(bool(reports) and n_pass == len(reports))} Every results folder passes "
             f"`python -m medssl.course check results` ({n_pass}/{len(reports)}).",
             f"- {box(n > 0 and seeds_ok == n)} Every result file records its seed and full configuration "
             f"({seeds_ok}/{n}).",
             f"- {box(bool(md5_seen) and md5_ok == len([1 for _, d in files if (d.get('data') or {}).get('md5')]))} "
             f"Data files match medmnist's MD5 ({', '.join(sorted(f'{d}: {m[:8]}…' for d, m in md5_seen)) or 'none'}).",
             f"- {box(readme_ok)} The top-level README explains how to run a week with one command "
             "(`python -m medssl.course run ...`).",
             f"- {box(len(torch_v) <= 1)} One torch version across results ({', '.join(sorted(torch_v)) or '?'}); "
             f"devices used: {', '.join(sorted(devices)) or '?'}.",
             "- [ ] Numbers are labelled as single runs or mean ± std over seeds in the write-up (check by hand).",
             "", "## Compute used (sum of recorded wall times, seconds)", ""]
    by_ds: dict[str, float] = {}
    for (d, _w), t in sorted(walls.items()):
        by_ds[d] = by_ds.get(d, 0.0) + t
    lines.append(markdown_table([{"dataset": d, **{f"week {w}": walls.get((d, w)) for w in range(1, 9)},
                                  "total": t} for d, t in by_ds.items()], digits=0) if by_ds else "_nothing yet_")
    lines += ["", "A Colab GPU run of the key plots should fit in one hour; totals above are from the devices listed.",
              "", "## How to reproduce every result", "", "```bash", "pip install -r requirements.txt",
              "export MEDMNIST_ROOT=/path/to/medmnist   # optional: folder with the .npz files"]
    for w, d, s in folders:
        lines.append(f"python -m medssl.course run --week {w} --dataset {d} --student {s}")
    lines += ["python -m medssl.course check results", "python -m medssl.course aggregate", "```", "",
              "## What was run", "", markdown_table(rows, digits=1) if rows else "_nothing yet_", "",
              "## This environment", "", markdown_table([{"item": k, "value": v} for k, v in env.items()]), ""]
    return "\n".join(lines)
