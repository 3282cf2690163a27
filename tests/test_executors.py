"""Runs through submitit: the executor settings, the record of a batch of jobs, and the label-efficiency grid as jobs.

The grid tests start real subprocesses through submitit's ``LocalExecutor``; the Slurm test lets submitit's own
``SlurmExecutor`` write its sbatch scripts and hand them to a stand-in ``sbatch`` (``tests/jobhelpers.py``).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from jobhelpers import FakeExecutor, fake_slurm, run_as_slurm_task, sbatch_scripts

from medssl import efficiency
from medssl.cli import run_cli
from medssl.efficiency import GridConfig, run_grid
from medssl.errors import ConfigError
from medssl.jobs import executors, jobbook
from medssl.jobs.executors import ClusterSettings, parse_minutes, settings_from_args
from medssl.jobs.jobbook import Job, JobBook, format_status, run_local
from medssl.utils import write_json

PACKAGE = Path(__file__).resolve().parents[1] / "starter" / "src" / "medssl"
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit is not installed (pip install submitit)")


# ------------------------------------------------------------------ settings
def test_time_limits_are_read_as_slurm_reads_them():
    assert parse_minutes(90) == parse_minutes("90") == parse_minutes("1:30:00") == 90
    assert parse_minutes("2-00:00:00") == 2880
    assert parse_minutes("0:00:30") == 1                        # seconds round up: never a 0-minute limit
    for bad in ("2:00", "1h", 0, -5, True):                     # Slurm reads "2:00" as 2 minutes: refused
        with pytest.raises(ConfigError, match="H:MM:SS"):
            parse_minutes(bad)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    executors.add_executor_args(p)
    return p


def test_cluster_toml_gives_the_defaults_and_the_command_line_wins(tmp_path):
    toml = tmp_path / "cluster.toml"
    toml.write_text('executor = "slurm"\npartition = "gpu"\ngpus = 1\nmem_gb = 16\ntime = "2:00:00"\n'
                    'setup = ["module load cuda/12.1", "source venv/bin/activate"]\n')
    s = settings_from_args(_parser().parse_args(["--cluster-config", str(toml), "--partition", "debug",
                                                 "--parallelism", "4"]))
    assert (s.executor, s.partition, s.gpus, s.mem_gb, s.time, s.parallelism) == ("slurm", "debug", 1, 16, 120, 4)
    assert s.setup == ["module load cuda/12.1", "source venv/bin/activate"]
    s = settings_from_args(_parser().parse_args(["--cluster-config", str(toml), "--executor", "local",
                                                 "--slurm-setup", "module load x"]))
    assert (s.executor, s.partition, s.setup) == ("local", "gpu", ["module load x"])
    default = settings_from_args(_parser().parse_args([]))
    assert (default.executor, default.time, default.jobs_at_once) == ("inline", 240, 256)
    assert ClusterSettings("local").validate().jobs_at_once == 2


@pytest.mark.parametrize("text, message", [
    ('partiton = "gpu"', r"unknown setting\(s\) partiton \(did you mean partition\?\)"),
    ('gpus = "one"', "gpus must be a whole number"),
    ("parallelism = 0", "parallelism must be a whole number >= 1"),
    ('executor = "slurn"', "executor must be one of inline, local, slurm"),
    ('time = "2:00"', "H:MM:SS"),
    ("mem_gb = -1", "mem_gb must be a positive number"),
    ('partition = "gpu; rm -rf"', "partition must be a Slurm name"),
    ("setup = [1, 2]", "setup must be a list of shell lines"),
    ("partition = [", "not valid TOML"),
])
def test_a_bad_cluster_toml_says_what_is_wrong(tmp_path, text, message):
    toml = tmp_path / "cluster.toml"
    toml.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        executors.load_cluster_config(toml)


def test_unknown_executor_and_missing_toml_are_errors_not_tracebacks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["--executor", "slurn"])
    assert exc.value.code == 2 and "invalid choice: 'slurn'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="cluster config .* not found"):
        settings_from_args(_parser().parse_args(["--cluster-config", str(tmp_path / "nope.toml")]))


def test_without_submitit_the_error_says_to_install_it_before_anything_is_written(monkeypatch, tmp_path, capsys):
    executors.check_executor(ClusterSettings())                  # inline needs no submitit
    monkeypatch.setitem(sys.modules, "submitit", None)           # as if not installed
    with pytest.raises(ConfigError, match="pip install submitit"):
        executors.check_executor(ClusterSettings("local"))
    out = tmp_path / "grid"
    rc = run_cli(efficiency.main, ["--dataset", "synthetic", "--root", str(tmp_path / "data"), "--backbone",
                                   "smallcnn", "--methods", "scratch", "--out", str(out), "--executor", "local"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "pip install submitit" in err and "Traceback" not in err
    assert not out.exists()


def test_the_library_imports_submitit_only_where_a_job_is_submitted():
    """A top-level ``import submitit`` anywhere would make the whole library need it."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "submitit" for n in names), f"{path.name} imports submitit at the top"


@needs_submitit
def test_slurm_without_slurm_commands_says_where_to_run(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))                    # no sbatch, no srun
    with pytest.raises(ConfigError, match="login node, or use --executor local"):
        executors.check_executor(ClusterSettings("slurm"))


# ------------------------------------------------------------------ the record and the local loop
def test_run_local_starts_a_job_after_its_prerequisites_and_at_most_n_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(jobbook, "POLL_S", 0)

    def ok():
        return "done"

    def boom():
        raise ConfigError("the loss became nan")

    jobs = [Job("a1", "a 1", ok), Job("b1", "b 1", ok), Job("c1", "c 1", boom),
            Job("a2", "a 2", ok, needs=("a1",)), Job("b2", "b 2", ok, needs=("b1",)),
            Job("c2", "c 2", ok, needs=("c1",)), Job("c3", "c 3", ok, needs=("c2",)),
            Job("k", "k", ok, state="checked"), Job("k2", "k 2", ok, needs=("k",))]
    book = JobBook.create(tmp_path, "test", "local", jobs)
    ex, lines = FakeExecutor(book.log_dir), []
    states = run_local(ex, book, jobs, parallelism=2, report=lines.append)
    assert states == {"a1": "done", "b1": "done", "c1": "failed", "a2": "done", "b2": "done", "c2": "skipped",
                      "c3": "skipped", "k": "checked", "k2": "done"}
    assert ex.max_live == 2                                       # three were ready at the start; two ran
    assert {"c2", "c3", "k"}.isdisjoint(ex.submitted)            # never started: a prerequisite failed / kept
    for later, first in (("a2", "a1"), ("b2", "b1")):
        assert ex.events.index(("submit", later)) > ex.events.index(("finish", first))
    rows = {r["key"]: r for r in JobBook.open(tmp_path).status()}   # read back from the files alone
    assert rows["c1"]["state"] == "failed" and rows["c1"]["detail"] == "the loss became nan"
    assert rows["c1"]["tail"][-1] == "ConfigError: the loss became nan"
    assert rows["c2"]["detail"] == "needs c 1, which failed" and rows["c3"]["detail"] == "needs c 2, which was skipped"
    text = format_status(list(rows.values()), book)
    assert "  | ConfigError: the loss became nan" in text and "5 done, 1 checked, 1 failed, 2 skipped" in text
    assert any(ln.startswith("[") and "c 1: failed: the loss became nan" in ln for ln in lines)


def test_status_tells_a_killed_job_and_a_batch_that_stopped(tmp_path):
    jobs = [Job("a", "a", None), Job("b", "b", None, needs=("a",)), Job("c", "c", None), Job("d", "d", None)]
    book = JobBook.create(tmp_path, "test", "local", jobs)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    book.record.update(submitter_pid=dead.pid)
    book.record["jobs"]["a"]["job_id"] = book.record["jobs"]["d"]["job_id"] = "123"
    book.save()
    host = socket.gethostname()
    write_json(book.state_file("a"), {"state": "running", "pid": dead.pid, "host": host})
    write_json(book.state_file("d"), {"state": "running", "pid": os.getpid(), "host": host})
    rows = {r["key"]: r for r in JobBook.open(tmp_path).status()}
    assert rows["a"]["state"] == "failed" and "ended without a result" in rows["a"]["detail"]
    assert rows["b"]["state"] == "skipped"
    assert rows["c"]["state"] == "pending" and rows["c"]["detail"].startswith("not submitted")
    assert rows["d"]["state"] == "running"
    with pytest.raises(ConfigError, match="no batch test-x"):
        JobBook.open(tmp_path, "test-x")
    with pytest.raises(ConfigError, match="no batch of jobs"):
        JobBook.open(tmp_path / "elsewhere")


# ------------------------------------------------------------------ the grid as jobs (real subprocesses)
def _grid_cfg(root: Path) -> GridConfig:
    return GridConfig("synthetic", backbone="smallcnn", methods=["scratch"], fractions=[0.05, 0.1], seeds=[0, 1],
                      epochs=1, min_steps=1, batch_size=32, progress=False, device="cpu", root=str(root))


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grids")
    root = tmp / "data"
    run_grid(_grid_cfg(root), tmp / "inline")                    # also writes the synthetic set the jobs read
    res = run_grid(_grid_cfg(root), tmp / "local", cluster=ClusterSettings("local", parallelism=2).validate())
    return {"tmp": tmp, "root": root, "inline": tmp / "inline", "local": tmp / "local", "res": res}


@needs_submitit
def test_a_grid_on_the_local_executor_gives_the_inline_csv_byte_for_byte(grids):
    inline, local = grids["inline"], grids["local"]
    assert (local / "label_grid.csv").read_bytes() == (inline / "label_grid.csv").read_bytes()
    for p in (inline / "indices").glob("*.json"):                # the same labelled images
        assert json.loads((local / "indices" / p.name).read_text())["indices"] == json.loads(p.read_text())["indices"]
    rows = JobBook.open(local).status()
    assert sorted(r["key"] for r in rows) == sorted(f"scratch_frac={f}_seed={s}" for f in (0.05, 0.1) for s in (0, 1))
    assert all(r["state"] == "done" for r in rows)
    pids = {JobBook.open(local).own_state(r["key"])["pid"] for r in rows}
    assert len(pids) == 4 and os.getpid() not in pids            # each cell ran in a process of its own
    record = json.loads((local / "grid_config.json").read_text())
    assert record["status"] == "done" and record["batch"] == JobBook.open(local).batch
    assert (local / "_logs" / record["batch"]).is_dir()         # logs beside the results


@needs_submitit
def test_a_resumed_grid_runs_only_the_missing_cell(grids):
    local = grids["local"]
    gone = local / "runs" / "scratch_frac=0.1_seed=1.json"
    gone.unlink()
    kept = {p: p.stat().st_mtime_ns for p in (local / "runs").glob("*.json")}
    res = run_grid(_grid_cfg(grids["root"]), local, resume=True,
                   cluster=ClusterSettings("local", parallelism=2).validate())
    assert res["record"]["n_new_runs"] == 1 and gone.exists()
    assert [r["key"] for r in JobBook.open(local).status()] == ["scratch_frac=0.1_seed=1"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept       # finished cells untouched
    assert (local / "label_grid.csv").read_bytes() == (grids["inline"] / "label_grid.csv").read_bytes()


@needs_submitit
def test_a_grid_on_slurm_is_one_array_and_a_summary_job_after_it(grids, tmp_path, monkeypatch, capsys):
    scripts = fake_slurm(monkeypatch, tmp_path)
    out = tmp_path / "grid"
    cluster = ClusterSettings("slurm", partition="cpu", cpus=2, time="0:30:00", parallelism=3).validate()
    res = run_grid(_grid_cfg(grids["root"]), out, cluster=cluster)
    assert res["summary"] is None and "watch: python -m medssl.course status" in capsys.readouterr().out
    (array_id, cells), (summary_id, summary) = sbatch_scripts(scripts).items()
    for script in (cells, summary):
        assert "#SBATCH --partition=cpu\n" in script and "#SBATCH --time=30\n" in script
        assert "#SBATCH --cpus-per-task=2\n" in script
    assert "#SBATCH --array=0-3%3\n" in cells and "--dependency" not in cells
    assert f"#SBATCH --dependency=afterany:{array_id}\n" in summary and "--array" not in summary
    book = JobBook.open(out)
    assert [r["job_id"] for r in book.status()] == [f"{array_id}_{i}" for i in range(4)] + [summary_id]
    assert json.loads((out / "grid_config.json").read_text())["status"] == "queued"
    # the cells' files, as the array would leave them; then the summary job, run as a Slurm node runs it
    for p in (grids["inline"] / "runs").glob("*.json"):
        (out / "runs" / p.name).write_bytes(p.read_bytes())
    run_as_slurm_task(monkeypatch, book.log_dir, summary_id)
    assert (out / "label_grid.csv").read_bytes() == (grids["inline"] / "label_grid.csv").read_bytes()
    assert book.own_state("summary")["state"] == "done"
    assert json.loads((out / "grid_config.json").read_text())["status"] == "done"
