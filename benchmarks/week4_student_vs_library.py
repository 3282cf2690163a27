"""Week 4 trained by the student-written code path vs the library path: probe AUROC at 10 % labels, 3 seeds each.

Both paths are the Week 4 notebook itself, executed at its default settings (not smoke mode) on real data:

* **student path**: the instructor edition (``notebooks/solutions/``), whose filled-in exercises pass their
  self-checks, so its two views, projection head, NT-Xent loss and training step train the encoder;
* **library path**: the student edition (``notebooks/``), whose exercises are stubs (every check TODO), so the
  library's pieces train it.

Each encoder is then read by the linear probe (``medssl.probe``) on a stratified 10 % of the training labels,
with the pretraining seed as the label-subset seed, so both paths see the same three subsets. It checks that
every self-check of the student path printed PASS (every one of the library path TODO) and that ``ssl_config.json``
names the pieces used, then prints mean ± std of the test AUROC per path and writes ``summary.json``.

    MEDMNIST_ROOT=/path/to/medmnist python benchmarks/week4_student_vs_library.py --out runs/week4_paths

One to four hours on a 2-core CPU, depending on what else runs (six 30-epoch ResNet-18 pretrainings on
BreastMNIST, 10-40 minutes each); minutes on a GPU. ``--resume`` keeps the runs that finished (probe included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from medssl.course import runner
from medssl.probe import DownstreamConfig
from medssl.probe import run as probe_run

REPO = Path(__file__).resolve().parents[1]
PATHS = {"student": REPO / "notebooks" / "solutions", "library": REPO / "notebooks"}


def one(path: str, seed: int, dataset: str, out: Path, resume: bool = False) -> dict:
    student = f"{path}_s{seed}"
    probe_dir = out / "probe" / student
    row_file = probe_dir / "row.json"
    if resume and row_file.exists():
        print(f"reusing {student}", flush=True)
        return json.loads(row_file.read_text())
    t0 = time.perf_counter()
    o = runner.run_week(4, dataset, student, out / "results", smoke=False, params={"SEED": seed},
                        notebooks_dir=PATHS[path], overwrite=True)
    minutes = (time.perf_counter() - t0) / 60
    checks = json.loads((o.out_dir / "self_checks.json").read_text())["checks"]
    want = "PASS" if path == "student" else "TODO"
    assert {c["status"] for c in checks.values()} == {want}, checks
    ssl = json.loads((o.out_dir / "ssl_config.json").read_text())
    custom = {k for k, v in ssl["components"].items() if v != "library"}
    assert custom == ({"views", "head", "loss", "step"} if path == "student" else set()), ssl["components"]
    probe_run(DownstreamConfig(dataset=dataset, encoder=str(o.out_dir / "ssl_encoder.pt"), fractions=[0.1],
                               seed=seed, progress=False), probe_dir, overwrite=True)
    probe = json.loads((probe_dir / "probe_metrics_10pct.json").read_text())
    row = {"path": path, "seed": seed, "probe_auroc_10pct": probe["auroc"], "final_ssl_loss": ssl["final_loss"],
           "epochs": ssl["epochs_run"], "pretrain_minutes": ssl["wall_time_s"] / 60, "notebook_minutes": minutes,
           "checks": sorted(checks), "components": ssl["components"]}
    row_file.write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps({k: row[k] for k in ("path", "seed", "probe_auroc_10pct", "final_ssl_loss",
                                          "notebook_minutes")}), flush=True)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for the runs, probes and summary.json")
    p.add_argument("--dataset", default="breastmnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--resume", action="store_true", help="reuse the runs that finished in --out")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    rows = [one(path, seed, args.dataset, out, args.resume) for seed in args.seeds for path in PATHS]
    summary = {}
    for path in PATHS:
        aurocs = [r["probe_auroc_10pct"] for r in rows if r["path"] == path]
        summary[path] = {"mean": statistics.mean(aurocs), "std": statistics.stdev(aurocs) if len(aurocs) > 1 else 0.0,
                         "aurocs": aurocs}
        print(f"{path:>8}: probe AUROC at 10% labels {summary[path]['mean']:.4f} ± {summary[path]['std']:.4f} "
              f"(seeds {args.seeds}: {', '.join(f'{a:.4f}' for a in aurocs)})")
    (out / "summary.json").write_text(json.dumps({"dataset": args.dataset, "seeds": args.seeds, "rows": rows,
                                                  "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
