"""The library's hooks for the notebooks' exercises (Weeks 5-8): a function passed in is the one really used.

* ``sampler`` (probe.run / label_subset / efficiency.run_grid): its indices are exactly the images every method
  trains on, the supervised comparison included (read back from the saved file);
* ``probe_fn`` (probe.linear_probe): the reported probe metrics come from its probabilities;
* ``optimizer_fn`` (train.fit via probe.finetune): the optimizer it returns is the one that trains;
* ``threshold_fn`` / ``errors_fn`` (decisions.analyse_predictions): the reported operating points use its
  thresholds, the gallery its selection;
* ``perturbation_fns`` (robustness.evaluate_shifts): the robustness table uses its images.

Choose on validation, report on test: the functions that make a choice (sampler, probe, threshold) never
see the test split's labels -- run on copies of the data whose test labels (or images) differ, everything
they are given is identical (see tests/test_selection_invariance.py for the library's own choices).
Without a hook, every default path is the one the existing tests pin down.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_selection_invariance import KEY, VARIANTS, assert_test_moved, canon, write_copies

from medssl.calibration import softmax
from medssl.data import load_splits
from medssl.decisions import (
    analyse_predictions,
    analyse_run,
    binary_scores,
    high_confidence_errors,
    metrics_at_threshold,
    youden_threshold,
)
from medssl.efficiency import GridConfig, run_grid
from medssl.errors import ConfigError
from medssl.models import build_model, model_from_encoder, save_encoder
from medssl.probe import DownstreamConfig, extract_features, finetune, label_subset, linear_probe
from medssl.probe import run as probe_run
from medssl.registry import get_spec
from medssl.robustness import SEVERITIES, evaluate_shifts
from medssl.train import TrainConfig
from medssl.train import run as train_run

SPEC = get_spec("synthetic")   # binary, positive class 0


@pytest.fixture
def encoder_file(tmp_path):
    torch.manual_seed(0)
    return save_encoder(build_model("smallcnn", 2, 1), tmp_path / "enc" / "ssl_encoder.pt")


@pytest.fixture
def splits(synth_root):
    return load_splits("synthetic", root=synth_root)


def _cfg(root, encoder, **kw) -> DownstreamConfig:
    base = dict(encoder=str(encoder), root=str(root), fractions=[0.1], epochs=1, min_steps=0, batch_size=32,
                progress=False, device="cpu")
    return DownstreamConfig("synthetic", **(base | kw))


def every_seventh(labels, frac, seed, save_dir):
    """A sampler the library would never draw: every 7th image of each class."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[::7] for c in np.unique(labels)]))


# ------------------------------------------------------------------ sampler
def test_sampler_indices_are_the_images_every_method_trains_on(encoder_file, synth_root, splits, tmp_path):
    seen = []

    def spy(labels, frac, seed, save_dir):
        seen.append((labels.copy(), frac, seed, save_dir))
        return every_seventh(labels, frac, seed, save_dir)

    want = every_seventh(splits["train"].labels, 0.1, 42, None)
    assert not np.array_equal(want, label_subset(splits["train"], 0.1, 42, None))   # not the library's draw
    out = tmp_path / "down"
    res = probe_run(_cfg(synth_root, encoder_file), out, do_finetune=True, sampler=spy)
    for name in ("probe", "finetune"):
        assert np.array_equal(np.load(out / f"{name}_predictions_10pct.npz")["train_indices"], want)
        assert res[name][0]["custom"]["sampler"] == "spy" and res[name][0]["n_labels"] == len(want)
    assert json.loads((out / "downstream_config.json").read_text())["custom"] == {"sampler": "spy"}
    # the sampler gets a copy of the training labels only (and the folder to save in)
    assert seen and all(np.array_equal(lab, splits["train"].labels) and f == 0.1 and s == 42
                        and d == str(out / "indices") for lab, f, s, d in seen)
    # the supervised comparison reads the saved file back: it trains on exactly these images
    saved = json.loads((out / "indices" / "indices_frac=0.1_seed=42.json").read_text())
    assert saved["indices"] == want.tolist() and saved["drawn_by"] == "spy"
    sup = train_run(TrainConfig("synthetic", epochs=1, label_frac=0.1, seed=42, root=str(synth_root),
                                indices_dir=str(out / "indices"), device="cpu", progress=False), tmp_path / "sup")
    assert sup["n_train_labels"] == len(want)
    assert np.array_equal(np.load(tmp_path / "sup" / "predictions.npz")["train_indices"], want)


def test_a_sampler_that_returns_no_valid_subset_is_refused(splits, tmp_path):
    out = tmp_path / "indices"
    with pytest.raises(ConfigError, match="distinct indices"):
        label_subset(splits["train"], 0.1, 0, out, sampler=lambda lab, f, s, d: np.array([3, 3, 5]))
    with pytest.raises(ConfigError, match="integer indices"):
        label_subset(splits["train"], 0.1, 0, out, sampler=lambda lab, f, s, d: np.array([0.5, 1.5]))
    assert not out.exists()   # nothing saved for a refused subset


# ------------------------------------------------------------------ probe_fn
def test_probe_fn_produces_the_reported_probe_numbers(encoder_file, splits):
    feats = extract_features(model_from_encoder(encoder_file, 2, finetune="head"), splits)
    calls = []

    def first_feature(train_feats, train_labels, val_feats, val_labels, c_grid, seed):
        mid = float(np.median(train_feats[:, 0]))

        def predict(x):
            z = 1 / (1 + np.exp(-(x[:, 0] - mid)))
            return np.stack([1 - z, z], 1)
        calls.append((train_feats, train_labels, val_feats, val_labels, c_grid, seed, predict))
        return predict, {"C": "none", "rule": "sigmoid of feature 0"}

    res = linear_probe(feats, splits, SPEC, 0.1, 3, None, probe_fn=first_feature)
    predict = calls[0][-1]
    np.testing.assert_allclose(softmax(res["_test_logits"]), predict(feats["test"]), atol=1e-6)
    np.testing.assert_allclose(softmax(res["_val_logits"]), predict(feats["val"]), atol=1e-6)
    p0 = predict(feats["test"])[:, 0]
    assert res["auroc"] == pytest.approx(roc_auc_score(splits["test"].labels == 0, p0), abs=1e-6)
    assert res["probe"] == {"C": "none", "rule": "sigmoid of feature 0"} and res["custom"] == {"probe_fn":
                                                                                              "first_feature"}
    # it was fitted on the labelled subset and validation only, with the config's grid and seed
    tr_x, tr_y, va_x, va_y, c_grid, seed, _ = calls[0]
    idx = res["_indices"]
    assert np.array_equal(tr_x, feats["train"][idx]) and np.array_equal(tr_y, splits["train"].labels[idx])
    assert np.array_equal(va_x, feats["val"]) and np.array_equal(va_y, splits["val"].labels)
    assert seed == 3 and len(c_grid) == 5
    # default path: the library's logistic regression, no "custom" entry
    assert "custom" not in linear_probe(feats, splits, SPEC, 0.1, 3, None)


def test_probe_fn_must_give_probabilities_of_the_right_shape(encoder_file, splits):
    feats = extract_features(model_from_encoder(encoder_file, 2, finetune="head"), splits)

    def one_column(*a, **k):
        return (lambda x: np.ones((len(x), 1))), {"C": 1.0}
    with pytest.raises(ConfigError, match=r"probabilities of shape \(100, 2\)"):
        linear_probe(feats, splits, SPEC, 0.1, 0, None, probe_fn=one_column)


# ------------------------------------------------------------------ optimizer_fn
def test_optimizer_fn_is_the_optimizer_that_trains(encoder_file, synth_root, splits):
    made = []

    def frozen_encoder_sgd(model, head_lr, encoder_lr, weight_decay):
        made.append((head_lr, encoder_lr, weight_decay))
        return torch.optim.SGD([{"params": model.encoder.parameters(), "lr": 0.0},
                                {"params": model.head.parameters(), "lr": 0.5}], lr=0.5)

    cfg = _cfg(synth_root, encoder_file, lr=3e-3, encoder_lr=2e-4, epochs=2)
    res = finetune("ssl", splits, SPEC, cfg, 0.1, 0, torch.device("cpu"), optimizer_fn=frozen_encoder_sgd)
    assert made == [(3e-3, 2e-4, cfg.weight_decay)] and res["custom"] == {"optimizer_fn": "frozen_encoder_sgd"}
    # its encoder group had learning rate 0: the encoder's weights are still the SSL checkpoint's
    start = model_from_encoder(encoder_file, 2)
    assert all(torch.equal(a, b) for a, b in zip(start.encoder.parameters(), res["_model"].encoder.parameters()))
    assert res["epochs"] == 2 and 1 <= res["best_epoch"] <= 2     # the library still drives epochs and selection


def test_optimizer_fn_must_train_every_parameter_once(encoder_file, synth_root, splits):
    cfg = _cfg(synth_root, encoder_file)
    with pytest.raises(ConfigError, match="exactly one parameter group"):
        finetune("ssl", splits, SPEC, cfg, 0.1, 0, torch.device("cpu"),
                 optimizer_fn=lambda model, **kw: torch.optim.AdamW(model.encoder.parameters()))
    with pytest.raises(ConfigError, match="must return a torch.optim.Optimizer"):
        finetune("ssl", splits, SPEC, cfg, 0.1, 0, torch.device("cpu"), optimizer_fn=lambda model, **kw: None)


# ------------------------------------------------------------------ threshold_fn / errors_fn
def _logits(seed: int = 0):
    rng = np.random.default_rng(seed)
    val_y, test_y = rng.integers(0, 2, 120), rng.integers(0, 2, 100)

    def logits(y):
        margin = 1.5 * (y == 0) - 0.75 + rng.normal(0, 1.0, len(y))   # class 0 is positive
        return np.stack([margin, np.zeros(len(y))], 1)
    return logits(val_y), val_y, logits(test_y), test_y


def test_threshold_fn_sets_the_reported_operating_points_from_validation_only(tmp_path):
    vl, vy_lab, tl, ty_lab = _logits()
    seen = []

    def fixed(scores, y, metric, target):
        seen.append((scores.copy(), y.copy(), metric, target))
        return 0.42 if metric == "tpr" else 0.77

    rep = analyse_predictions(vl, vy_lab, tl, ty_lab, SPEC, tmp_path / "a", decision_point="target_tpr",
                              threshold_fn=fixed)
    vs, vy = binary_scores(softmax(vl), vy_lab, SPEC)
    ts, ty = binary_scores(softmax(tl), ty_lab, SPEC)
    pts = rep["points"]
    assert pts["target_tpr"]["threshold"] == 0.42 and pts["target_fpr"]["threshold"] == 0.77
    assert pts["target_tpr"]["test"] == metrics_at_threshold(ts, ty, 0.42, 0)
    assert pts["target_fpr"]["test"] == metrics_at_threshold(ts, ty, 0.77, 0)
    assert rep["threshold"] == 0.42 and "(by fixed)" in pts["target_tpr"]["rule"]
    assert "(by fixed)" in (tmp_path / "a" / "operating_point_table.md").read_text()
    assert rep["params"]["custom"] == {"threshold_fn": "fixed"}
    # it saw the validation scores and labels, nothing else; the other points are still the library's
    assert [(m, t) for _, _, m, t in seen] == [("tpr", 0.9), ("fpr", 0.1)]
    assert all(np.array_equal(s, vs) and np.array_equal(y, vy) for s, y, _, _ in seen)
    assert pts["youden"]["threshold"] == youden_threshold(vs, vy)
    # the gallery's errors are taken at the chosen threshold
    want = high_confidence_errors(ts, ty, 0.42, 5)
    assert [(e["kind"], e["index"]) for e in rep["errors"].to_dict("records")] == \
        [(e["kind"], e["index"]) for e in want.to_dict("records")]
    # without threshold_fn: the library's rules and no "custom" entry
    plain = analyse_predictions(vl, vy_lab, tl, ty_lab, SPEC, tmp_path / "b")
    assert "custom" not in plain["params"] and "(by" not in plain["points"]["target_tpr"]["rule"]


def test_errors_fn_fills_the_gallery_and_its_selection_is_checked(tmp_path):
    vl, vy_lab, tl, ty_lab = _logits(1)

    def least_confident(scores, y, t, k):   # legal, but the opposite ranking from the library's
        called = scores >= t
        fp, fn = np.flatnonzero(called & (y == 0)), np.flatnonzero(~called & (y == 1))
        return {"FP": fp[np.argsort(scores[fp], kind="stable")][:2], "FN": fn[np.argsort(-scores[fn])][:2]}

    rep = analyse_predictions(vl, vy_lab, tl, ty_lab, SPEC, tmp_path / "a", errors_fn=least_confident)
    ts, ty = binary_scores(softmax(tl), ty_lab, SPEC)
    sel = least_confident(ts, ty, rep["threshold"], 5)
    errs = rep["errors"]
    assert errs.loc[errs["kind"] == "FP", "index"].tolist() == sel["FP"].tolist()
    assert errs.loc[errs["kind"] == "FN", "index"].tolist() == sel["FN"].tolist()
    assert errs.loc[errs["kind"] == "FP", "p_positive"].tolist() == ts[sel["FP"]].tolist()
    assert rep["params"]["custom"] == {"errors_fn": "least_confident"}
    summary = json.loads((tmp_path / "a" / "decisions_summary.json").read_text())
    assert [e["index"] for e in summary["errors"]] == sel["FP"].tolist() + sel["FN"].tolist()
    # a selection that is not what it claims to be is refused
    with pytest.raises(ConfigError, match="is not a FP"):
        analyse_predictions(vl, vy_lab, tl, ty_lab, SPEC, tmp_path / "b",
                            errors_fn=lambda s, y, t, k: {"FP": np.flatnonzero(y == 1)[:1], "FN": []})
    with pytest.raises(ConfigError, match="at most 5 distinct"):
        analyse_predictions(vl, vy_lab, tl, ty_lab, SPEC, tmp_path / "c",
                            errors_fn=lambda s, y, t, k: {"FP": [], "FN": np.flatnonzero(y == 1)})


# ------------------------------------------------------------------ perturbation_fns
def test_perturbation_fns_make_the_robustness_rows(splits):
    torch.manual_seed(0)
    model = build_model("smallcnn", 2, 1).eval()
    calls = []

    def unchanged(images, severity, seed=0):
        calls.append(severity)
        return images.copy()

    res = evaluate_shifts(model, splits["test"], splits["val"], SPEC, perturbations=["brightness_contrast",
                                                                                    "gaussian_blur"],
                          perturbation_fns={"brightness_contrast": unchanged})
    table = res["table"]
    clean = table[table["perturbation"] == "clean"].iloc[0]
    rows = table[table["perturbation"] == "brightness_contrast"]
    assert len(rows) == 3 and (rows["acc"] == clean["acc"]).all() and (rows["auroc"] == clean["auroc"]).all()
    assert (rows["val_d_auroc"] == 0).all()
    assert sorted(set(calls)) == sorted(SEVERITIES["brightness_contrast"].values())
    assert res["params"]["custom"] == {"brightness_contrast": "unchanged"}
    # the library's own brightness_contrast does change the images (so the equality above is the hook's doing)
    plain = evaluate_shifts(model, splits["test"], splits["val"], SPEC, perturbations=["brightness_contrast"])
    assert (plain["table"]["auroc"].iloc[1:] != clean["auroc"]).any() and "custom" not in plain["params"]
    with pytest.raises(ConfigError, match="must return uint8 images"):
        evaluate_shifts(model, splits["test"], splits["val"], SPEC, perturbations=["brightness_contrast"],
                        perturbation_fns={"brightness_contrast": lambda x, s, seed=0: x / 255.0})
    with pytest.raises(ConfigError, match="can only replace known perturbations"):
        evaluate_shifts(model, splits["test"], splits["val"], SPEC, perturbation_fns={"my_shift": unchanged})


# ------------------------------------------------------------------ the label-efficiency grid
def test_grid_uses_and_records_the_sampler_and_probe(encoder_file, synth_root, tmp_path):
    used = []

    def logistic(train_feats, train_labels, val_feats, val_labels, c_grid, seed):
        from sklearn.linear_model import LogisticRegression

        used.append(len(train_labels))
        clf = LogisticRegression(max_iter=500).fit(train_feats, train_labels)
        return clf.predict_proba, {"C": 1.0}

    cfg = GridConfig("synthetic", encoder=str(encoder_file), root=str(synth_root), fractions=[0.1], seeds=[0],
                     methods=["probe"], progress=False, device="cpu")
    out = run_grid(cfg, tmp_path / "grid", sampler=every_seventh, probe_fn=logistic)["out"]
    run = json.loads((out / "runs" / "probe_frac=0.1_seed=0.json").read_text())
    n = len(every_seventh(load_splits("synthetic", root=synth_root)["train"].labels, 0.1, 0, None))
    assert run["n_labels"] == n and used == [n] and run["probe"] == {"C": 1.0}
    assert json.loads((out / "grid_config.json").read_text())["custom"] == {"sampler": "every_seventh",
                                                                            "probe_fn": "logistic"}


# ------------------------------------------------------------------ choose on validation, report on test
@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return write_copies(tmp_path_factory.mktemp("hook-invariance"))


def test_sampler_and_probe_fn_never_see_the_test_split(roots, tmp_path):
    torch.manual_seed(0)
    encoder = save_encoder(build_model("smallcnn", 2, 1), tmp_path / "enc" / "ssl_encoder.pt")
    seen, tests = {}, {}
    for v, root in roots.items():
        given = seen[v] = {"sampler": [], "fit": [], "predict": []}

        def sampler(labels, frac, seed, save_dir, given=given):
            given["sampler"].append([labels.tolist(), frac, seed])
            return np.sort(np.concatenate([np.flatnonzero(labels == c)[:4] for c in np.unique(labels)]))

        def probe(train_feats, train_labels, val_feats, val_labels, c_grid, seed, given=given):
            from sklearn.linear_model import LogisticRegression

            given["fit"].append([train_feats, train_labels, val_feats, val_labels, list(c_grid), seed])
            clf = LogisticRegression(max_iter=500).fit(train_feats, train_labels)

            def predict(x):
                given["predict"].append(x)
                return clf.predict_proba(x)
            return predict, {"C": 1.0}

        cfg = DownstreamConfig(KEY, encoder=str(encoder), fractions=[0.5], root=str(root), device="cpu",
                               progress=False)
        res = probe_run(cfg, tmp_path / v, sampler=sampler, probe_fn=probe)["probe"][0]
        tests[v] = [res["auroc"], res["acc"]]
    for v in VARIANTS[1:]:
        assert canon(seen[v]["sampler"]) == canon(seen["original"]["sampler"])
        assert canon(seen[v]["fit"]) == canon(seen["original"]["fit"]), f"the probe's fit saw the test {v}"
    # its predict function gets features only (of val and test): no labels, so the label swap changes nothing
    assert canon(seen["labels"]["predict"]) == canon(seen["original"]["predict"])
    assert_test_moved(tests)


def test_threshold_fn_never_sees_the_test_split(tmp_path):
    vl, vy, tl, ty = _logits(2)
    copies = {"original": (tl, ty), "labels": (tl, 1 - ty), "images": (_logits(3)[2], ty)}
    seen, tests = {}, {}
    for v, (t_logits, t_labels) in copies.items():
        run = tmp_path / v
        run.mkdir()
        np.savez(run / "predictions.npz", val_logits=vl, val_labels=vy, test_logits=t_logits, test_labels=t_labels)
        (run / "config.json").write_text(json.dumps({"config": {"dataset": "synthetic"}}))
        given = seen[v] = []

        def spy(scores, y, metric, target, given=given):
            given.append([scores, y, metric, target])
            return float(np.quantile(scores, 0.3 if metric == "tpr" else 0.8))

        rep = analyse_run(run, tmp_path / f"{v}-out", with_images=False, threshold_fn=spy)
        tests[v] = {n: p["test"] for n, p in rep["points"].items()}
    for v in VARIANTS[1:]:
        assert canon(seen[v]) == canon(seen["original"]), f"threshold_fn saw the test {v}"
    assert_test_moved(tests)
