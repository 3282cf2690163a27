"""The whole course, end to end: papermill runs Weeks 1-10 on BreastMNIST in smoke mode.

Every results folder must pass the checker, and the key metrics (read back from
the JSON files the notebooks wrote, never from printed text) must stay within
``tolerance`` of the values recorded in ``tests/data/course_smoke_reference.json``.
Smoke runs train for one epoch on a few hundred images, so these numbers are
regression anchors, not results. CPUs with other instruction sets round
differently, hence the tolerance.

Re-record after an intended change (takes a few minutes)::

    MEDMNIST_ROOT=/path/to/medmnist python tests/test_course_smoke.py --record
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import pytest

from medssl import course

REFERENCE = Path(__file__).parent / "data" / "course_smoke_reference.json"
DATASET = "breastmnist"
# (week, file, key): the numbers compared with the recorded smoke run
KEYS = [
    (1, "test_metrics.json", "acc"), (1, "test_metrics.json", "auroc"), (1, "test_metrics.json", "ece"),
    (2, "metrics_smallcnn.json", "auroc"), (2, "metrics_resnet18_head.json", "auroc"),
    (3, "metrics_resnet18_all_basic.json", "auroc"), (3, "metrics_resnet18_all_augA.json", "auroc"),
    (4, "ssl_config.json", "final_loss"),
    (5, "probe_metrics_5pct.json", "auroc"), (5, "probe_metrics_10pct.json", "auroc"),
    (6, "metrics_ssl_probe.json", "auroc"), (6, "metrics_ssl_finetune.json", "auroc"),
    (6, "metrics_ssl_finetune.json", "ece"),
]


def run_course(root: Path) -> list[course.RunOutcome]:
    # every extra task of both teams runs on this dataset too, so all task sections are exercised
    return course.batch(range(1, 11), [DATASET], "smoke", root, smoke=True, params={"EXTRA_TASKS": "all"},
                        progress=False)


def read_values(root: Path) -> dict[str, float]:
    out = {}
    for week, name, key in KEYS:
        data = json.loads((root / f"week{week}" / DATASET / "smoke" / name).read_text())
        out[f"week{week}/{name}:{key}"] = data[key]
    return out


def _real_data() -> bool:
    """Skip only when the file is absent; a corrupt or unreadable one raises the library's error (a failure)."""
    from datahelpers import real_file_available

    return real_file_available(DATASET)


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _real_data(), reason=f"{DATASET}.npz not in the data root; set MEDMNIST_ROOT "
                                                          "to run the course smoke test on real data")]


@pytest.fixture(scope="module")
def smoke_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course") / "results"
    return root, run_course(root)


def test_every_week_runs(smoke_course):
    root, outcomes = smoke_course
    assert [o.week for o in outcomes] == list(range(1, 11))
    assert all(o.status == "ok" for o in outcomes), course.summary_table(outcomes)
    for o in outcomes:
        assert o.notebook.exists(), f"executed copy of week {o.week} not kept"


def test_every_folder_passes_the_checker(smoke_course):
    root, _ = smoke_course
    reports = course.check_tree(root)
    assert sorted(r.week for r in reports) == list(range(1, 11))
    for rep in reports:
        assert rep.passed(), rep.format()
    tasks = {r.week: r.tasks for r in reports}
    assert tasks[5] == ["B1", "B2", "B4"] and tasks[6] == ["B3", "P1"]
    assert tasks[7] == ["B5", "P2", "P3", "P4", "P5", "P6"]
    assert tasks[8] == ["B8-1", "B8-2", "B8-3", "P8-1", "P8-2", "P8-3"]


def test_key_metrics_match_the_recorded_smoke_run(smoke_course):
    root, _ = smoke_course
    ref = json.loads(REFERENCE.read_text())
    got = read_values(root)
    assert set(got) == set(ref["values"]), "KEYS changed: re-record the reference"
    off = {k: (got[k], v) for k, v in ref["values"].items()
           if not (math.isfinite(got[k]) and abs(got[k] - v) <= ref["tolerance"].get(k.split(":")[-1], 0.1))}
    assert not off, f"smoke metrics moved beyond tolerance {ref['tolerance']}: (now, recorded) = {off}"


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit(__doc__)
    import platform

    import torch

    root = Path(tempfile.mkdtemp(prefix="medssl-record-")) / "results"
    outcomes = run_course(root)
    print(course.summary_table(outcomes))
    if not all(o.status == "ok" for o in outcomes):
        sys.exit("not recorded: some weeks failed")
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({
        "note": "smoke-mode values (1 epoch, <= 200 training images): regression anchors, not results",
        "dataset": DATASET, "tolerance": {"acc": 0.1, "auroc": 0.1, "ece": 0.1, "final_loss": 0.25},
        "recorded_with": {"torch": torch.__version__, "python": platform.python_version(),
                          "machine": platform.machine()},
        "values": read_values(root)}, indent=2) + "\n")
    print(f"recorded {REFERENCE}")
