"""The notebooks' two editions and the self-checks of the Week 1-4 exercises.

* the build: nbgrader's solution markers become stubs at their indentation; malformed markers fail;
  the committed editions are what the build writes;
* the student edition shows no solution line, no test marker and no ``run_facts`` cell, and no check
  cell imports a reference implementation;
* the stored expected values are what the library's references give now (a stale file fails);
* every Week 1-4 exercise, run from the built cell code: the solution is PASS, the stub TODO and a
  typical wrong version FAIL with the first mismatch, recorded in ``self_checks.json``, and the week
  then uses the library's version;
* (slow, real BreastMNIST) the student edition of Weeks 1-4 runs top to bottom in smoke mode on the
  library's versions with every check TODO, and a wrong exercise goes through an executed notebook.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from datahelpers import real_file_available

from medssl.augment import BatchAugment, ssl_augmentation
from medssl.course.selfcheck import SelfChecks, decode, expected_from_spec, expected_path, first_mismatch
from medssl.data import load_splits

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import build_notebooks as B  # noqa: E402

sys.path.remove(str(NOTEBOOKS))

EXERCISE_WEEKS = (1, 2, 3, 4)
# the checks of Weeks 1-4, and a typical wrong version of each exercise (one list of lines per solution region)
# with what its FAIL message must say
WRONG = {
    "class_counts": (1, "def my_class_counts", [["return np.bincount(np.asarray(labels).reshape(-1))"]],
                     "case 2 of 3: shape (3,), expected (5,)"),                       # forgot minlength
    "augment": (2, "def my_augment", [[
        "x = x.float() / 255.0",
        "b = x.shape[0]",
        "flip = torch.rand(b, generator=generator) < p_flip",
        "x = torch.where(flip.view(b, 1, 1, 1), x.flip(-2), x)",                      # upside down
        "f = torch.rand(b, generator=generator) * (2 * brightness) + (1 - brightness)",
        "x = (x * f.view(b, 1, 1, 1)).clamp(0, 1)",
        "f = torch.rand(b, generator=generator) * (2 * contrast) + (1 - contrast)",
        "m = x.mean(dim=(1, 2, 3), keepdim=True)",
        "return ((x - m) * f.view(b, 1, 1, 1) + m).clamp(0, 1)"]], "case 1 of 3: got"),
    "learning_curve": (3, "def my_read_curve", [[
        "best = min(range(len(log)), key=lambda i: log[i]['val_loss'])",               # keeps the lowest val loss
        "return {'best_epoch': log[best]['epoch'], 'best_val_auroc': log[best]['val_auroc'],",
        "        'min_val_loss_epoch': log[best]['epoch'], 'val_loss_rise': 0.0, 'fit': 'good fit'}"]],
                       "case 1 of 6: ['best_epoch']: got 3, expected 4"),
    "two_views": (4, "def my_two_views", [[
        "v = (augment(x, generator) - 0.5) / 0.5",                                       # one draw used twice
        "return v, v"]], "case 1 of 2: got"),
    "projection_head": (4, "class MyProjectionHead", [[                                 # no BatchNorm
        "hidden_dim = hidden_dim or in_dim",
        "self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))"],
        ["return self.net(h)"]], "case 1 of 2 raised ValueError: parameter shapes"),
    "nt_xent": (4, "def my_nt_xent", [[
        "b = z1.shape[0]",
        "z = F.normalize(torch.cat([z1, z2]), dim=1)",
        "targets = (torch.arange(2 * b) + b) % (2 * b)",
        "return F.cross_entropy(z @ z.t() / tau, targets)"]], "case 1 of 4: got"),      # self-similarity not masked
    "ssl_step": (4, "def my_ssl_step", [[
        "z1, z2 = head(encoder(v1)), head(encoder(v2))",                                # BatchNorm sees one view only
        "return loss_fn(z1, z2, tau)"]], "case 1 of 2: got"),
}
CHECKS = {w: sorted(n for n, spec in WRONG.items() if spec[0] == w) for w in EXERCISE_WEEKS}
TRIVIAL = re.compile(r"^(return \w+|else:|pass|\)|\]|\}|#.*|)$")


def code_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def committed(week: int, which: str):
    folder = NOTEBOOKS / "solutions" if which == "instructor" else NOTEBOOKS
    return nbformat.read(folder / B.WEEKS[week].FILE, as_version=4)


def is_check_cell(src: str) -> bool:
    return any(f"sc.{m}(" in src for m in ("check", "compare", "properties"))


# ------------------------------------------------------------------ the build
def test_solution_regions_become_nbgrader_stubs_at_their_indentation():
    src = textwrap.dedent("""
        def f(x):
            ### BEGIN SOLUTION
            y = x + 1
            return y
            ### END SOLUTION


        class A:
            def g(self):
                ### BEGIN SOLUTION
                return 2
                ### END SOLUTION
        """).strip()
    student = B.student_source(src)
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()\n" in student
    assert "        # YOUR CODE HERE\n        raise NotImplementedError()" in student
    assert "x + 1" not in student and "return 2" not in student and "SOLUTION" not in student
    assert B.solution_lines(src) == ["    y = x + 1", "    return y", "        return 2"]
    assert B.student_source(src, [["return 0"], ["return 1"]]).count("return") == 2


@pytest.mark.parametrize("src, message", [
    ("### BEGIN SOLUTION\nx = 1", "without ### END SOLUTION"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ("### BEGIN SOLUTIONS\nx = 1\n### END SOLUTION", "malformed"),
])
def test_malformed_solution_markers_fail_the_build(src, message):
    with pytest.raises(B.BuildError, match=message):
        B.edition(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src)]), "student")


@pytest.mark.parametrize("week", sorted(B.WEEKS))
def test_committed_editions_are_what_the_build_writes(week):
    for which in B.EDITIONS:
        nb = committed(week, which)
        built = B.build(week, which=which)
        assert [c.source for c in nb.cells] == [c.source for c in built.cells], \
            f"{B.WEEKS[week].FILE} ({which} edition) is out of date: run python notebooks/build_notebooks.py --execute"
        assert [c.metadata.get("tags", []) for c in nb.cells] == [c.metadata.get("tags", []) for c in built.cells]
        # ids come from the content: a rebuild that changes no cell changes no line of the committed file
        assert [c.id for c in nb.cells] == [c.id for c in built.cells]
        assert len({c.id for c in built.cells}) == len(built.cells)
    assert B.build(week, which="student").cells[0].id == B.build(week, which="student").cells[0].id
    student = committed(week, "student")
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in student.cells
               if c.cell_type == "code"), "the student edition carries no outputs"


# ------------------------------------------------------------------ what students see
def instructor_only_lines() -> set[str]:
    """Every non-trivial line of a solution region or an instructor-only cell, in any week."""
    lines = set()
    for week in B.WEEKS:
        for cell in B.build(week, which="instructor").cells:
            if cell.cell_type != "code":
                continue
            if B.INSTRUCTOR_TAG in cell.metadata.get("tags", []):
                lines.update(cell.source.split("\n"))
            lines.update(B.solution_lines(cell.source))
    return {s.strip() for s in lines if not TRIVIAL.match(s.strip())}


def test_student_edition_has_no_solution_and_no_ci_machinery():
    secret = instructor_only_lines()
    assert len(secret) >= 25, "the solution regions of Weeks 1-4 were not found"
    for week in B.WEEKS:
        nb = committed(week, "student")
        name = B.WEEKS[week].FILE
        for cell in nb.cells:
            shown = {s.strip() for s in cell.source.split("\n")}
            assert not shown & secret, f"{name} shows solution lines: {sorted(shown & secret)[:3]}"
            assert "NBVAL" not in cell.source and "SOLUTION" not in cell.source, name
            assert not [t for t in cell.metadata.get("tags", []) if t.startswith("nbval") or t == B.INSTRUCTOR_TAG]
            assert "run_facts" not in cell.source, f"{name} has a run_facts cell"
    for week in EXERCISE_WEEKS:
        src = "\n".join(code_cells(committed(week, "student")))
        assert src.count("raise NotImplementedError()") >= len(CHECKS[week]), f"week {week}: stubs missing"
        tags = [t for c in committed(week, "instructor").cells for t in c.metadata.get("tags", [])]
        assert B.CHECK_TAG in tags, f"week {week}: nothing for nbval to compare in the instructor edition"


def reference_names(week: int) -> set[str]:
    """Names a week's check cells must not use, because they computed the stored answers.

    Weeks 1-4: everything their ``self_checks()`` imports from medssl (it imports only the references).
    Other weeks (whose check cells may use library helpers to build inputs): each reference that is itself a
    library function.
    """
    if week in EXERCISE_WEEKS:
        tree = ast.parse(textwrap.dedent(inspect.getsource(B.WEEKS[week].self_checks)))
        return {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("medssl") for a in node.names}
    refs = [c["reference"] for c in B.WEEKS[week].self_checks().values()]
    return {r.__name__ for r in refs if (getattr(r, "__module__", "") or "").startswith("medssl")}


@pytest.mark.parametrize("which", B.EDITIONS)
def test_check_cells_never_use_a_reference_implementation(which):
    """A check cell compares with stored answers: it neither imports nor calls what computed them."""
    checked = []
    for week, mod in B.WEEKS.items():
        if not hasattr(mod, "self_checks"):
            continue
        names = reference_names(week)
        for src in code_cells(B.build(week, which=which)):
            if not is_check_cell(src):
                continue
            checked.append(src)
            code = re.sub(r"\"[^\"\n]*\"", '""', src)     # a check's name in quotes is not a use
            used = sorted(n for n in names if re.search(rf"\b{n}\b", code))
            assert not used, f"week {week}: a check cell uses {used}, which computed the stored answers"
    assert len(checked) >= 7
    assert {"nt_xent_loss", "two_views", "ProjectionHead", "SimCLR"} <= reference_names(4)
    assert {"flatten_labels"} <= reference_names(1) and {"read_learning_curve"} <= reference_names(3)


def test_stored_expected_values_are_the_librarys_answers_now():
    """Rebuild every week's expected values in memory; the committed files must hold the same (else stale)."""
    weeks = [w for w, mod in B.WEEKS.items() if hasattr(mod, "self_checks")]
    assert set(EXERCISE_WEEKS) <= set(weeks)
    for week in weeks:
        stored = json.loads(expected_path(week, REPO).read_text())["checks"]
        fresh = json.loads(json.dumps(expected_from_spec(B.WEEKS[week].self_checks()), allow_nan=True,
                                      default=float))
        assert sorted(stored) == sorted(fresh), f"week {week}: checks changed; rebuild the notebooks"
        for name, spec in fresh.items():
            old = stored[name]
            assert (old["atol"], old["rtol"], len(old["cases"])) == (spec["atol"], spec["rtol"], len(spec["cases"]))
            for i, (a, b) in enumerate(zip(old["cases"], spec["cases"]), 1):
                where = f"week {week} {name} case {i}"
                assert first_mismatch(decode(a["args"]), decode(b["args"]), 0, 0) is None, f"{where}: inputs differ"
                assert first_mismatch(decode(a["kwargs"]), decode(b["kwargs"]), 0, 0) is None, where
                mismatch = first_mismatch(decode(a["want"]), decode(b["want"]), 1e-6, 1e-6)
                assert mismatch is None, f"{where}: stored answer is stale ({mismatch}); rebuild the notebooks"


# ------------------------------------------------------------------ every exercise: PASS, TODO, FAIL
@pytest.fixture(scope="module")
def namespace_base(tmp_path_factory):
    """What the exercise and check cells of Weeks 1-4 read from earlier cells (a synthetic stand-in)."""
    from tiny_data import tiny_synthetic

    root = tiny_synthetic(tmp_path_factory.mktemp("data"), key="synthetic", n=(16, 8, 8))
    splits = load_splits("synthetic", root=root)
    import math

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    return {"wk": SimpleNamespace(load_splits=lambda: splits), "splits": splits, "np": np, "torch": torch,
            "nn": nn, "F": F, "math": math, "augment": BatchAugment(ssl_augmentation("ultrasound", "strong"))}


def run_exercise(name: str, which: str, out_dir: Path, base: dict) -> SelfChecks:
    """Execute the exercise cell of check ``name`` (its ``which`` version) and its check cell, as built."""
    week, marker, wrong, _ = WRONG[name]
    cells = code_cells(B.build(week, which="instructor"))
    exercise = next(s for s in cells if marker in s and B.BEGIN in s)
    check = next(s for s in cells if f'sc.check("{name}"' in s)
    if which == "stub":
        exercise = B.student_source(exercise)
    elif which == "wrong":
        exercise = B.student_source(exercise, wrong)
    sc = SelfChecks(week, out_dir=out_dir)
    ns = {**base, "sc": sc}
    exec(compile(exercise, f"<week {week} exercise>", "exec"), ns)
    exec(compile(check, f"<week {week} check {name}>", "exec"), ns)
    return sc


@pytest.mark.parametrize("name", sorted(WRONG))
def test_each_exercise_passes_only_when_right(name, tmp_path, namespace_base, capsys):
    message = WRONG[name][3]
    for which, status in (("solution", "PASS"), ("stub", "TODO"), ("wrong", "FAIL")):
        out = tmp_path / which
        sc = run_exercise(name, which, out, namespace_base)
        printed = capsys.readouterr().out
        assert sc.status(name) == status, f"{name} ({which}): {printed}"
        record = json.loads((out / "self_checks.json").read_text())["checks"][name]
        assert record["status"] == status and printed.startswith(f"{status:<5} {name}: ")
        assert sc.pick(name, "yours", "library", name) == ("yours" if status == "PASS" else "library")
        used = capsys.readouterr().out
        assert used.startswith(f"using your {name}" if status == "PASS" else f"using the library's {name} "
                               f"(your self-check: {status})")
    assert record["message"].startswith(message), record["message"]   # the first mismatch, named


def test_check_self_checks_reports_fail_and_todo(tmp_path, namespace_base):
    from medssl.course.selfcheck import check_self_checks

    assert check_self_checks(tmp_path) == []
    run_exercise("nt_xent", "solution", tmp_path, namespace_base)
    run_exercise("two_views", "wrong", tmp_path, namespace_base)
    run_exercise("ssl_step", "stub", tmp_path, namespace_base)
    found = check_self_checks(tmp_path)
    assert [level for level, _ in found] == ["warning", "warning"]
    assert "self-check ssl_step not done" in found[0][1] and "self-check two_views failed: case 1" in found[1][1]
    (tmp_path / "self_checks.json").write_text("{not json")
    assert check_self_checks(tmp_path) == [("warning", "self_checks.json could not be read (JSONDecodeError).")]


# ------------------------------------------------------------------ executed notebooks (slow, real data)
needs_breast = pytest.mark.skipif(not real_file_available("breastmnist"),
                                  reason="breastmnist.npz not in the data root; set MEDMNIST_ROOT")


def outputs_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
@needs_breast
def test_student_edition_runs_on_the_library_with_every_check_todo(tmp_path):
    from medssl.course import runner

    root = tmp_path / "results"
    outcomes = runner.batch(EXERCISE_WEEKS, ["breastmnist"], "smoke", root, smoke=True, progress=False)
    assert all(o.status == "ok" for o in outcomes), runner.summary_table(outcomes)
    picked = {1: ["class counts"], 2: ["augmentation pipeline"], 3: ["learning-curve reader"],
              4: ["two-view function", "projection head", "NT-Xent loss", "training step"]}
    for o in outcomes:
        record = json.loads((o.out_dir / "self_checks.json").read_text())
        assert record["week"] == o.week and sorted(record["checks"]) == CHECKS[o.week]
        assert {r["status"] for r in record["checks"].values()} == {"TODO"}
        text = outputs_text(o.notebook)
        assert "using your" not in text and "PASS" not in text and "FAIL" not in text
        for what in picked[o.week]:
            assert f"using the library's {what} (your self-check: TODO)" in text, (o.week, what)
    ssl = json.loads((root / "week4" / "breastmnist" / "smoke" / "ssl_config.json").read_text())
    assert set(ssl["components"].values()) == {"library"}


@pytest.mark.slow
@needs_breast
def test_a_wrong_exercise_fails_in_the_executed_notebook_and_the_week_uses_the_library(tmp_path):
    from medssl.course import runner

    nb = committed(1, "student")
    cell = next(c for c in nb.cells if c.cell_type == "code" and "def my_class_counts" in c.source)
    cell.source = cell.source.replace("# YOUR CODE HERE\n    raise NotImplementedError()",
                                      "return np.bincount(np.asarray(labels).reshape(-1))")   # forgets minlength
    assert "bincount" in cell.source
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / B.WEEKS[1].FILE)
    o = runner.run_week(1, "breastmnist", "wrong", tmp_path / "results", smoke=True, notebooks_dir=folder)
    assert o.status == "ok"
    record = json.loads((o.out_dir / "self_checks.json").read_text())["checks"]["class_counts"]
    assert record["status"] == "FAIL" and record["message"].startswith(WRONG["class_counts"][3])
    text = outputs_text(o.notebook)
    assert "FAIL  class_counts: case 2 of 3: shape (3,), expected (5,)" in text
    assert "using the library's class counts (your self-check: FAIL)" in text
