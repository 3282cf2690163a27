"""Choose on validation, report on test: no selection step may look at the test split.

Three copies of one small synthetic data set are written in MedMNIST's npz layout, so every
pipeline loads them through its normal data path:

* ``original``;
* ``labels``: every test label replaced by the other class (train and val untouched);
* ``images``: every test image replaced by another image (train and val untouched).

Each pipeline runs once on each copy. Every choice it makes -- best epoch, early-stopping epoch,
the validation history it chose from, the probe's C, the temperature, the operating-point
thresholds, the robustness suite's Youden threshold, the recipe's checkpoint, the Week 3/6
recommended baseline -- must be bit-identical across the copies, and the test metrics must move
(the proof that the swapped split reached the pipeline).

Flipping every binary test label turns a test AUROC ``a`` into ``1 - a``, so a step that
maximised a test metric would pick its argmin instead: the swap catches every "chose on test"
mistake as long as the candidates differ on test. Labels are noisy on purpose, so that no
metric saturates and the candidates do differ.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medssl.course import notebook as ch
from medssl.data import synthetic_arrays, write_npz
from medssl.decisions import analyse_run
from medssl.efficiency import GridConfig, run_grid
from medssl.models import build_model, save_encoder
from medssl.paradigms import RecipeConfig, run_recipe
from medssl.probe import DownstreamConfig
from medssl.probe import run as probe_run
from medssl.registry import get_spec
from medssl.robustness import evaluate_run_shifts
from medssl.utils import read_jsonl

KEY = "synthetic"                  # binary, positive class 0 (like BreastMNIST)
N = {"train": 16, "val": 24, "test": 24}
EPOCHS, BATCH, PATIENCE = 3, 16, 1
VARIANTS = ("original", "labels", "images")
SWAPPED = VARIANTS[1:]
WEEK3_VARIANTS = {"resnet18_head": dict(finetune="head", aug="none", lr=1e-2),
                  "resnet18_all_basic": dict(finetune="all", aug="none", lr=3e-3)}
PERTURBATIONS = ("gaussian_noise", "gaussian_blur", "brightness_contrast")


# ------------------------------------------------------------------ data
def _noisy(labels: np.ndarray, rng: np.random.Generator, rate: float = 0.15) -> np.ndarray:
    flip = rng.random(len(labels)) < rate
    return np.where(flip[:, None], 1 - labels, labels).astype(np.uint8)


def write_copies(base: Path) -> dict[str, Path]:
    """The three data roots; train and val are byte-identical, only the test split differs."""
    spec = get_spec(KEY)
    full = synthetic_arrays(spec, 28)
    rng = np.random.default_rng(7)
    arrays = {}
    for split, n in N.items():
        arrays[f"{split}_images"] = full[f"{split}_images"][:n]
        arrays[f"{split}_labels"] = _noisy(full[f"{split}_labels"][:n], rng)
    n_test = N["test"]
    changed = {
        "original": {},
        "labels": {"test_labels": (1 - arrays["test_labels"]).astype(np.uint8)},
        "images": {"test_images": full["test_images"][n_test:2 * n_test]},
    }
    roots = {}
    for variant in VARIANTS:
        root = base / variant / "data"
        root.mkdir(parents=True)
        write_npz(root / spec.filename(28), {**arrays, **changed[variant]})
        roots[variant] = root
    assert not np.array_equal(changed["images"]["test_images"], arrays["test_images"])
    return roots


def canon(obj) -> str:
    """Exact, order-independent text of a nested result (floats by repr, so 'equal' means bit-identical)."""
    def conv(o):
        if isinstance(o, pd.DataFrame):
            return conv(o.to_dict(orient="records"))
        if isinstance(o, dict):
            return {str(k): conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        if isinstance(o, np.ndarray):
            return conv(o.tolist())
        if isinstance(o, (np.floating, float)):
            return "nan" if math.isnan(o) else repr(float(o))
        if isinstance(o, (np.integer, np.bool_)):
            return o.item()
        return o
    return json.dumps(conv(obj), sort_keys=True)


def assert_choices_identical(choices: dict[str, object]) -> None:
    ref = canon(choices["original"])
    for variant in SWAPPED:
        assert canon(choices[variant]) == ref, f"a selection changed when the test {variant} were swapped"


def assert_test_moved(tests: dict[str, object]) -> None:
    ref = canon(tests["original"])
    for variant in SWAPPED:
        assert canon(tests[variant]) != ref, f"test metrics did not change with the test {variant}: swap not applied?"


def val_history(run_dir: Path) -> list[dict]:
    """The logged validation history a run chose its checkpoint from (wall-clock times dropped)."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_jsonl(run_dir / "val_log.jsonl")]


# ------------------------------------------------------------------ one run of every pipeline per copy
@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return write_copies(tmp_path_factory.mktemp("invariance"))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_encoder(build_model("smallcnn", 2, 1), tmp_path_factory.mktemp("encoder") / "ssl_encoder.pt")


@pytest.fixture(scope="module")
def week_runs(roots) -> dict[str, dict]:
    """Week 3's variants through ``WeekRun.train`` (medssl.train.run) and Week 6's read-back of the choice."""
    out = {}
    for variant, root in roots.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MEDMNIST_ROOT", str(root))
            common = dict(dataset=KEY, student="inv", model="smallcnn", epochs=EPOCHS, batch_size=BATCH,
                          results_root=root.parent / "course" / "results", smoke=False, overwrite=True, tasks=None)
            wk = ch.WeekRun(3, **common)
            results = {name: wk.train(name, device="cpu", patience=PATIENCE, **kw)
                       for name, kw in WEEK3_VARIANTS.items()}
            for name, res in results.items():
                wk.publish_metrics(f"metrics_{name}.json", res)
            wk6 = ch.WeekRun(6, **common)
            week3 = wk6.previous(3, what="supervised baselines")
            w3 = {p.stem.replace("metrics_", ""): ch.load_json(p) for p in sorted(week3.glob("metrics_*.json"))}
            out[variant] = {"results": results, "recommended": ch.best_by_val_auroc(results),
                            "week6_baseline": ch.best_by_val_auroc(w3),
                            "run_dirs": {name: wk.run_dir(name) for name in results}}
    return out


def test_train_run_best_and_early_stopping_epochs_ignore_the_test_split(week_runs):
    choices = {v: {name: {"best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                          "early_stopped": r.get("early_stopped"), "val_metrics": r["val_metrics"],
                          "history": val_history(week_runs[v]["run_dirs"][name])}
                   for name, r in week_runs[v]["results"].items()} for v in VARIANTS}
    assert_choices_identical(choices)
    assert_test_moved({v: {n: [r["acc"], r["auroc"], r["ece"]] for n, r in week_runs[v]["results"].items()}
                       for v in VARIANTS})
    # the choices are not degenerate: validation AUROC moves between epochs, and early stopping fires
    hist = choices["original"]["resnet18_all_basic"]["history"]
    assert len({row["val_auroc"] for row in hist}) > 1
    assert any(c["early_stopped"] for c in choices["original"].values())


def test_week3_recommendation_and_week6_baseline_ignore_the_test_split(week_runs):
    assert_choices_identical({v: [week_runs[v]["recommended"], week_runs[v]["week6_baseline"]] for v in VARIANTS})
    # both readings of the choice agree, and the variants really differ on test (so choosing on test would flip)
    r = week_runs["original"]
    assert r["recommended"] == r["week6_baseline"]
    aurocs = [res["auroc"] for res in r["results"].values()]
    assert aurocs[0] != aurocs[1]


@pytest.fixture(scope="module")
def decisions_runs(week_runs, roots, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("decisions")
    return {v: analyse_run(week_runs[v]["run_dirs"]["resnet18_all_basic"], base / v, root=str(roots[v]))
            for v in VARIANTS}


def test_temperature_and_operating_points_ignore_the_test_split(decisions_runs):
    choices = {v: {"temperature": r["calibration"]["fit"], "val_nll": [r["calibration"]["val_nll_before"],
                                                                     r["calibration"]["val_nll_after"]],
                   "points": {name: [p["threshold"], p["val"]] for name, p in r["points"].items()},
                   "decision_threshold": r["threshold"],
                   "val_curves": [r["curves"]["val_auroc"], r["curves"]["val_average_precision"]]}
               for v, r in decisions_runs.items()}
    assert_choices_identical(choices)
    assert_test_moved({v: [r["calibration"]["after"], {n: p["test"] for n, p in r["points"].items()}]
                       for v, r in decisions_runs.items()})


@pytest.fixture(scope="module")
def robustness_runs(week_runs, roots) -> dict[str, dict]:
    return {v: evaluate_run_shifts(week_runs[v]["run_dirs"]["resnet18_all_basic"], None, root=str(roots[v]),
                                   perturbations=PERTURBATIONS)
            for v in VARIANTS}


def test_robustness_temperature_and_youden_threshold_ignore_the_test_split(robustness_runs):
    choices = {v: {"temperature": r["temperature"], "threshold": r["threshold"], "source": r["threshold_source"]}
               for v, r in robustness_runs.items()}
    assert choices["original"]["source"] == "Youden J on clean validation"
    assert_choices_identical(choices)
    assert_test_moved({v: r["table"] for v, r in robustness_runs.items()})


def test_robustness_worst_shift_is_chosen_on_validation(robustness_runs):
    assert_choices_identical({v: r["worst"] for v, r in robustness_runs.items()})


@pytest.fixture(scope="module")
def probe_runs(roots, encoder, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("probe")
    out = {}
    for v, root in roots.items():
        cfg = DownstreamConfig(KEY, encoder=str(encoder), fractions=[0.5], epochs=EPOCHS, min_steps=0,
                               batch_size=8, root=str(root), device="cpu", progress=False)
        out[v] = probe_run(cfg, base / v, do_finetune=True)
    return out


def test_probe_c_and_finetune_epoch_ignore_the_test_split(probe_runs):
    choices = {v: {"probe": [r["probe"][0]["probe"], r["probe"][0]["val_metrics"]],
                   "finetune": [r["finetune"][0]["best_epoch"], r["finetune"][0]["val_metrics"]]}
               for v, r in probe_runs.items()}
    assert_choices_identical(choices)
    assert_test_moved({v: [r["probe"][0]["auroc"], r["finetune"][0]["auroc"]] for v, r in probe_runs.items()})
    scores = choices["original"]["probe"][0]["val_score_by_C"]
    assert len(set(scores.values())) > 1, "every C scores the same: the check cannot see a wrong choice"


def test_label_efficiency_grid_probe_ignores_the_test_split(roots, encoder, tmp_path):
    runs = {}
    for v, root in roots.items():
        cfg = GridConfig(KEY, encoder=str(encoder), root=str(root), fractions=[0.5], seeds=[0], methods=["probe"],
                         epochs=1, min_steps=0, batch_size=8, progress=False, device="cpu")
        out = run_grid(cfg, tmp_path / v)["out"]
        runs[v] = json.loads(next((out / "runs").glob("probe_*.json")).read_text())
    assert_choices_identical({v: [r["probe"], r["val_metrics"]] for v, r in runs.items()})
    assert_test_moved({v: [r["auroc"], r["acc"]] for v, r in runs.items()})


@pytest.fixture(scope="module")
def recipe_runs(roots, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("recipe")
    out = {}
    for v, root in roots.items():
        cfg = RecipeConfig(KEY, arch="smallcnn", stem="auto", pretrained=False, epochs=EPOCHS, batch_size=BATCH,
                           patience=PATIENCE, tta="flips", grid_images=4, root=str(root), device="cpu",
                           progress=False)
        rec = run_recipe(cfg, base / v)
        out[v] = {"record": rec, "history": val_history(base / v / "seed42")}
    return out


def test_paradigms_recipe_checkpoint_and_early_stop_ignore_the_test_split(recipe_runs):
    choices = {v: {"rows": [{k: row[k] for k in ("best_epoch", "epochs_run", "early_stopped")}
                            for row in r["record"]["rows"]], "history": r["history"]}
               for v, r in recipe_runs.items()}
    assert_choices_identical(choices)
    assert_test_moved({v: [[row["acc"], row["auroc"], row["acc_tta"]] for row in r["record"]["rows"]]
                       for v, r in recipe_runs.items()})


def test_recommended_baseline_does_not_depend_on_the_order_variants_are_listed():
    tied = {"resnet18_head": {"val_metrics": {"auroc": 0.75, "loss": 0.60}, "auroc": 0.9},
            "resnet18_all_basic": {"val_metrics": {"auroc": 0.75, "loss": 0.50}, "auroc": 0.6}}
    week3_order = ch.best_by_val_auroc(tied)
    week6_order = ch.best_by_val_auroc(dict(sorted(tied.items())))
    assert week3_order == week6_order == "resnet18_all_basic"          # the lower validation loss wins the tie
    # an exact tie in loss too goes to the alphabetically first name, in either order; test metrics never count
    full = {"b": {"val_metrics": {"auroc": 0.75, "loss": 0.5}, "auroc": 0.9},
            "a": {"val_metrics": {"auroc": 0.75, "loss": 0.5}, "auroc": 0.1}}
    assert ch.best_by_val_auroc(full) == ch.best_by_val_auroc(dict(reversed(full.items()))) == "a"
    # a higher validation AUROC still wins outright, whatever its loss; an undefined AUROC loses
    assert ch.best_by_val_auroc({**tied, "z": {"val_metrics": {"auroc": 0.76, "loss": 9.0}}}) == "z"
    assert ch.best_by_val_auroc({**tied, "a": {"val_metrics": {"auroc": float("nan"), "loss": 0.0}}}) == \
        "resnet18_all_basic"
