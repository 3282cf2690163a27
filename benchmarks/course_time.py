"""Wall time of the core course: Weeks 1-8 for one dataset at default settings, end to end, as a TA runs them.

    python benchmarks/course_time.py --dataset pneumoniamnist --out benchmarks/results/course_<device>.json

Each week's notebook is executed with papermill through ``medssl.course.runner.batch`` (the same code as
``python -m medssl.course batch``), in dependency order, into a fresh temporary results folder (or
``--results-root``), and each folder is checked against the manifest. The time per notebook includes kernel
start-up, data loading, training, plots and the check. ``-p KEY VALUE`` passes a parameter to every week that
declares it (e.g. ``-p EPOCHS 3``); anything passed is recorded in the JSON next to the times.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from medssl.course import runner
from medssl.utils import write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--weeks", default="1-8")
    p.add_argument("--smoke", action="store_true", help="smoke mode (tiny epochs and subsets), as CI runs it")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                   help="a notebook parameter for every week that declares it")
    p.add_argument("--results-root", default=None, help="keep the results here (default: a temporary folder)")
    p.add_argument("--out", default=None, help="JSON file for the timings")
    a = p.parse_args(argv)
    weeks = runner.parse_weeks(a.weeks)
    params = {k: runner.parse_param(v) for k, v in a.param}
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"cpu ({torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.results_root) if a.results_root else Path(tmp) / "results"
        t0 = time.perf_counter()
        outcomes = runner.batch(weeks, [a.dataset], "timing", results_root=root, smoke=a.smoke, params=params)
        total = time.perf_counter() - t0
    print(runner.summary_table(outcomes))
    print(f"Weeks {a.weeks}, {a.dataset}, {'smoke' if a.smoke else 'default settings'}, on {device}: "
          f"{total:.0f} s wall ({total / 60:.1f} min)")
    result = {"dataset": a.dataset, "weeks": weeks, "smoke": a.smoke, "params": params, "device": device,
              "torch": torch.__version__, "python": platform.python_version(), "total_wall_s": total,
              "all_ok": all(o.status == "ok" for o in outcomes),
              "per_week": [{"week": o.week, "status": o.status, "seconds": o.seconds, "error": o.error}
                           for o in outcomes]}
    if a.out:
        write_json(a.out, result)
        print(f"wrote {a.out}")
    else:
        print(json.dumps(result, indent=1))
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
