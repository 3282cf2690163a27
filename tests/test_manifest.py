"""The course manifest: complete against the course plan, consistent with the notebooks and the task board."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medssl.course import manifest as M
from medssl.errors import ConfigError
from medssl.metrics import CORE_METRIC_KEYS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

# The files the course plan names for each week's folder (status: r = required, o = optional, h = by hand).
PLAN = {
    1: {"test_metrics.json": "r", "reliability.png": "r", "screenshot_env.png": "h", "README_week1.md": "r"},
    2: {"metrics_smallcnn.json": "r", "metrics_resnet18_head.json": "r", "cm_smallcnn.png": "r",
        "cm_resnet18_head.png": "r", "misclassified_gallery.png": "r", "reliability_smallcnn.png": "o",
        "reliability_resnet18_head.png": "r", "README_week2.md": "r"},
    3: {"metrics_resnet18_head.json": "r", "metrics_resnet18_all_basic.json": "r",
        "metrics_resnet18_all_augA.json": "r", "metrics_resnet18_all_augB.json": "o", "curves_resnet18_head.png": "r",
        "curves_resnet18_all_basic.png": "r", "curves_resnet18_all_augA.png": "r", "aug_ablation_table.md": "o",
        "README_week3.md": "r"},
    4: {"ssl_config.json": "r", "ssl_loss_curve.png": "r", "ssl_encoder.pt": "o", "ssl_proj_head.pt": "o",
        "README_week4.md": "r"},
    5: {"probe_metrics_5pct.json": "r", "probe_metrics_10pct.json": "r", "probe_vs_supervised_plot_acc.png": "r",
        "probe_vs_supervised_plot_auroc.png": "r", "README_week5_core.md": "r"},
    6: {"metrics_supervised_baseline.json": "r", "metrics_ssl_probe.json": "r", "metrics_ssl_finetune.json": "r",
        "reliability_ssl_finetune.png": "r", "README_week6_core.md": "r"},
    7: {"roc_curve.png": "r", "pr_curve.png": "r", "operating_point_table.md": "r",
        "high_conf_error_gallery.png": "r", "README_week7_core.md": "r"},
}
PLAN_TASKS = {"P1": 3, "P2": 3, "P3": 3, "P4": 2, "P5": 2, "P6": 2, "B1": 3, "B2": 2, "B3": 2, "B4": 2, "B5": 2,
              "P8-1": 2, "P8-2": 3, "P8-3": 2, "B8-1": 2, "B8-2": 2, "B8-3": 1}  # required files per task
STATUS = {"r": M.REQUIRED, "o": M.OPTIONAL, "h": M.BY_HAND}


@pytest.mark.parametrize("week", sorted(PLAN))
def test_core_files_match_the_course_plan(week):
    got = {f.name: f.status for f in M.core(week).files}
    for name, st in PLAN[week].items():
        assert got.get(name) == STATUS[st], f"week {week}: {name} should be {STATUS[st]}, manifest has {got.get(name)}"


def test_every_week_has_a_core_and_a_notebook():
    for w in M.WEEKS:
        d = M.core(w)
        assert d.week == w and d.kind == "core"
        assert re.fullmatch(rf"Week{w:02d}_\w+\.ipynb", d.notebook)
        if 1 <= w <= 7:
            assert any(re.fullmatch(rf"README_week{w}(_core)?\.md", f.name) and f.status == M.REQUIRED
                       for f in d.files), f"week {w} has no required README"


def test_extra_tasks_are_complete_and_detectable():
    assert set(M.EXTRA_TASK_IDS) == set(PLAN_TASKS)
    for tid, n_required in PLAN_TASKS.items():
        d = M.task(tid)
        assert d.kind == "extra" and d.focus == ("pneumoniamnist" if tid.startswith("P") else "breastmnist")
        assert len(d.required) == n_required, tid
        # a task is "started" when a file with its prefix exists: every task needs one prefixed required file
        assert any(f.name.startswith(f"{tid}_") for f in d.required), tid
        assert d.week == 8 if "8-" in tid else 5 <= d.week <= 7


def test_metric_rules_cover_the_library_keys():
    keys = {r.key for r in M.METRIC_RULES}
    assert set(CORE_METRIC_KEYS) <= keys and "dataset" in keys
    for f in (*M.core(1).files, *M.core(2).files):
        if f.kind == "json":
            assert f.keys is M.METRIC_RULES


def test_resolve_tasks():
    assert [d.id for d in M.resolve_tasks(5, "breastmnist", "auto")] == ["B1", "B2", "B4"]
    assert [d.id for d in M.resolve_tasks(6, "pneumoniamnist", "auto")] == ["P1"]
    assert [d.id for d in M.resolve_tasks(7, "breastmnist", "auto")] == ["B5"]
    assert [d.id for d in M.resolve_tasks(8, "pneumoniamnist", "auto")] == ["P8-1", "P8-2", "P8-3"]
    assert M.resolve_tasks(6, "breastmnist", []) == [] and M.resolve_tasks(6, "breastmnist", None) == []
    assert [d.id for d in M.resolve_tasks(6, "breastmnist", ["p1"])] == ["P1"]  # helpers may take the other team's
    assert len(M.resolve_tasks(7, "breastmnist", "all")) == 6
    # the command line's `--tasks auto` arrives as a one-item list (nargs="*"), and `check --help` offers 'auto'
    assert [d.id for d in M.resolve_tasks(8, "pneumoniamnist", ["auto"])] == ["P8-1", "P8-2", "P8-3"]
    assert len(M.resolve_tasks(7, "breastmnist", ["all"])) == 6 and M.resolve_tasks(7, "breastmnist", ["none"]) == []
    with pytest.raises(ConfigError, match="belongs to Week 6"):
        M.resolve_tasks(5, "breastmnist", ["P1"])
    with pytest.raises(ConfigError, match="unknown extra task"):
        M.resolve_tasks(5, "breastmnist", ["Z9"])


def test_lookups_explain_mistakes():
    with pytest.raises(ConfigError, match="not a Week 2 deliverable.*metrics_smallcnn.json"):
        M.file_spec(2, "metrics_smallcnn.jsn")
    with pytest.raises(ConfigError, match="1-10"):
        M.check_week(11)
    assert M.file_spec(8, "P8-1_robustness_table.md").name == "P8-1_robustness_table.csv"  # an alternative name
    assert M.results_dir("results", 3, "breastmnist", "alice") == Path("results/week3/breastmnist/alice")
    assert M.results_dir("results", 10) == Path("results/week10")
    with pytest.raises(ConfigError, match="student"):
        M.results_dir("results", 3, "breastmnist", None)


def test_describe_lists_required_optional_and_by_hand():
    text = M.describe(1, "breastmnist")
    assert "[   required] test_metrics.json" in text and "[add by hand] screenshot_env.png" in text
    assert "Extra task B1" in M.describe(5, "breastmnist", "auto")
    assert "Extra task" not in M.describe(5, "breastmnist", [])


# ------------------------------------------------------------------ notebooks follow the manifest
def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / name).read_text())["cells"]


@pytest.mark.parametrize("week", M.WEEKS)
def test_notebook_structure(week):
    name = M.core(week).notebook
    assert (NOTEBOOKS / name).exists(), f"{name} missing: run python notebooks/build_notebooks.py"
    cells = _cells(name)
    src = ["".join(c["source"]) for c in cells]
    assert "colab.research.google.com/assets/colab-badge.svg" in src[0]
    params = [s for c, s in zip(cells, src) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for var in ("DATASET_KEY", "STUDENT", "MODEL_NAME", "EPOCHS", "BATCH_SIZE", "SEED", "LABEL_FRACS",
                "RESULTS_ROOT", "DRIVE", "SMOKE"):
        assert re.search(rf"^{var} = ", params[0], re.M), f"{var} not in the parameters cell"
    assert "drive=DRIVE" in "".join(src)
    solutions = json.loads((NOTEBOOKS / "solutions" / name).read_text())["cells"]   # the instructor edition:
    assert any("nbval-check-output" in c.get("metadata", {}).get("tags", []) for c in solutions)  # facts nbval checks
    code = [s for c, s in zip(cells, src) if c["cell_type"] == "code"]
    if M.core(week).location == "group":
        assert "wk.finish()" in code[-1]                                      # ends by checking its own folder
    else:                                                                     # ... then zips it for handing in
        assert "wk.finish()" in code[-2] and code[-1] == "zip_path = wk.hand_in()"


@pytest.mark.parametrize("name", [M.core(w).notebook for w in M.WEEKS] + ["Extra_Paradigms.ipynb"])
def test_setup_cell_clones_the_configured_repository_and_installs_only_the_colab_extra(name):
    """The setup cell and badge come from course.toml (rebuild the notebooks after changing it)."""
    import sys

    sys.path.insert(0, str(NOTEBOOKS))
    try:
        from build_notebooks import badge, setup_cell
    finally:
        sys.path.remove(str(NOTEBOOKS))
    from medssl.course import course_config

    cfg = course_config(REPO)
    cells = _cells(name)
    assert "".join(cells[1]["source"]) == setup_cell(cfg).source, f"{name}: rebuild the notebooks"
    assert badge(name, cfg) in "".join(cells[0]["source"])
    setup = "".join(cells[1]["source"])
    assert f'os.environ.get("MEDSSL_REPO_URL") or "{cfg["repo_url"]}"' in setup
    assert '"-e", "starter[colab]"' in setup and "requirements.txt" not in setup.split("except ImportError")[1].split(
        "SetupError(f")[1]


def test_the_colab_extra_covers_what_the_notebooks_import():
    """Every third-party module a notebook imports is a base dependency, in the colab extra, or Colab's own."""
    import ast
    import importlib.metadata as md
    import sys

    import tomllib

    colab_own = {"torch", "torchvision", "ipython", "ipykernel", "jupyter", "notebook", "jupyter-client"}
    project = tomllib.loads((REPO / "starter" / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower() for d in
                project["dependencies"] + project["optional-dependencies"]["colab"]}
    dists = md.packages_distributions()
    for name in [M.core(w).notebook for w in M.WEEKS] + ["Extra_Paradigms.ipynb"]:
        for c in _cells(name):
            if c["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(c["source"]))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                for mod in mods:
                    top = mod.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("medssl", "google"):
                        continue
                    owners = {d.lower() for d in dists.get(top, [top])}
                    assert owners & (declared | colab_own), f"{name} imports {top}: declare it in the colab extra"
    assert {"umap-learn", "openpyxl"} <= declared


@pytest.mark.parametrize("week", M.WEEKS)
def test_notebooks_write_only_declared_files(week):
    """Every literal file name a notebook writes through ``wk`` is in that week's manifest."""
    code = "\n".join("".join(c["source"]) for c in _cells(M.core(week).notebook) if c["cell_type"] == "code")
    names = re.findall(r"wk\.(?:save_\w+|publish_metrics)\(\s*\"([^\"{}]+)\"", code)
    names += re.findall(r"wk\.copy_file\([^\n]*?,\s*\"([^\"{}]+)\"\)", code)
    allowed = M.allowed_names(week) | {f.name for f in M.core(week).files}
    assert names, "no files found: did the notebook stop using wk.save_* / wk.copy_file?"
    assert set(names) <= allowed, set(names) - allowed


def test_task_board_is_generated_from_the_manifest():
    from medssl.course.tasks import task_board_markdown

    board = (REPO / "reports" / "task_board_week5_7.md").read_text()
    assert board == task_board_markdown(), "regenerate reports/task_board_week5_7.md from the manifest"
    for tid in M.EXTRA_TASK_IDS:
        assert re.search(rf"^\| {re.escape(tid)} \|.*\| \| \|$", board, re.M), tid
    assert (REPO / "reports" / "references" / "TEMPLATE.md").exists()
    assert (REPO / "results" / "README.md").exists()
