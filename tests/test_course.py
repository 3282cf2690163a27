"""The course runner: submission checking, batch bookkeeping, aggregation, the notebook helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl.course import aggregate, check, cli, config, runner
from medssl.course import manifest as M
from medssl.course import notebook as ch
from medssl.course.environment import SMOKE_TRAIN_IMAGES
from medssl.errors import ConfigError, OutputExistsError
from medssl.metrics import classification_metrics
from medssl.registry import get_spec

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ folder factory
def _metrics(dataset="breastmnist", seed=0, smoke=False, **extra) -> dict:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    p1 = np.clip(0.25 + 0.5 * labels + rng.normal(0, 0.2, 60), 0.01, 0.99)
    m = classification_metrics(labels, np.stack([1 - p1, p1], 1), get_spec(dataset))
    return {**m, "dataset": dataset, "config": {"seed": seed, "epochs": 1}, "seed": seed,
            "course": {"smoke": smoke}, **extra}


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    fig.savefig(path, format="png")
    plt.close(fig)


def make_folder(folder: Path, week: int, dataset: str = "breastmnist", tasks=(), seed: int = 0,
                smoke: bool = False) -> Path:
    """A valid submission: every required and optional file of the week's core and ``tasks``, exercises passed."""
    folder.mkdir(parents=True, exist_ok=True)
    if check.week_has_exercises(week):
        (folder / check.SELF_CHECKS_FILE).write_text(json.dumps({"week": week, "checks": {
            "exercise": {"status": "PASS", "message": "all 3 stored cases match."}}}))
    for d in [M.core(week), *(M.task(t) for t in tasks)]:
        for f in d.files:
            if f.status == M.BY_HAND:
                continue
            p = folder / f.name
            if f.kind == "json":
                if f.keys is M.METRIC_RULES:
                    obj = _metrics(dataset, seed, smoke)
                elif f.keys is M.SSL_CONFIG_RULES:
                    obj = {"method": "simclr-lite", "dataset": dataset, "seed": 42, "epochs": 2, "epochs_run": 2,
                           "final_loss": 4.1, "augmentations": ["RandomHorizontalFlip(p=0.5)"],
                           "config": {"backbone": "resnet18", "proj_dim": 128, "batch_size": 128, "lr": 1e-3,
                                      "weight_decay": 1e-4, "tau": 0.2, "optimizer": "adamw"}}
                else:
                    obj = {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.05, "auroc_before": 0.9,
                           "auroc_after": 0.9}
                p.write_text(json.dumps(obj))
            elif f.kind == "png":
                _png(p)
            elif f.kind == "csv":
                cols = f.columns or ("a",)
                p.write_text(",".join(cols) + "\n" + ",".join("0.5" for _ in cols) + "\n")
            elif f.kind == "pt":
                p.write_bytes(b"weights")
            else:
                p.write_text(f"# {f.name}\n\nText.\n")
    return folder


# ------------------------------------------------------------------ check: good and broken folders
@pytest.mark.parametrize("week", range(1, 8))
def test_good_folder_passes(tmp_path, week):
    folder = make_folder(tmp_path / "results" / f"week{week}" / "breastmnist" / "alice", week)
    rep = check.check_folder(folder)
    assert (rep.week, rep.dataset, rep.student) == (week, "breastmnist", "alice")
    assert rep.passed(), rep.format()
    assert rep.passed(strict=True) == (week != 1)  # week 1 still lacks the hand-made screenshot
    if week == 1:
        assert [p.file for p in rep.of("to add")] == ["screenshot_env.png"]


def test_broken_folder_fails_readably(tmp_path, capsys):
    folder = make_folder(tmp_path / "results" / "week2" / "breastmnist" / "bob", 2)
    (folder / "cm_smallcnn.png").unlink()
    bad = _metrics()
    bad["acc"], bad["auroc"] = 1.7, float("nan")
    del bad["ece"], bad["recall"]
    (folder / "metrics_smallcnn.json").write_text(json.dumps(bad))
    (folder / "metrics_resnet18_head.json").write_text("{not json")
    (folder / "misclassified_gallery.png").write_bytes(b"GIF89a not a png at all")
    (folder / "reliability_resnet18_head.png").write_bytes((folder / "examples_per_class.png").read_bytes()[:40])
    (folder / "README_week2.md").write_text("  \n")
    (folder / "my_extra_plot.png").write_bytes(b"x")

    rep = check.check_folder(folder)
    assert not rep.passed()
    text = rep.format()
    expected = [
        "missing   cm_smallcnn.png: confusion matrix, smallcnn",
        "malformed metrics_smallcnn.json: 'acc' is 1.7, outside [0, 1]",
        "malformed metrics_smallcnn.json: 'auroc' is NaN",
        "malformed metrics_smallcnn.json: missing key(s) ece, recall",
        "malformed metrics_resnet18_head.json: not valid JSON",
        "malformed misclassified_gallery.png: is not a PNG image",
        "malformed reliability_resnet18_head.png: is a damaged PNG",
        "malformed README_week2.md: is empty",
        "note      my_extra_plot.png: not in the manifest",
    ]
    for line in expected:
        assert line in text, f"{line!r} not in\n{text}"
    assert "FAILED (8 problem(s))" in text

    # the command line: readable list on stdout, exit status 1
    assert cli.main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "missing   cm_smallcnn.png" in out and "0 of 1 folder(s) pass" in out


def test_metrics_consistency_checks(tmp_path):
    folder = make_folder(tmp_path / "results" / "week1" / "pneumoniamnist" / "carol", 1, dataset="pneumoniamnist")
    m = _metrics("breastmnist")                         # right keys, wrong dataset
    m["n_per_class"] = [m["n_per_class"][0] + 1, m["n_per_class"][1]]
    (folder / "test_metrics.json").write_text(json.dumps(m))
    text = check.check_folder(folder).format()
    assert "holds breastmnist results but the folder is for pneumoniamnist" in text
    assert "confusion_matrix row sums" in text


def test_started_tasks_must_be_complete(tmp_path):
    folder = make_folder(tmp_path / "results" / "week6" / "pneumoniamnist" / "dan", 6, dataset="pneumoniamnist")
    assert check.check_folder(folder).passed()
    (folder / "P1_temp_scaling_table.md").write_text("| T |\n|---|\n| 1.3 |\n")
    rep = check.check_folder(folder)
    assert rep.tasks == ["P1"] and not rep.passed()
    assert "missing   P1_reliability_before.png: [P1]" in rep.format()
    # naming a task that was not started makes it required too
    rep = check.check_folder(folder, tasks=["P1"])
    assert "P1_reliability_after.png" in rep.format()
    make_folder(folder, 6, "pneumoniamnist", tasks=("P1",))
    assert check.check_folder(folder).passed()


def test_week8_needs_a_task_and_csv_columns(tmp_path):
    folder = tmp_path / "results" / "week8" / "breastmnist" / "erin"
    folder.mkdir(parents=True)
    rep = check.check_folder(folder)
    assert not rep.passed() and "no Week 8 task started; the team tasks are B8-1, B8-2, B8-3" in rep.format()
    make_folder(folder, 8, tasks=("B8-1",))
    assert check.check_folder(folder).passed()
    (folder / "B8-1_robustness_table.csv").write_text("perturbation,acc\nclean,0.9\n")
    assert "missing column(s) auroc, ece, d_acc, d_auroc, d_ece" in check.check_folder(folder).format()
    (folder / "B8-1_robustness_table.csv").unlink()
    (folder / "B8-1_robustness_table.md").write_text("| perturbation | d_auroc |\n")  # the .md alternative
    assert check.check_folder(folder).passed()


def test_group_weeks_and_tree(tmp_path):
    results = tmp_path / "results"
    make_folder(results / "week1" / "breastmnist" / "alice", 1)
    make_folder(results / "week2" / "pneumoniamnist" / "bob", 2, dataset="pneumoniamnist")
    (results / "week10").mkdir(parents=True)
    reps = check.check_tree(results)
    assert [(r.week, r.dataset) for r in reps] == [(1, "breastmnist"), (2, "pneumoniamnist")]
    rep10 = check.check_folder(results / "week10")
    assert not rep10.passed() and "results/week10/reproducibility_checklist.md" in rep10.format()
    (results / "week10" / "reproducibility_checklist.md").write_text("# checklist\n")
    rep10 = check.check_folder(results / "week10")
    assert rep10.passed() and {p.file for p in rep10.of("to add")} == {
        "results/week10/final_writeup.pdf", "results/week10/slides/*.pdf"}
    assert [r.week for r in check.check_tree(results)] == [1, 2, 10]   # started group weeks are included
    with pytest.raises(ConfigError, match="cannot tell the week"):
        check.check_folder(tmp_path / "elsewhere")


def test_check_cli_errors_are_messages(tmp_path, capsys):
    from medssl.cli import run_cli

    assert run_cli(cli.main, ["check", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(cli.main, ["check", str(tmp_path / "empty")]) == 2
    assert "no submission folders" in capsys.readouterr().err


def test_committed_results_pass_the_checker():
    """Every folder committed under results/ passes the checker (reference runs included)."""
    for rep in check.check_tree(REPO / "results"):
        assert rep.passed(), rep.format()


def test_reference_folders_cover_both_datasets_with_every_focus_task_and_no_unwritten_place():
    """The course team's exemplars (issue 15): Weeks 1-8 for both datasets, each with its dataset's extra tasks and
    every ✍️ place answered (a reference folder may still lack what only a student can add, e.g. a screenshot)."""
    refs = sorted((REPO / "results").glob("week[1-8]/*/reference"))
    assert sorted({(p.parent.parent.name, p.parent.name) for p in refs}) == sorted(
        (f"week{w}", d) for w in range(1, 9) for d in ("breastmnist", "pneumoniamnist"))
    for folder in refs:
        rep = check.check_folder(folder, tasks="auto")
        assert rep.passed() and not rep.of("to write"), rep.format(strict=True)


# ------------------------------------------------------------------ running: arguments and bookkeeping
def test_parse_helpers():
    assert runner.parse_weeks("1-3,5 7") == [1, 2, 3, 5, 7]
    assert runner.parse_weeks(["8", "1-2"]) == [1, 2, 8]
    with pytest.raises(ConfigError):
        runner.parse_weeks("3-1")
    with pytest.raises(ConfigError):
        runner.parse_weeks("0-2")
    assert runner.parse_param("[0.05, 0.1]") == [0.05, 0.1]
    assert runner.parse_param("True") is True and runner.parse_param("resnet18") == "resnet18"
    assert cli._params([("EPOCHS", "3")]) == {"EPOCHS": 3}
    with pytest.raises(ConfigError, match="UPPER_CASE"):
        cli._params([("epochs", "3")])
    assert aggregate.variant_of(1, "test_metrics") == "baseline"
    assert aggregate.variant_of(5, "probe_metrics_10pct") == "probe@10%"
    assert aggregate.variant_of(2, "metrics_resnet18_head") == "resnet18_head"


def test_run_refuses_to_overwrite_a_submission(tmp_path):
    make_folder(tmp_path / "results" / "week1" / "breastmnist" / "alice", 1)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        runner.run_week(1, "breastmnist", "alice", tmp_path / "results")
    with pytest.raises(ConfigError, match="--dataset"):
        runner.run_week(2, None, "alice", tmp_path / "results")
    with pytest.raises(ConfigError, match="simple name"):
        runner.run_week(2, "breastmnist", "al ice", tmp_path / "results")
    with pytest.raises(ConfigError, match="has no parameter EPOCH"):
        runner.run_week(2, "breastmnist", "alice", tmp_path / "results", params={"EPOCH": 3})


def test_run_records_a_results_root_inside_the_repository_relative_to_it(monkeypatch, tmp_path):
    import shutil

    import papermill as pm

    repo = tmp_path / "course"                         # a repository layout: starter/src/medssl + notebooks/
    (repo / "starter" / "src" / "medssl").mkdir(parents=True)
    (repo / "notebooks").mkdir()
    shutil.copy(runner.notebook_path(1), repo / "notebooks")
    seen = {}

    def fake_execute(src, dst, parameters, **kw):
        seen.update(parameters, tqdm=os.environ.get("TQDM_DISABLE"))

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(pm, "execute_notebook", fake_execute)
    runner.run_week(1, "breastmnist", "alice", repo / "results", notebooks_dir=repo / "notebooks",
                    raise_on_error=False)
    assert seen["RESULTS_ROOT"] == "results"
    assert seen["tqdm"] == "1" and "TQDM_DISABLE" not in os.environ  # quiet kernel, environment restored
    runner.run_week(1, "breastmnist", "bob", tmp_path / "elsewhere", notebooks_dir=repo / "notebooks",
                    raise_on_error=False)
    assert seen["RESULTS_ROOT"] == str((tmp_path / "elsewhere").resolve())


def test_executed_notebook_paths_are_rewritten_relative_to_the_repository(tmp_path):
    repo = tmp_path / "course"
    root = repo / "results"
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
                     "source": f'# Parameters\nRESULTS_ROOT = "{root}"\nSTUDENT = "alice"\n'}],
          "metadata": {"papermill": {"input_path": str(repo / "notebooks" / "Week01_Baseline.ipynb"),
                                     "output_path": str(root / "week1" / "b" / "alice" / "Week01_Baseline.ipynb"),
                                     "parameters": {"RESULTS_ROOT": str(root), "STUDENT": "alice"}}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "executed.ipynb"
    path.write_text(json.dumps(nb))
    runner.relativize_notebook(path, repo)
    got = json.loads(path.read_text())
    meta = got["metadata"]["papermill"]
    assert meta["input_path"] == "notebooks/Week01_Baseline.ipynb"
    assert meta["output_path"] == "results/week1/b/alice/Week01_Baseline.ipynb"
    assert meta["parameters"] == {"RESULTS_ROOT": "results", "STUDENT": "alice"}
    assert got["cells"][0]["source"] == '# Parameters\nRESULTS_ROOT = "results"\nSTUDENT = "alice"\n'
    assert str(tmp_path) not in path.read_text()
    runner.relativize_notebook(path, tmp_path / "another")         # outside: nothing to rewrite, nothing lost
    assert json.loads(path.read_text()) == got


def test_batch_runs_in_dependency_order_and_skips_dependents(monkeypatch, tmp_path):
    calls = []

    def fake_run_week(week, dataset, student, *args, **kwargs):
        calls.append((week, dataset))
        if (week, dataset) == (4, "breastmnist"):
            return runner.RunOutcome(week, dataset, student, status="failed", cell=7,
                                     error="ConfigError: the loss became nan")
        return runner.RunOutcome(week, dataset, student, seconds=1.0)

    monkeypatch.setattr(runner, "run_week", fake_run_week)
    outs = runner.batch(range(1, 11), ["breastmnist", "pneumoniamnist"], "ta", tmp_path, progress=False)
    status = {(o.week, o.dataset): o.status for o in outs}
    assert calls[:4] == [(1, "breastmnist"), (1, "pneumoniamnist"), (2, "breastmnist"), (2, "pneumoniamnist")]
    assert calls[-2:] == [(9, None), (10, None)]
    for w in (5, 6, 7, 8):  # all need Week 4 (directly or through Week 6)
        assert status[(w, "breastmnist")] == "skipped" and status[(w, "pneumoniamnist")] == "ok"
    table = runner.summary_table(outs)
    assert "| 4 | failed (cell 7): ConfigError: the loss became nan | ok (1s) |" in table
    assert "skipped: needs Week 4, which failed" in table
    assert "13/18 notebooks ok" in table  # week 4 failed, weeks 5-8 skipped, for breastmnist


def test_a_rerun_batch_keeps_checked_weeks_and_replaces_failed_ones_only_when_asked(monkeypatch, tmp_path):
    calls = []

    def fake_run_week(week, dataset, student, root, smoke, params, overwrite, *args, **kwargs):
        calls.append((week, overwrite))
        return runner.RunOutcome(week, dataset, student, seconds=1.0)

    monkeypatch.setattr(runner, "run_week", fake_run_week)
    make_folder(tmp_path / "week1" / "breastmnist" / "ta", 1)                 # finished and checked
    broken = make_folder(tmp_path / "week2" / "breastmnist" / "ta", 2)
    (broken / "metrics_smallcnn.json").write_text("{}")                      # a failed run's leftovers
    outs = runner.batch([1, 2, 3], ["breastmnist"], "ta", tmp_path, progress=False)
    assert [o.status for o in outs] == ["checked", "ok", "ok"]
    assert calls == [(2, False), (3, False)]         # Week 1 not run again; Week 2 without overwrite: run_week refuses
    assert "| 1 | checked (kept) |" in runner.summary_table(outs) and "3/3 notebooks ok" in runner.summary_table(outs)
    calls.clear()
    runner.batch([1, 2], ["breastmnist"], "ta", tmp_path, progress=False, retry_failed=True)
    assert calls == [(2, True)]                      # only the failing folder is replaced
    calls.clear()
    runner.batch([1, 2], ["breastmnist"], "ta", tmp_path, progress=False, overwrite=True)
    assert calls == [(1, True), (2, True)]


# ------------------------------------------------------------------ aggregation
def test_aggregate_class_tables(tmp_path):
    results = tmp_path / "results"
    for i, student in enumerate(("alice", "bob")):
        make_folder(results / "week2" / "breastmnist" / student, 2, seed=i)
    make_folder(results / "week2" / "pneumoniamnist" / "carol", 2, dataset="pneumoniamnist", seed=5)
    make_folder(results / "week2" / "pneumoniamnist" / "smoke", 2, dataset="pneumoniamnist", seed=6, smoke=True)
    res = aggregate.aggregate(results)
    assert res["n_rows"] == 6  # 3 students x 2 models; the smoke folder is left out
    row = next(r for r in res["summary"] if r["dataset"] == "breastmnist" and r["variant"] == "smallcnn")
    a, b = (_metrics(seed=s)["auroc"] for s in (0, 1))
    assert row["auroc_mean"] == pytest.approx((a + b) / 2) and row["auroc_std"] == pytest.approx(abs(a - b) / 2 ** 0.5)
    assert row["n_students"] == 2
    paths = res["paths"]
    assert all(Path(p).exists() for p in paths.values()) and Path(paths["summary_md"]).parent == tmp_path / "reports"
    md = Path(paths["summary_md"]).read_text()
    assert "breastmnist auroc" in md and "pneumoniamnist auroc" in md and "smoke and synthetic runs excluded" in md
    assert aggregate.aggregate(results, include_smoke=True)["n_rows"] == 8
    # label efficiency: the core CSV and the B1 grid of every student's Week 5 folder
    for student, auc in (("alice", 0.7), ("bob", 0.8)):
        f = make_folder(results / "week5" / "breastmnist" / student, 5, tasks=("B1",))
        (f / "probe_vs_supervised.csv").write_text(f"method,fraction,acc,auroc,ece\nprobe,0.1,0.8,{auc},0.1\n")
    le = aggregate.collect_label_efficiency(results)
    assert sorted((r["student"], r["method"], r["auroc"]) for r in le) == [
        ("alice", "0.5 (B1 seed mean)", 0.5), ("alice", "probe", 0.7), ("bob", "0.5 (B1 seed mean)", 0.5),
        ("bob", "probe", 0.8)]
    md = Path(aggregate.aggregate(results)["paths"]["summary_md"]).read_text()
    assert "| breastmnist | probe | 10% | 0.750 ± 0.071 | 2 |" in md


# ------------------------------------------------------------------ notebook helpers
def test_week_run_paths_and_overwrite(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSSL_SMOKE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    root = tmp_path / "results"
    wk = ch.WeekRun(week=1, dataset="synthetic", student="alice", results_root=root)
    assert not wk.smoke and wk.epochs == 5 and wk.out == root / "week1" / "synthetic" / "alice"
    assert wk.rel(wk.out) == "results/week1/synthetic/alice"
    with pytest.raises(ConfigError, match="not a Week 1 deliverable"):
        wk.path("metrics_smallcnn.json")
    wk.save_text("README_week1.md", "hello")
    (wk.out / "screenshot_env.png").write_bytes(b"by hand")
    with pytest.raises(OutputExistsError, match="OVERWRITE = True"):
        ch.WeekRun(week=1, dataset="synthetic", student="alice", results_root=root)
    ch.WeekRun(week=1, dataset="synthetic", student="alice", results_root=root, overwrite=True)
    assert not (wk.out / "README_week1.md").exists() and (wk.out / "screenshot_env.png").exists()

    monkeypatch.setenv("MEDSSL_SMOKE", "1")
    monkeypatch.setenv("MEDSSL_RESULTS_ROOT", str(tmp_path / "smoke" / "results"))
    s = ch.WeekRun(week=3, dataset="synthetic")
    assert s.smoke and s.student == "smoke" and s.epochs == 1 and s.stem == "imagenet" and s.overwrite
    assert s.out == tmp_path / "smoke" / "results" / "week3" / "synthetic" / "smoke"
    assert s.smoke_fraction(400) == 0.5 and s.train_config(model="smallcnn").stem == "auto"


def test_published_json_stores_paths_relative_to_the_course_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSSL_SMOKE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    root = tmp_path / "course" / "results"
    wk = ch.WeekRun(week=1, dataset="synthetic", student="alice", results_root=root)
    enc = root / "week4" / "synthetic" / "alice" / "ssl_encoder.pt"
    outside = "/elsewhere/weights.pth"
    wk.save_json("test_metrics.json", {"encoder": str(enc), "config": {"encoder": enc, "paths": [str(enc), outside]},
                                       "auroc": 0.9, "note": "a/b"})
    got = json.loads((wk.out / "test_metrics.json").read_text())
    rel = "results/week4/synthetic/alice/ssl_encoder.pt"
    assert got["encoder"] == rel and got["config"]["encoder"] == rel
    assert got["config"]["paths"] == [rel, outside] and got["auroc"] == 0.9 and got["note"] == "a/b"
    assert str(tmp_path) not in (wk.out / "test_metrics.json").read_text()


def test_week_run_finds_previous_weeks_or_says_what_to_run(tmp_path):
    wk = ch.WeekRun(week=5, dataset="synthetic", student="alice", results_root=tmp_path / "results", smoke=False)
    with pytest.raises(ConfigError, match=r"(?s)Run Week 4 first.*--week 4 --dataset synthetic --student alice"):
        wk.previous(4, "ssl_encoder.pt", what="SSL encoder")
    with pytest.raises(ConfigError, match="runs/ is not in git"):
        wk.previous_run(4, "ssl/ssl_encoder.pt", what="SSL encoder")


def test_week_run_trains_once_and_checks_its_folder(tmp_path, synth_root, monkeypatch, capsys):
    monkeypatch.setenv("MEDMNIST_ROOT", str(synth_root))
    wk = ch.WeekRun(week=1, dataset="synthetic", student="alice", results_root=tmp_path / "results", smoke=True)
    res = wk.train("baseline", model="smallcnn")
    # smoke mode: SMOKE_TRAIN_IMAGES = 200 of the 400 synthetic training images, 1 epoch
    assert res["n_train_labels"] == SMOKE_TRAIN_IMAGES == 200 and res["config"]["epochs"] == 1
    assert res["config"]["label_frac"] == pytest.approx(0.5)
    again = wk.train("baseline", model="smallcnn")
    assert "reusing the finished run" in capsys.readouterr().out and again["auroc"] == res["auroc"]
    with pytest.raises(ConfigError, match="incomplete"):
        wk.finish()
    wk.publish_metrics("test_metrics.json", res)
    wk.copy_file(wk.run_dir("baseline") / "reliability.png", "reliability.png")
    wk.save_text("README_week1.md", wk.readme().student("write here").render())
    rep = wk.finish()
    assert rep.passed() and [p.file for p in rep.of("to add")] == ["screenshot_env.png"]
    assert rep.of("to write")[0].message.startswith("1 place")
    saved = json.loads((wk.out / "test_metrics.json").read_text())
    assert saved["course"]["smoke"] is True and saved["course"]["week"] == 1


# ------------------------------------------------------------------ self-checks (independent references)
def _nt_xent_reference(z1, z2, tau=0.2):
    """NT-Xent written out loop by loop, independently of the library's vectorised version."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, b = len(z), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        sims = torch.stack([z[i] @ z[k] / tau for k in range(n) if k != i])
        total += -(z[i] @ z[j] / tau) + torch.logsumexp(sims, 0)
    return total / n


def _ece_reference(p, y, n_bins=15):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (p > lo) & (p <= hi) if b else (p >= 0) & (p <= hi)
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return total


def _tpr_threshold_reference(scores, y, target=0.9):
    for t in sorted(set(scores.tolist()), reverse=True):
        if ((scores >= t) & (y == 1)).sum() / (y == 1).sum() >= target - 1e-12:
            return t
    return float(min(scores))


def test_self_checks_pass_for_correct_functions_and_fail_otherwise(capsys):
    from medssl.calibration import expected_calibration_error
    from medssl.decisions import threshold_for_tpr
    from medssl.ssl import nt_xent_loss

    g = torch.Generator().manual_seed(0)
    zc = [(torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), t) for t in (0.2, 0.7)]
    assert ch.self_check("nt_xent", _nt_xent_reference, lambda a, b, t: nt_xent_loss(a, b, t), zc)
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200)
    ec = [(p, (rng.uniform(0, 1, 200) < p).astype(int), 10), (np.array([0.0, 0.5, 1.0]), np.array([0, 1, 1]), 4)]
    assert ch.self_check("ECE", _ece_reference, lambda a, b, n: expected_calibration_error(a, b, n, positive_class=1),
                         ec)
    y = rng.integers(0, 2, 80)
    tc = [(np.round(rng.uniform(0, 1, 80), 2), y, 0.9), (np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), 1.0)]
    assert ch.self_check("threshold", _tpr_threshold_reference, threshold_for_tpr, tc)
    assert capsys.readouterr().out.count("PASS") == 3

    assert not ch.self_check("ECE", lambda p, y, n: 0.0, lambda p, y, n: 0.3, [(p, y, 10)])
    assert not ch.self_check("ECE", lambda p, y, n: None, lambda p, y, n: 0.3, [(p, y, 10)])
    assert not ch.self_check("ECE", lambda p, y, n: 1 / 0, lambda p, y, n: 0.3, [(p, y, 10)])
    out = capsys.readouterr().out
    assert "FAIL  ECE: case 1: yours = 0.0, reference = 0.3" in out and "TODO  ECE" in out
    assert "raised ZeroDivisionError" in out


def test_readme_markers_are_counted(tmp_path):
    r = ch.Readme("T").h("Numbers").table([{"model": "a", "auroc": 0.91234}]).student("why?").student("and?")
    text = r.render()
    assert "| a | 0.9123 |" in text and text.count(M.STUDENT_MARK) == 2


def test_generated_writeup_and_checklist(tmp_path):
    results = tmp_path / "results"
    make_folder(results / "week1" / "breastmnist" / "alice", 1)
    m = _metrics()
    m.update(data={"md5": get_spec("breastmnist").md5[28]}, wall_time_s=12.5, device="cpu",
             versions={"torch": "2.x"})
    (results / "week1" / "breastmnist" / "alice" / "test_metrics.json").write_text(json.dumps(m))
    todo = ch.missing_pieces(results)
    assert "| 1 | alice | **missing** |" in todo and "- [ ] Week 2 has no results for breastmnist." in todo
    assert "`week1/breastmnist/alice`: add screenshot_env.png." in todo
    check = ch.reproducibility_checklist(tmp_path, results)
    assert "python -m medssl.course run --week 1 --dataset breastmnist --student alice" in check
    assert "- [x] Every results folder passes" in check and "(1/1)" in check
    assert "- [x] Data files match medmnist's MD5" in check
    assert "- [ ] The top-level README" in check  # tmp_path has no README
    draft = ch.draft_skeleton("| t |", None, {"figures/fig_baselines.png": "Baselines"}, {"breastmnist": 1})
    assert "![Baselines](../../figures/fig_baselines.png)" in draft and draft.count(M.STUDENT_MARK) >= 5


def test_run_facts_are_machine_independent_and_flag_bad_metrics():
    good = _metrics() | {"n_train_labels": 200, "n_trainable": 1026, "n_parameters": 11171266}
    bad = _metrics() | {"auroc": float("nan")}
    text = ch.run_facts({"head": good, "broken": bad})
    assert "head: test n=60 per class" in text and "200 training images" in text
    assert "trainable parameters 1,026 of 11,171,266, metrics valid: True" in text
    assert "broken:" in text and "metrics valid: False (bad: auroc)" in text
    assert f"{good['auroc']:.2f}" not in text  # no metric values: they differ in the last digits between CPUs


def test_repo_root_from_inside_the_checkout_and_from_elsewhere(tmp_path):
    assert config.repo_root(REPO / "starter" / "src") == REPO
    assert config.repo_root(tmp_path) == REPO          # outside any checkout: the one this package is installed from


# ------------------------------------------------------------------ publishing: the repository URL and the setup cell
def test_course_config_and_github_slug(tmp_path):
    cfg = config.course_config(REPO)
    assert set(cfg) == {"repo_url", "branch"} and cfg["repo_url"].startswith("https://")
    (tmp_path / "course.toml").write_text('[course]\nrepo_url = "https://github.com/uni-x/ssl-course.git"\n')
    assert config.course_config(tmp_path) == {"repo_url": "https://github.com/uni-x/ssl-course.git", "branch": "main"}
    assert config.github_slug("https://github.com/uni-x/ssl-course.git") == "uni-x/ssl-course"
    assert config.github_slug("git@github.com:uni-x/ssl-course") == "uni-x/ssl-course"
    assert config.github_slug("https://gitlab.com/uni-x/ssl-course") is None
    (tmp_path / "course.toml").write_text('[course]\nrepo_url = ""\n')
    with pytest.raises(ConfigError, match="repo_url"):
        config.course_config(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        config.course_config(tmp_path / "elsewhere")


def _setup_source(url: str) -> str:
    import sys

    sys.path.insert(0, str(REPO / "notebooks"))
    try:
        from build_notebooks import setup_cell
    finally:
        sys.path.remove(str(REPO / "notebooks"))
    return setup_cell({"repo_url": url, "branch": "main"}).source


def _run_setup(src: str, monkeypatch, tmp_path, colab: bool, pip_rc: int = 0):
    """Execute the setup cell as in a fresh Colab runtime: medssl not importable, git and pip faked."""
    import subprocess
    import sys
    import types

    calls = []

    def fake_run(cmd, **kw):
        calls.append(list(cmd))
        if cmd[0] == "git":
            (tmp_path / cmd[-1] / "starter" / "src").mkdir(parents=True)
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, pip_rc, "pip says hello\n",
                                           "ERROR: No matching distribution found for medmnist>=3.0.1\n")

    tmp_path.mkdir(exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setitem(sys.modules, "medssl", None)            # import medssl -> ImportError, as before installing
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(Exception) as info:
        exec(compile(src, "setup", "exec"), {"__name__": "__main__"})
    return info.value, calls


def test_setup_cell_stops_with_one_sentence_while_the_url_is_a_placeholder(monkeypatch, tmp_path):
    src = _setup_source(config._COURSE_DEFAULTS["repo_url"])
    monkeypatch.delenv(config.REPO_URL_ENV, raising=False)
    err, calls = _run_setup(src, monkeypatch, tmp_path, colab=True)
    assert calls == [], "nothing may be cloned from the placeholder URL"
    lines = err._render_traceback_()                 # what IPython shows instead of a traceback
    assert len(lines) == 1 and "placeholder" in lines[0] and "course.toml" in lines[0]
    assert "MEDSSL_REPO_URL" in lines[0] and "CalledProcessError" not in lines[0]
    err, calls = _run_setup(src, monkeypatch, tmp_path / "local", colab=False)
    assert calls == [] and "pip install -r requirements.txt" in str(err)   # outside Colab: install locally


def test_setup_cell_clones_the_override_url_and_shows_pips_own_error(monkeypatch, tmp_path, capsys):
    src = _setup_source(config._COURSE_DEFAULTS["repo_url"])
    monkeypatch.setenv(config.REPO_URL_ENV, "file:///srv/course.git")
    err, calls = _run_setup(src, monkeypatch, tmp_path, colab=True, pip_rc=1)
    assert calls[0] == ["git", "clone", "--depth", "1", "file:///srv/course.git", "medmnist-ssl"]
    assert calls[1][1:] == ["-m", "pip", "install", "-q", "-e", "starter[colab]"]   # not requirements.txt
    out = capsys.readouterr().out
    assert "ERROR: No matching distribution found for medmnist" in out and "pip says hello" in out
    assert type(err).__name__ == "SetupError" and "failed with the message above" in str(err)
    assert len(err._render_traceback_()) == 1


def test_run_takes_results_root_from_p_and_refuses_runner_parameters(monkeypatch, tmp_path):
    seen = {}

    def fake_run_week(week, dataset, student, results_root, smoke, params, *a, **kw):
        seen.update(root=results_root, params=params)
        return runner.RunOutcome(week, dataset, student, out_dir=Path(results_root), notebook=Path("nb.ipynb"))

    monkeypatch.setattr(cli, "run_week", fake_run_week)
    args = ["run", "--week", "1", "--dataset", "breastmnist", "--student", "alice"]
    cli.main(args + ["-p", "RESULTS_ROOT", str(tmp_path / "r"), "-p", "EPOCHS", "2"])
    assert seen == {"root": str(tmp_path / "r"), "params": {"EPOCHS": 2}}       # checked where it ran
    cli.main(args)
    assert seen["root"] == "results"
    with pytest.raises(ConfigError, match="disagree"):
        cli.main(args + ["--results-root", "a", "-p", "RESULTS_ROOT", "b"])
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="-p STUDENT is set by the runner.*--student"):
        runner.run_week(1, "breastmnist", "alice", tmp_path / "results", params={"STUDENT": "bob"})


def test_precision_and_determinism_parameters_reach_every_training_config(tmp_path, monkeypatch):
    import medssl.pretrain
    import medssl.probe

    seen = {}

    def fake_pretrain(cfg, out, overwrite=False):
        seen["ssl"] = cfg
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "ssl_config.json").write_text("{}")

    def fake_probe(cfg, out, overwrite=False, **kw):
        seen["downstream"] = cfg
        Path(out).mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(medssl.pretrain, "run", fake_pretrain)
    monkeypatch.setattr(medssl.probe, "run", fake_probe)
    wk = ch.WeekRun(week=5, dataset="synthetic", student="alice", results_root=tmp_path / "results", smoke=True,
                    precision="fp32", deterministic=True)
    assert wk.train_config().precision == "fp32" and wk.train_config().deterministic is True
    wk.pretrain()
    wk.downstream("probe", tmp_path / "enc.pt", [0.1])
    assert (seen["ssl"].precision, seen["ssl"].deterministic) == ("fp32", True)
    assert (seen["downstream"].precision, seen["downstream"].deterministic) == ("fp32", True)
    assert wk.settings["precision"] == "fp32" and wk.settings["deterministic"] is True
    default = ch.WeekRun(week=1, dataset="synthetic", student="bob", results_root=tmp_path / "results", smoke=True,
                         precision=None)
    cfg = default.train_config()
    assert (cfg.precision, cfg.deterministic) == ("auto", False) and "precision" not in default.settings
