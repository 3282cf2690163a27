"""The Weeks 5-8 exercises as the notebooks run them: the real cell text, the stored expected values, the fallback.

For each exercise the cells of ``notebooks/cells/weekNN.py`` are executed as written -- the exercise cell, its
self-check cell and the cell that picks the implementation -- three times:

* as the instructor edition (the solution region filled in): every check PASSes and the week uses the student's
  function;
* with the solution region replaced by a deliberately wrong implementation (a typical mistake): that check
  FAILs naming the first mismatch, the failure lands in ``self_checks.json``, and the week falls back to the
  library;
* with the student edition's stub (``# YOUR CODE HERE`` + ``raise NotImplementedError()``): every check is TODO
  and the week uses the library's versions.

That the stored expected values (``notebooks/self_checks/weekNN.json``) are still the library's answers is
checked for every week by tests/test_editions.py; here, that they hold the cases the typical mistakes trip over.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from medssl.course.selfcheck import SelfChecks, expected_path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
if str(NOTEBOOKS) not in sys.path:
    sys.path.insert(0, str(NOTEBOOKS))

import cells  # noqa: E402  (notebooks/cells: the text of every week's cells)

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

# week -> its exercises: (function defined in the exercise cell, self-check name, variables set by the pick cell)
EXERCISES = {
    5: [("make_split_indices", "make_split_indices", "sampler"),
        ("train_linear_probe", "train_linear_probe", "probe_fn")],
    6: [("finetune_optimizer", "finetune_optimizer", "optimizer_fn"),
        ("compute_reliability", "compute_reliability", "reliability")],
    7: [("choose_threshold", "choose_threshold", "threshold_fn"),
        ("collect_high_conf_errors", "collect_high_conf_errors", "errors_fn")],
    8: [("brightness_contrast", "brightness_contrast", "perturbation_fns")],
}
# the library's fallback, as the pick cell sets it (None: the library function's default path)
LIBRARY = {"reliability": "library_reliability"}


# ------------------------------------------------------------------ reading the cell text
def code_cells(week: int) -> list[str]:
    """The code cells of a week in notebook order (the text the build puts into the notebook)."""
    out = []

    def code(text, check=False, tags=()):
        out.append(textwrap.dedent(text).strip())

    cells.WEEKS[week].cells(md=lambda text: None, code=code, params_cell=lambda *a, **k: None,
                            start_cell=lambda *a, **k: None)
    return out


def exercise_cells(week: int) -> dict[str, str]:
    """``{"exercise:<fn>", "check:<name>", "pick"}`` -> cell text, for every exercise of the week."""
    srcs = code_cells(week)
    out = {}
    for fn, name, _ in EXERCISES[week]:
        [ex] = [s for s in srcs if f"def {fn}(" in s and BEGIN in s]
        [chk] = [s for s in srcs if f'sc.check("{name}"' in s]
        out[f"exercise:{fn}"], out[f"check:{name}"] = ex, chk
    picks = [s for s in srcs if "sc.pick(" in s]
    assert len(picks) == 1, f"week {week}: one cell picks the implementations"
    out["pick"] = picks[0]
    return out


def with_region(src: str, body: str) -> str:
    """``src`` with its one solution region (markers included) replaced by ``body``, at the region's indentation."""
    lines = src.split("\n")
    [b] = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    [e] = [i for i, line in enumerate(lines) if line.strip() == END]
    indent = lines[b][:len(lines[b]) - len(lines[b].lstrip())]
    lines[b:e + 1] = [indent + line if line else line for line in textwrap.dedent(body).strip("\n").split("\n")]
    return "\n".join(lines)


def run_week(week: int, out_dir: Path, bodies: dict[str, str] | None = None) -> dict:
    """Execute the week's exercise, check and pick cells in order; ``bodies`` replaces solution regions by function.

    Returns the namespace the cells ran in (``sc``, the functions, what the pick cell chose).
    """
    bodies = bodies or {}
    src = exercise_cells(week)
    ns: dict = {"__name__": "__notebook__", "sc": SelfChecks(week=week, out_dir=out_dir)}
    for fn, name, _ in EXERCISES[week]:
        ex = src[f"exercise:{fn}"]
        exec(compile(with_region(ex, bodies[fn]) if fn in bodies else ex, f"<week{week} {fn}>", "exec"), ns)
        exec(compile(src[f"check:{name}"], f"<week{week} check {name}>", "exec"), ns)
    exec(compile(src["pick"], f"<week{week} pick>", "exec"), ns)
    return ns


def recorded(out_dir: Path) -> dict:
    return json.loads((out_dir / "self_checks.json").read_text())["checks"]


# ------------------------------------------------------------------ wrong implementations: typical mistakes
WRONG = {
    # a generator per class instead of one for the whole draw: other images than everyone else's 5 %
    "make_split_indices": ("""
        labels = np.asarray(labels)
        picks = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            k = len(members) if frac == 1 else max(1, round(frac * len(members)))
            picks.append(np.random.default_rng(seed + int(c)).permutation(members)[:k])
        return np.sort(np.concatenate(picks)).astype(np.int64)
        """, "case 1 of 5"),
    # no choice at all: the last C of the grid is returned, whatever its validation AUROC
    "train_linear_probe": ("""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        head = make_pipeline(StandardScaler(), LogisticRegression(C=c_grid[-1], max_iter=2000, random_state=seed))
        head.fit(train_feats, train_labels)
        return head.predict_proba, {"C": c_grid[-1], "val_auroc_by_C": {}}
        """, "the chosen C has the best validation AUROC of the grid"),
    # one learning rate for everything: the pretrained encoder is trained as hard as the new head
    "finetune_optimizer": ("""
        model.unfreeze_encoder()
        return torch.optim.AdamW(model.parameters(), lr=head_lr, weight_decay=weight_decay)
        """, "case 1 of 2: ['lr']: got 0.001 at index (0,), expected 0.0001"),
    # bins [lo, hi) from floor(p * n_bins): a probability on an edge (0.3 with 10 bins) lands in the bin above
    "compute_reliability": ("""
        p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
        b = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
        count = np.bincount(b, minlength=n_bins)
        conf, acc = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
        for i in np.flatnonzero(count):
            conf[i], acc[i] = p[b == i].mean(), y[b == i].mean()
        filled = count > 0
        ece = float(np.sum(count[filled] / len(p) * np.abs(acc[filled] - conf[filled])))
        return {"ece": ece, "confidence": conf, "accuracy": acc, "count": count}
        """, "case 3 of 4"),
    # "positive" read as score > t instead of score >= t
    "choose_threshold": ("""
        scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
        candidates = np.unique(np.r_[scores, np.nextafter(scores.max(), np.inf)])
        if metric == "tpr":
            tpr = np.array([(scores[y] > t).mean() for t in candidates])
            return float(candidates[tpr >= target - 1e-12].max())
        fpr = np.array([(scores[~y] > t).mean() for t in candidates])
        return float(candidates[fpr <= target + 1e-12].min())
        """, "case 1 of 7: got"),
    # false negatives ranked highest score first: the least confident misses instead of the most confident
    "collect_high_conf_errors": ("""
        scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y)
        called = scores >= t
        fp = np.flatnonzero(called & (y == 0))
        fn = np.flatnonzero(~called & (y == 1))
        return {"FP": fp[np.argsort(-scores[fp], kind="stable")][:k],
                "FN": fn[np.argsort(-scores[fn], kind="stable")][:k]}
        """, "['FN']: got"),
    # one mean for the whole batch instead of one per image
    "brightness_contrast": ("""
        f = np.asarray(images, dtype=np.float64) / 255.0
        out = f.mean() + (1.0 - severity) * (f - f.mean()) + severity / 2.0
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
        """, "case 1 of 5: got"),
}
ALL = [(w, fn, name, var) for w, exs in EXERCISES.items() for fn, name, var in exs]


def _library_choice(ns: dict, var: str):
    return ns[LIBRARY[var]] if var in LIBRARY else None


# ------------------------------------------------------------------ the three editions of each exercise
@pytest.mark.parametrize("week", sorted(EXERCISES))
def test_instructor_solutions_pass_and_are_used(week, tmp_path, capsys):
    ns = run_week(week, tmp_path)
    rec = recorded(tmp_path)
    for fn, name, var in EXERCISES[week]:
        assert rec[name]["status"] == "PASS", (name, rec[name]["message"])
        chosen = ns[var]
        assert chosen is ns[fn] or chosen == {name: ns[fn]}, f"week {week} does not use your {fn}"
    assert set(ns["implementation"].values()) == {"student"}
    assert "using your" in capsys.readouterr().out


@pytest.mark.parametrize("week, fn, name, var", ALL, ids=[a[1] for a in ALL])
def test_a_wrong_implementation_fails_with_its_first_mismatch_and_the_library_is_used(week, fn, name, var, tmp_path,
                                                                                       capsys):
    body, mismatch = WRONG[fn]
    ns = run_week(week, tmp_path, {fn: body})
    rec = recorded(tmp_path)
    assert rec[name]["status"] == "FAIL" and mismatch in rec[name]["message"], rec[name]
    out = capsys.readouterr().out
    assert f"FAIL  {name}: " in out and mismatch in out
    assert ns[var] is _library_choice(ns, var), f"a failed {fn} must not be used"
    assert ns["implementation"][fn] == "library"
    for other_fn, other, _ in EXERCISES[week]:   # the other exercise of the week is not affected
        if other != name:
            assert rec[other]["status"] == "PASS" and ns["implementation"][other_fn] == "student"


@pytest.mark.parametrize("week", sorted(EXERCISES))
def test_the_student_stub_is_todo_and_the_week_runs_on_the_library(week, tmp_path, capsys):
    ns = run_week(week, tmp_path, {fn: STUB for fn, _, _ in EXERCISES[week]})
    rec = recorded(tmp_path)
    for _, name, var in EXERCISES[week]:
        assert rec[name]["status"] == "TODO", rec[name]
        assert ns[var] is _library_choice(ns, var)
    assert set(ns["implementation"].values()) == {"library"}
    assert "(your self-check: TODO)" in capsys.readouterr().out


@pytest.mark.parametrize("week", sorted(EXERCISES))
def test_the_stub_here_is_the_student_editions_cell(week):
    """What these tests run as "the stub" is exactly what the student edition of the notebook holds."""
    build = pytest.importorskip("build_notebooks")
    if not hasattr(build, "student_source"):
        pytest.skip("this build has no student edition")
    for fn, _, _ in EXERCISES[week]:
        src = exercise_cells(week)[f"exercise:{fn}"]
        assert with_region(src, STUB) == build.student_source(src)
        assert BEGIN not in with_region(src, STUB) and "    raise NotImplementedError()" in with_region(src, STUB)


# ------------------------------------------------------------------ the stored cases
def test_the_stored_cases_reach_the_cases_that_matter():
    """The cases the wrong implementations above trip over are really in the stored files."""
    rel = json.loads(expected_path(6).read_text())["checks"]["compute_reliability"]["cases"]
    assert 0.3 in rel[2]["args"][0]["__array__"] and rel[2]["args"][2] == 10          # an exact bin edge
    thr = json.loads(expected_path(7).read_text())["checks"]["choose_threshold"]["cases"]
    assert any(c["args"][2] == "fpr" and c["args"][3] == 0.0 for c in thr)            # only "nobody positive" works
    splits = json.loads(expected_path(5).read_text())["checks"]["make_split_indices"]["cases"]
    halves = np.array(splits[3]["args"][0]["__array__"])
    assert splits[3]["args"][1] * np.sum(halves == 1) == 2.5                          # Python's round(2.5) == 2


# ------------------------------------------------------------------ the solutions give the library's numbers
def solutions(week: int) -> dict:
    """The instructor edition's functions of a week (exercise cells only, executed as written)."""
    ns: dict = {"__name__": "__notebook__"}
    for fn, _, _ in EXERCISES[week]:
        exec(compile(exercise_cells(week)[f"exercise:{fn}"], f"<week{week} {fn}>", "exec"), ns)
    return ns


def test_the_solutions_reproduce_the_librarys_numbers_bit_for_bit(tmp_path):
    """The instructor edition reports what the library would (so its smoke anchors hold), through the hooks."""
    import torch

    from medssl.calibration import softmax
    from medssl.data import load_splits
    from medssl.decisions import analyse_predictions
    from medssl.models import build_model, model_from_encoder, save_encoder
    from medssl.probe import DownstreamConfig, extract_features, finetune, linear_probe
    from medssl.registry import get_spec
    from medssl.robustness import evaluate_shifts

    spec, root = get_spec("synthetic"), tmp_path / "data"
    splits = load_splits("synthetic", root=root)
    torch.manual_seed(0)
    enc = save_encoder(build_model("smallcnn", 2, 1), tmp_path / "ssl_encoder.pt")
    w5, w6, w7, w8 = (solutions(w) for w in (5, 6, 7, 8))
    # Week 5: the same labelled images and bit-identical probe outputs
    feats = extract_features(model_from_encoder(enc, 2, finetune="head"), splits)
    lib = linear_probe(feats, splits, spec, 0.1, 42, tmp_path / "lib")
    mine = linear_probe(feats, splits, spec, 0.1, 42, tmp_path / "mine", sampler=w5["make_split_indices"],
                        probe_fn=w5["train_linear_probe"])
    assert np.array_equal(lib["_indices"], mine["_indices"]) and lib["probe"]["C"] == mine["probe"]["C"]
    assert np.array_equal(lib["_test_logits"], mine["_test_logits"]) and lib["ece"] == mine["ece"]
    # Week 6: the same fine-tuned weights; the same ECE and bins from the test probabilities
    cfg = DownstreamConfig("synthetic", encoder=str(enc), root=str(root), epochs=2, min_steps=0, device="cpu",
                           progress=False)
    a = finetune("ssl", splits, spec, cfg, 0.1, 42, torch.device("cpu"))
    b = finetune("ssl", splits, spec, cfg, 0.1, 42, torch.device("cpu"), optimizer_fn=w6["finetune_optimizer"])
    assert all(torch.equal(x, y) for x, y in zip(a["_model"].state_dict().values(), b["_model"].state_dict().values()))
    p = softmax(b["_test_logits"])[:, spec.positive_class]
    y = (splits["test"].labels == spec.positive_class).astype(int)
    assert w6["compute_reliability"](p, y, 15)["ece"] == pytest.approx(b["ece"], abs=1e-12)
    # Week 7: the same operating points and the same error gallery
    kw = dict(val_logits=a["_val_logits"], val_labels=splits["val"].labels, test_logits=a["_test_logits"],
              test_labels=splits["test"].labels, spec=spec, decision_point="target_tpr")
    lib7 = analyse_predictions(out_dir=tmp_path / "d-lib", **kw)
    mine7 = analyse_predictions(out_dir=tmp_path / "d-mine", threshold_fn=w7["choose_threshold"],
                                errors_fn=w7["collect_high_conf_errors"], **kw)
    assert {n: q["threshold"] for n, q in lib7["points"].items()} == {n: q["threshold"] for n, q in
                                                                       mine7["points"].items()}
    assert lib7["errors"].equals(mine7["errors"])
    # Week 8: the same robustness table
    lib8 = evaluate_shifts(a["_model"], splits["test"], splits["val"], spec, perturbations=["brightness_contrast"])
    mine8 = evaluate_shifts(a["_model"], splits["test"], splits["val"], spec, perturbations=["brightness_contrast"],
                            perturbation_fns={"brightness_contrast": w8["brightness_contrast"]})
    assert lib8["table"].equals(mine8["table"])
