"""benchmarks/gpu_check.sh: the GPU acceptance command, exercised on CPU.

The slow test runs both tiers with ``--smoke`` (CPU, 1 epoch, a few steps, one seed) into a temporary folder and
checks the summary and every step's JSON. It uses the real data files when they are in the data root and the
synthetic stand-in otherwise, and then the summary must say so. The fast tests cover the command line and the
refusal to run the GPU tiers on a machine without CUDA.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
CORE = ["cuda_tests", "throughput", "course", "parity"]
RESEARCH = ["ssl_pretrain", "label_grid", "seed000", "recipe"]


def gpu_check(*args: str, timeout: float = 3000) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, TQDM_DISABLE="1", MPLBACKEND="Agg")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_usage_errors(tmp_path):
    assert gpu_check().returncode == 2
    assert gpu_check("--nope", str(tmp_path / "x")).returncode == 2
    assert gpu_check("--smoke", "--time-scale", "fast", str(tmp_path / "y")).returncode == 2
    full = tmp_path / "full"
    full.mkdir()
    (full / "old.json").write_text("{}")
    res = gpu_check("--smoke", str(full))
    assert res.returncode == 2 and "not empty" in res.stderr
    assert gpu_check("--help").returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine this would start the real check")
def test_gpu_tier_refuses_to_run_without_cuda(tmp_path):
    res = gpu_check(str(tmp_path / "out"), timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not summary["all_ok"] and not summary["results"]
    assert any("no CUDA device" in w for w in summary["warnings"])
    assert [s["name"] for s in summary["steps"]] == ["env"]  # nothing else was started


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "out"
    res = gpu_check("--smoke", "--all", str(out))
    return out, res


@pytest.mark.slow
def test_smoke_run_lists_every_step_ok(smoke_run):
    out, res = smoke_run
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all_ok"] and summary["smoke"] and not summary["results"]
    assert [s["name"] for s in summary["steps"]] == ["env", *CORE, *RESEARCH]
    for step in summary["steps"]:
        assert step["status"] == "ok", step
        if step["name"] != "env":
            assert step["wall_s"] > 0 and 0 < step["timeout_s"] <= 1800
            assert (out / step["json"]).is_file() and (out / step["log"]).is_file()
    assert re.fullmatch(r"[0-9a-f]{40}", summary["git_commit"])
    assert summary["torch"] == torch.__version__ and summary["device_name"]
    md = (out / "summary.md").read_text()
    assert "SMOKE" in md and "NOT results" in md
    # smoke pretrains and runs the grid on the synthetic set always; the other steps only without the real file
    synthetic = {"ssl_pretrain", "label_grid"}
    env = json.loads((out / "env.json").read_text())
    if env["data_on_disk"]["pneumoniamnist"]:
        assert env["dataset"] == "pneumoniamnist"
    else:
        assert env["dataset"] == "synthetic"
        synthetic |= {"throughput", "course", "parity", "recipe"}
    assert synthetic <= set(summary["synthetic_steps"])
    assert any("SYNTHETIC" in w for w in summary["warnings"]) and "SYNTHETIC" in md


@pytest.mark.slow
def test_smoke_core_outputs(smoke_run):
    out, _ = smoke_run
    tests = json.loads((out / "cuda_tests.json").read_text())
    assert tests["failures"] == tests["errors"] == 0
    tp = json.loads((out / "throughput.json").read_text())
    got = {(r["task"], r["pipeline"]): r["images_per_s"] for r in tp["rows"]}
    assert set(got) == {(t, p) for t in ("supervised", "simclr") for p in ("seed", "library")}
    assert all(v > 0 for v in got.values())  # guard; the summary must carry these very numbers (below)
    head = {s["name"]: s["headline"] for s in json.loads((out / "summary.json").read_text())["steps"]}
    assert head["throughput"]["supervised"]["seed_img_s"] == round(got[("supervised", "seed")], 4)
    assert head["throughput"]["simclr"]["seed_img_s"] == round(got[("simclr", "seed")], 4)
    course = json.loads((out / "course_time.json").read_text())
    assert head["course"]["seconds"] == {str(w["week"]): round(w["seconds"], 4) for w in course["per_week"]}
    assert course["smoke"] and course["all_ok"]
    assert {w["week"]: w["status"] for w in course["per_week"]} == {w: "ok" for w in (1, 2)}  # smoke: Weeks 1-2
    parity = json.loads((out / "accuracy_parity.json").read_text())
    assert parity["status"] == "done" and sorted(r["pipeline"] for r in parity["runs"]) == ["library", "seed"]
    assert all(0 <= r["acc"] <= 1 and 0 <= r["auroc"] <= 1 for r in parity["runs"])


@pytest.mark.slow
def test_smoke_research_outputs(smoke_run):
    out, _ = smoke_run
    r = out / "research"
    ssl = json.loads((r / "ssl_pretrain" / "ssl_config.json").read_text())
    assert ssl["status"] == "done" and ssl["epochs_run"] == 1 and ssl["config"]["backbone"] == "smallcnn"
    assert (r / "ssl_pretrain" / "ssl_encoder.pt").is_file()
    grid = json.loads((r / "label_grid" / "grid_config.json").read_text())
    assert grid["status"] == "done" and grid["n_runs"] == 6  # 3 methods x 2 fractions x 1 seed
    rows = list(csv.DictReader((r / "label_grid" / "label_grid.csv").open()))
    assert {row["method"] for row in rows} == {"probe", "finetune", "scratch"}
    seed000 = json.loads((r / "seed000" / "seed000_results.json").read_text())
    assert seed000["smoke"] and seed000["status"] == "done"
    status = {row["key"]: row["status"] for row in seed000["rows"]}
    assert status["scratch"] == status["ssl"] == "ok"
    assert status["imagenet"] == "ok" or status["imagenet"].startswith("skipped")
    recipe = json.loads((r / "recipe" / "recipe_results.json").read_text())
    assert recipe["smoke"] and recipe["status"] == "done" and [row["seed"] for row in recipe["rows"]] == [42]
    head = {s["name"]: s["headline"] for s in json.loads((out / "summary.json").read_text())["steps"]}
    assert head["ssl_pretrain"]["final_loss"] == round(ssl["final_loss"], 4)
    assert head["ssl_pretrain"]["chance_loss"] == round(ssl["chance_loss"], 4)
    assert head["label_grid"]["auroc_probe_10pct"][0] == round(
        float(next(row for row in rows if row["method"] == "probe" and float(row["pct"]) == 10)["auroc_mean"]), 4)
    assert head["course"]["weeks"] == {str(w): "ok" for w in (1, 2)}
    assert "auroc_probe_10pct" in head["label_grid"]
