"""A class's batch through submitit: the roster, the plan of each week, Slurm's scripts, and a real local run.

The local run (``class_batch``) starts real subprocesses through submitit's ``LocalExecutor``: three chains of
Weeks 4-5 in smoke mode (smallcnn, no extra tasks) on the synthetic set, where Bob's BreastMNIST chain meets a
corrupt data file and fails. The Slurm tests let submitit's ``SlurmExecutor`` write its sbatch scripts and hand
them to a stand-in ``sbatch`` (``tests/jobhelpers.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import pytest
from jobhelpers import FakeExecutor, fake_slurm, run_as_slurm_task, sbatch_scripts
from test_course import make_folder

from medssl.course import cli, cluster, runner
from medssl.course.check import check_folder
from medssl.course.roster import Chain, chains_for, read_roster
from medssl.data import ensure_file
from medssl.errors import ConfigError
from medssl.jobs import jobbook
from medssl.jobs.executors import ClusterSettings
from medssl.jobs.jobbook import JobBook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks" / "solutions"
SMOKE = ["--weeks", "4-5", "--smoke", "--notebooks", str(NOTEBOOKS), "-p", "MODEL_NAME", "smallcnn",
         "-p", "EXTRA_TASKS", "[]"]
METRIC_KEYS = ("auroc", "acc", "ece", "f1_macro", "confusion_matrix")
needs_submitit = pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                    reason="submitit is not installed (pip install submitit)")


def _main(argv) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue()


# ------------------------------------------------------------------ roster
def test_roster_rows_become_chains_in_file_order(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("\ufeffStudent,email,Dataset\n# comment\nalice,a@uni.edu,breastmnist\n\n"
                      "bob,b@uni.edu,PneumoniaMNIST\nbob,b@uni.edu,breastmnist\n")
    assert read_roster(roster) == [Chain("alice", "breastmnist"), Chain("bob", "pneumoniamnist"),
                                   Chain("bob", "breastmnist")]
    assert chains_for("ta", ["breastmnist", "breastmnist", "synthetic"]) == [Chain("ta", "breastmnist"),
                                                                            Chain("ta", "synthetic")]


@pytest.mark.parametrize("text, message", [
    ("name,dataset\nalice,breastmnist\n", "has no student column"),
    ("student\nalice\n", "has no dataset column"),
    ("student,dataset\nalice,breastmnst\n", r"line 2: Unknown dataset key 'breastmnst'. Did you mean 'breastmnist'"),
    ("student,dataset\nalice,breastmnist\nbob,x\nalice,breastmnist\n",
     r"(?s)2 bad row\(s\).*line 3: Unknown dataset key 'x'.*line 4: alice,breastmnist is already on line 2"),
    ("student,dataset\nal ice,breastmnist\n", "line 2: a student name is letters"),
    ("student,dataset\nalice\n", "line 2: expected student,dataset"),
    ("student,dataset\n", "lists no student"),
    ("", "is empty"),
])
def test_a_bad_roster_names_the_line_and_runs_nothing(tmp_path, text, message):
    roster = tmp_path / "roster.csv"
    roster.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_roster(roster)


def test_batch_arguments_that_cannot_go_together_are_errors(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,dataset\nalice,breastmnist\n")
    with pytest.raises(ConfigError, match="either --roster"):
        cli.main(["batch", "--roster", str(roster), "--student", "ta"])
    with pytest.raises(ConfigError, match="--student NAME"):
        cli.main(["batch", "--weeks", "1"])
    with pytest.raises(ConfigError, match="Week 9 is a group week"):
        cli.main(["batch", "--roster", str(roster), "--weeks", "8-10"])


# ------------------------------------------------------------------ what each week will do
def test_the_plan_keeps_checked_weeks_and_refuses_to_replace_unfinished_ones(tmp_path):
    root = tmp_path / "results"
    alice, bob, carol = Chain("alice", "breastmnist"), Chain("bob", "breastmnist"), Chain("carol", "breastmnist")
    make_folder(root / "week4" / "breastmnist" / "alice", 4)                      # finished: passes the check
    broken = make_folder(root / "week4" / "breastmnist" / "bob", 4)
    (broken / "ssl_config.json").write_text("{}")                              # unfinished: fails the check
    plan = cluster.plan([4, 5, 6], [alice, bob, carol], root)
    assert plan[(4, alice)] == ("keep", "") and plan[(5, alice)] == ("run", "")
    assert plan[(4, bob)][0] == "refuse" and "--retry-failed" in plan[(4, bob)][1]
    assert plan[(5, bob)] == ("skip", "needs Week 4, which will not run") and plan[(6, bob)][0] == "skip"
    assert plan[(4, carol)] == ("run", "")
    retry = cluster.plan([4, 5], [bob], root, retry_failed=True)
    assert retry[(4, bob)] == ("run", "retry") and retry[(5, bob)] == ("run", "")
    assert cluster.plan([4], [alice], root, overwrite=True)[(4, alice)] == ("run", "")


@needs_submitit
def test_a_job_runs_its_week_with_the_arguments_of_the_inline_batch(tmp_path, monkeypatch):
    """So a chain computes the same metrics whichever executor runs it (the real notebooks: see class_batch)."""
    calls: dict[str, list] = {"inline": [], "job": []}

    def fake_run_week(*args, **kwargs):
        week, dataset, student, root, smoke, params, overwrite, nb_dir, kernel = args
        calls[mode].append((week, dataset, student, Path(root).resolve(), smoke, params, overwrite,
                            Path(nb_dir).resolve(), kernel, kwargs))
        return runner.RunOutcome(week, dataset, student)

    monkeypatch.setattr(runner, "run_week", fake_run_week)
    monkeypatch.setattr(cluster, "run_week", fake_run_week)
    monkeypatch.setattr(cluster, "make_executor", lambda settings, folder, name: FakeExecutor(folder))
    monkeypatch.setattr(cluster, "_prefetch", lambda datasets, report: None)
    monkeypatch.setattr(jobbook, "POLL_S", 0)
    params = {"MODEL_NAME": "smallcnn", "EXTRA_TASKS": [], "SSL_METHOD": "moco"}   # SSL_METHOD: Week 4's only
    mode = "inline"
    runner.batch([3, 4, 5], ["breastmnist"], "alice", tmp_path / "results", True, params, notebooks_dir=NOTEBOOKS,
                 progress=False)
    mode = "job"
    cluster.submit_batch([3, 4, 5], [Chain("alice", "breastmnist")], tmp_path / "results",
                         ClusterSettings("local").validate(), True, params, notebooks_dir=NOTEBOOKS,
                         report=lambda line: None)
    assert calls["job"] == calls["inline"] and [c[0] for c in calls["job"]] == [3, 4, 5]
    assert "SSL_METHOD" in calls["job"][1][5] and "SSL_METHOD" not in calls["job"][2][5]


# ------------------------------------------------------------------ Slurm: the scripts submitit writes
@needs_submitit
def test_slurm_gets_one_array_per_week_with_aftercorr_on_the_weeks_it_needs(tmp_path, monkeypatch):
    scripts = fake_slurm(monkeypatch, tmp_path)
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp_path / "data"))
    root = tmp_path / "results"
    make_folder(root / "week3" / "synthetic" / "alice", 3, "synthetic")     # alice's Week 3 is done already
    toml = tmp_path / "cluster.toml"
    toml.write_text('executor = "slurm"\npartition = "gpu"\ngpus = 1\ntime = "1:30:00"\nparallelism = 5\n'
                    'setup = ["module load cuda/12.1", "source ~/venvs/medssl/bin/activate"]\n')
    roster = tmp_path / "roster.csv"
    roster.write_text("student,dataset\nalice,synthetic\nbob,synthetic\n")
    rc, out = _main(["batch", "--roster", roster, "--weeks", "3-6", "--smoke", "--results-root", root,
                     "--notebooks", NOTEBOOKS, "--cluster-config", toml])
    assert rc == 0 and "submitted 4 job array(s) of 2 task(s) each" in out
    ids = dict(zip((3, 4, 5, 6), sbatch_scripts(scripts)))
    by_week = dict(zip((3, 4, 5, 6), sbatch_scripts(scripts).values()))
    for week, script in by_week.items():
        for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=90",
                     "#SBATCH --array=0-1%2", "# setup\nmodule load cuda/12.1\nsource ~/venvs/medssl/bin/activate"):
            assert line + "\n" in script, (week, line)
    assert "--dependency" not in by_week[3] and "--dependency" not in by_week[4]
    assert f"#SBATCH --dependency=aftercorr:{ids[4]}\n" in by_week[5]             # Week 5 needs Week 4
    assert f"#SBATCH --dependency=aftercorr:{ids[3]}:{ids[4]}\n" in by_week[6]     # Week 6 needs Weeks 3 and 4
    assert all("#SBATCH --kill-on-invalid-dep=yes\n" in by_week[w] for w in (5, 6))
    book = JobBook.open(root)
    jobs = book.record["jobs"]
    for week in (3, 4, 5, 6):   # task i is the same chain in every array: alice 0, bob 1
        assert jobs[f"week{week}-synthetic-alice"]["job_id"] == f"{ids[week]}_0"
        assert jobs[f"week{week}-synthetic-bob"]["job_id"] == f"{ids[week]}_1"
    assert str(book.log_dir).startswith(str(root.resolve()))                    # logs beside the results
    # alice's Week 3 task has nothing to do: run as a node would run it, it ends at once, kept
    run_as_slurm_task(monkeypatch, book.log_dir, f"{ids[3]}_0")
    assert book.own_state("week3-synthetic-alice")["state"] == "checked"
    rc, out = _main(["status", root])
    assert rc == 1 and "week 3 synthetic alice  checked" in out
    assert f"week 5 synthetic bob    pending   job {ids[5]}_1" in out and "1 checked" in out
    assert _main(["batch", "--status", "--results-root", root]) == (rc, out)   # the same list from batch


# ------------------------------------------------------------------ a real class batch on the local executor
@pytest.fixture(scope="module")
def class_batch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("class")
    data = tmp / "data"
    ensure_file("synthetic", root=data)                         # made once here, read by every job
    (data / "breastmnist.npz").write_bytes(b"not an npz")      # Bob's BreastMNIST chain fails on its data
    roster = tmp / "roster.csv"
    roster.write_text("student,dataset\nalice,synthetic\nbob,synthetic\nbob,breastmnist\n")
    root = tmp / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMNIST_ROOT", str(data))
        rc, out = _main(["batch", "--roster", roster, "--results-root", root, *SMOKE, "--executor", "local",
                         "--parallelism", "2"])
        yield {"rc": rc, "out": out, "root": root, "tmp": tmp, "book": JobBook.open(root)}


@pytest.mark.slow
@needs_submitit
def test_each_week_runs_after_the_week_it_needs_and_passes_the_check(class_batch):
    root, book = class_batch["root"], class_batch["book"]
    for student in ("alice", "bob"):
        w4, w5 = (book.own_state(f"week{w}-synthetic-{student}") for w in (4, 5))
        assert w4["state"] == w5["state"] == "done", class_batch["out"]
        assert w5["started"] >= w4["finished"]                  # Week 5 started once Week 4 had finished
        for week in (4, 5):
            report = check_folder(root / f"week{week}" / "synthetic" / student)
            assert report.passed(), report.format()
    # two chains with the same settings, each in its own processes: the same numbers
    for name in ("probe_metrics_5pct.json", "probe_metrics_10pct.json"):
        a, b = (json.loads((root / "week5" / "synthetic" / s / name).read_text()) for s in ("alice", "bob"))
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}


@pytest.mark.slow
@needs_submitit
def test_a_failed_week_stops_only_its_own_chain_and_status_shows_its_error(class_batch):
    root, book = class_batch["root"], class_batch["book"]
    assert class_batch["rc"] == 1
    states = {r["key"]: r["state"] for r in book.status()}
    assert states == {"week4-synthetic-alice": "done", "week4-synthetic-bob": "done", "week4-breastmnist-bob": "failed",
                      "week5-synthetic-alice": "done", "week5-synthetic-bob": "done",
                      "week5-breastmnist-bob": "skipped"}
    assert not (root / "week5" / "breastmnist" / "bob").exists()                 # never started
    assert book.record["jobs"]["week5-breastmnist-bob"]["job_id"] is None
    rc, out = _main(["status", root, "--batch", book.batch])   # from the files, as after the batch exited
    assert rc == 1
    failed_line = next(ln for ln in out.splitlines() if ln.startswith("  week 4 breastmnist bob"))
    assert "failed" in failed_line and "CorruptDatasetError" in failed_line and "in cell" in failed_line
    assert "week 4 breastmnist bob: last lines of" in out
    assert any(ln.startswith("  | ") and "CorruptDatasetError" in ln for ln in out.splitlines())
    assert "  week 5 breastmnist bob  skipped   needs week 4 breastmnist bob, which failed" in out
    assert "4 done, 1 failed, 1 skipped" in out


@pytest.mark.slow
@needs_submitit
def test_a_rerun_keeps_the_finished_weeks_without_a_job(class_batch, monkeypatch):
    root, tmp = class_batch["root"], class_batch["tmp"]
    monkeypatch.setenv("MEDMNIST_ROOT", str(tmp / "data"))
    finished = [p for p in root.glob("week*/synthetic/*/*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in finished}
    roster = tmp / "finished.csv"
    roster.write_text("student,dataset\nalice,synthetic\nbob,synthetic\n")
    rc, out = _main(["batch", "--roster", roster, "--results-root", root, *SMOKE, "--executor", "local"])
    assert rc == 0 and "4 weeks; 0 to run, 4 already checked (kept)" in out
    book = JobBook.open(root)
    assert book.batch != class_batch["book"].batch
    assert {r["state"] for r in book.status()} == {"checked"}
    assert all(j["job_id"] is None for j in book.record["jobs"].values())       # no job started
    assert {p: p.stat().st_mtime_ns for p in finished} == before                # nothing rewritten
    # Bob's failed BreastMNIST week left only its executed notebook, no deliverable: a re-run tries it again
    chains = read_roster(tmp / "roster.csv")
    plan = cluster.plan([4, 5], chains, root)
    assert [plan[(w, c)][0] for c in chains for w in (4, 5)] == ["keep", "keep", "keep", "keep", "run", "run"]
