"""Week 7's decisions module, the parts its other tests leave open: the multi-class error table record, run
folders with either config layout, the error for a missing run, and the command line (defaults, every option
reaching the analysis, the summary line)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medssl import decisions
from medssl.calibration import softmax
from medssl.errors import CheckpointError, ConfigError
from medssl.registry import get_spec

COLUMNS = ["kind", "rank", "index", "pred", "confidence", "p_true"]


def _tied_probs(n=260, seed=0):
    """Three-class probabilities whose wrong cases share only three confidence values (many ties)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    top = rng.choice([0.6, 0.7, 0.8], size=n)
    pred = (labels + rng.integers(0, 3, n)) % 3          # about a third right, two thirds wrong
    probs = np.empty((n, 3))
    for i in range(n):
        rest = (1 - top[i]) / 2
        probs[i] = rest
        probs[i, pred[i]] = top[i]
    return probs, labels


def test_top_label_errors_whole_record_with_ties_broken_by_index():
    probs, labels = _tied_probs()
    got = decisions.top_label_errors(probs, labels)                 # k defaults to 10
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = sorted((i for i in range(len(labels)) if pred[i] != labels[i]), key=lambda i: (-conf[i], i))
    assert len(wrong) > 100                                          # enough ties for an unstable sort to show
    want = pd.DataFrame([{"kind": "error", "rank": r, "index": i, "pred": int(pred[i]), "confidence": conf[i],
                          "p_true": probs[i, labels[i]]} for r, i in enumerate(wrong[:10], 1)], columns=COLUMNS)
    pd.testing.assert_frame_equal(got, want)
    assert len(decisions.top_label_errors(probs, labels, k=25)) == 25


def test_top_label_errors_without_errors_is_an_empty_table_with_the_columns():
    probs = np.eye(3)[[0, 1, 2, 1]] * 0.9 + 0.1 / 3
    got = decisions.top_label_errors(probs, np.array([0, 1, 2, 1]))
    assert got.empty and list(got.columns) == COLUMNS


def _run_folder(tmp_path, config_json, n=40):
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    y = rng.integers(0, 2, n)
    np.savez(run / "predictions.npz", val_logits=rng.normal(size=(n, 2)), val_labels=y,
             test_logits=rng.normal(size=(n, 2)), test_labels=y[::-1])
    if config_json is not None:
        (run / "config.json").write_text(json.dumps(config_json))
    return run


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_run_config_is_read_in_both_layouts(tmp_path, layout):
    cfg = {"dataset": "breastmnist", "size": 64, "root": "/data/medmnist"}
    run = _run_folder(tmp_path, {"config": cfg, "status": "done"} if layout == "nested" else cfg)
    pr = decisions.load_predictions(run)
    assert (pr.dataset, pr.size, pr.root) == ("breastmnist", 64, "/data/medmnist")
    assert pr.meta["config"] == cfg


def test_a_config_that_is_not_an_object_is_ignored(tmp_path):
    run = _run_folder(tmp_path, ["not", "a", "config"])
    with pytest.raises(ConfigError, match="cannot tell which dataset"):
        decisions.load_predictions(run)
    pr = decisions.load_predictions(run, dataset="pneumoniamnist")
    assert (pr.dataset, pr.size, pr.meta["config"]) == ("pneumoniamnist", 28, {})


def test_a_missing_run_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError) as exc:
        decisions.load_predictions(tmp_path / "nowhere")
    assert str(exc.value) == (f"{tmp_path / 'nowhere'} not found; pass a training run folder (with "
                              "predictions.npz), a predictions.npz file or a best.pt checkpoint.")


def test_cli_defaults():
    p = decisions.build_parser()
    assert p.prog == "python -m medssl.decisions"
    a = p.parse_args(["--run", "r", "--dataset", "breastmnist", "--out", "o"])
    assert (a.run, a.target_tpr, a.target_fpr, a.decision_point, a.k, a.n_bins, a.overwrite) == \
        ("r", 0.9, 0.1, "youden", 5, 15, False)
    for missing in (["--dataset", "breastmnist", "--out", "o"], ["--run", "r", "--dataset", "breastmnist"]):
        with pytest.raises(SystemExit):
            p.parse_args(missing)
    with pytest.raises(SystemExit):
        p.parse_args(["--run", "r", "--dataset", "breastmnist", "--out", "o", "--decision-point", "best"])


def _informative_run(tmp_path, root, dataset, seed, scale):
    """A run folder whose saved logits favour each image's true class of ``dataset``'s val/test splits (scaled by
    ``scale``, i.e. over-confident for scale > 1); returns it with the test logits and split."""
    from medssl.data import load_split

    val, test = load_split(dataset, "val", root=root), load_split(dataset, "test", root=root)
    k = get_spec(dataset).n_classes
    rng = np.random.default_rng(seed)
    vz, tz = rng.normal(size=(len(val), k)), rng.normal(size=(len(test), k))
    vz[np.arange(len(val)), val.labels] += 2.0
    tz[np.arange(len(test)), test.labels] += 2.0
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "predictions.npz", val_logits=vz * scale, val_labels=val.labels, test_logits=tz * scale,
             test_labels=test.labels)
    return run, (tz * scale, test)


def test_cli_passes_every_option_to_the_analysis_and_prints_its_numbers(tmp_path, synth_root, capsys):
    run, _ = _informative_run(tmp_path, synth_root, "synthetic", seed=1, scale=3)
    out = tmp_path / "w7"
    argv = ["--run", str(run), "--dataset", "synthetic", "--root", str(synth_root), "--out", str(out),
            "--target-tpr", "0.8", "--target-fpr", "0.2", "--decision-point", "max_f1", "--k", "2",
            "--n-bins", "10", "--device", "cpu"]
    assert decisions.main(argv) == 0
    s = json.loads((out / "decisions_summary.json").read_text())
    assert s["params"] | {"rule": None, "thresholds_chosen_on": None, "probabilities": None} == {
        "target_tpr": 0.8, "target_fpr": 0.2, "decision_point": "max_f1", "k": 2, "n_bins": 10,
        "rule": None, "thresholds_chosen_on": None, "probabilities": None}
    assert s["source"] == str(run) and s["dataset"] == "synthetic"
    assert s["threshold"] == s["points"]["max_f1"]["threshold"] and s["decision_point"] == "max_f1"
    assert sum(e["kind"] == "FP" for e in s["errors"]) <= 2 and sum(e["kind"] == "FN" for e in s["errors"]) <= 2
    assert "high_conf_error_gallery.png" in s["files"]                 # the images came from --root
    c = s["calibration"]
    assert capsys.readouterr().out.strip() == (
        f"[synthetic] T={c['temperature']:.3f} test ECE {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}"
        f" | max_f1 threshold {s['threshold']:.4f} -> {out}")
    # a second run into the same folder needs --overwrite, and then replaces it
    with pytest.raises(Exception, match="overwrite"):
        decisions.main(argv)
    assert decisions.main([*argv, "--overwrite", "--k", "1"]) == 0
    assert json.loads((out / "decisions_summary.json").read_text())["params"]["k"] == 1


def test_cli_on_a_multiclass_run_prints_no_threshold(tmp_path, synth_root, capsys):
    run, (tz, test) = _informative_run(tmp_path, synth_root, "synthetic8", seed=2, scale=1)
    out = tmp_path / "w7"
    assert decisions.main(["--run", str(run), "--dataset", "synthetic8", "--root", str(synth_root),
                           "--out", str(out), "--device", "cpu", "--k", "3"]) == 0
    printed = capsys.readouterr().out.strip()
    c = json.loads((out / "decisions_summary.json").read_text())["calibration"]
    assert printed == (f"[synthetic8] T={c['temperature']:.3f} test ECE {c['before']['ece']:.4f} -> "
                       f"{c['after']['ece']:.4f} -> {out}")
    p = softmax(tz)
    wrong = sorted((i for i in range(len(tz)) if p[i].argmax() != test.labels[i]), key=lambda i: (-p[i].max(), i))
    errors = json.loads((out / "decisions_summary.json").read_text())["errors"]
    assert [e["index"] for e in errors] == wrong[:6]                    # 2k top-label errors


def test_custom_errors_accepts_exactly_k_errors_at_the_edges_of_the_index_range():
    """A student's selection of exactly ``k`` errors per kind, with the first and the last case among them, is a
    valid selection (an off-by-one in the check would refuse it); one more, a repeat or an index outside the cases
    is refused with a message."""
    scores = np.array([0.9, 0.2, 0.8, 0.1, 0.7, 0.3])       # P(positive); threshold 0.5
    y = np.array([0, 0, 0, 1, 1, 1])                        # FPs: 0 and 2; FNs: 3 and 5
    chosen = {"FP": [0, 2], "FN": [5, 3]}
    got = decisions.custom_errors(lambda s, yy, t, k: chosen, scores, y, 0.5, k=2)
    assert sorted(got.loc[got["kind"] == "FP", "index"]) == [0, 2]
    assert sorted(got.loc[got["kind"] == "FN", "index"]) == [3, 5]
    for bad in ({"FP": [0, 2], "FN": [5, 3, 3]}, {"FP": [0, 0], "FN": []}, {"FP": [-1], "FN": []},
                {"FP": [6], "FN": []}):
        with pytest.raises(ConfigError, match="at most 2 distinct indices into the 6 cases"):
            decisions.custom_errors(lambda s, yy, t, k, bad=bad: bad, scores, y, 0.5, k=2)
    with pytest.raises(ConfigError, match="at most 1 distinct indices"):
        decisions.custom_errors(lambda s, yy, t, k: chosen, scores, y, 0.5, k=1)


def test_custom_errors_that_return_the_wrong_type_are_told_what_they_returned():
    """A selection that is not a {'FP': ..., 'FN': ...} mapping is refused with the type it did return, so a
    student sees that their function returned a list (or forgot to return at all)."""
    scores, y = np.array([0.9, 0.2]), np.array([0, 1])
    for returned, type_name in (([0, 1], "list"), (None, "NoneType"), ({"FP": [0]}, "dict")):
        with pytest.raises(ConfigError, match=rf"^<lambda> must return {{'FP': indices, 'FN': indices}}, "
                                              rf"got {type_name}\.$"):
            decisions.custom_errors(lambda s, yy, t, k, r=returned: r, scores, y, 0.5, k=1)


def test_cli_device_reaches_the_analysis(monkeypatch):
    """``--device`` is the device the checkpoint's predictions are computed on (not the default)."""
    seen = {}

    def spy(run, out, **kw):
        seen.update(kw)
        raise ConfigError("stop here")

    monkeypatch.setattr(decisions, "analyse_run", spy)
    with pytest.raises(ConfigError, match="stop here"):
        decisions.main(["--run", "somewhere", "--dataset", "synthetic", "--out", "x", "--device", "meta"])
    assert seen["device"] == "meta"


def test_error_gallery_puts_each_error_in_its_own_row_with_its_caption(monkeypatch):
    """The FP row shows the false positives' images and the FN row the false negatives', each with its caption
    (rows swapped or filled from the wrong cases would show a student the wrong mistakes)."""
    import medssl.plots as plots

    spec = get_spec("synthetic")                           # positive class 0 = lesion
    images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 1, 2, 2)     # every image distinct
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.3, 0.6, 0.4])       # P(lesion); FPs 0, 1, 4; FNs 2, 3, 5 at 0.5
    errors = decisions.errors_frame(scores, [0, 4], [2, 5])
    captured = {}
    monkeypatch.setattr(plots, "labelled_rows_grid", lambda rows, title=None: captured.update(rows) or "figure")
    assert decisions.error_gallery_figure(images, errors, labels, spec, title="t") == "figure"
    fp_row, fn_row = captured["false positives (called lesion)"], captured["false negatives (missed lesion)"]
    np.testing.assert_array_equal(fp_row[0], images[[0, 4]])
    np.testing.assert_array_equal(fn_row[0], images[[2, 5]])
    assert [c.split("\n")[0] for c in fp_row[1]] == ["FP1 #0", "FP2 #4"]
    assert [c.split("\n")[0] for c in fn_row[1]] == ["FN1 #2", "FN2 #5"]


def test_target_rates_outside_zero_one_are_refused_with_the_range():
    scores, y = np.array([0.2, 0.8, 0.6, 0.4]), np.array([0, 1, 1, 0])
    for target in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match=rf"target TPR must be in \(0, 1\], got {target}\."):
            decisions.threshold_for_tpr(scores, y, target)
    for target in (-0.1, 1.0, 1.5):
        with pytest.raises(ConfigError, match=rf"target FPR must be in \[0, 1\), got {target}\."):
            decisions.threshold_for_fpr(scores, y, target)


def test_a_callable_without_a_name_is_named_by_its_class_in_errors():
    """A student's selection written as a callable object (no ``__name__``) is named by its class."""
    class PickErrors:
        def __call__(self, scores, y, threshold, k):
            return {"FP": [1], "FN": []}                  # case 1 is a positive: not a false positive

    with pytest.raises(ConfigError, match=r"^PickErrors: index 1 is not a FP at threshold 0\.5000\.$"):
        decisions.custom_errors(PickErrors(), np.array([0.9, 0.8]), np.array([0, 1]), 0.5, k=1)


def test_a_run_folder_is_read_from_its_saved_predictions_even_beside_a_checkpoint(tmp_path, synth_root):
    """``predictions.npz`` is the run's record: it is read as saved, not recomputed from ``best.pt`` beside it; a
    folder with only ``best.pt`` is recomputed from that."""
    run, (tz, _) = _informative_run(tmp_path, synth_root, "synthetic", seed=3, scale=1)
    (run / "best.pt").write_bytes(b"not a checkpoint")       # reading it would fail
    got = decisions.load_predictions(run, dataset="synthetic", root=str(synth_root))
    np.testing.assert_array_equal(got.test_logits, tz)
    assert got.source == str(run)
    (run / "predictions.npz").unlink()
    with pytest.raises(CheckpointError):
        decisions.load_predictions(run, dataset="synthetic", root=str(synth_root))


def test_a_threshold_fn_that_returns_no_number_is_refused_by_name():
    scores, y = np.array([0.2, 0.8, 0.6, 0.4]), np.array([0, 1, 1, 0])

    def nan_rule(s, yy, metric, target):
        return float("nan")

    def text_rule(s, yy, metric, target):
        return "high"

    with pytest.raises(ConfigError, match=r"^nan_rule returned nan for tpr target 0\.9\.$"):
        decisions.choose_thresholds(scores, y, threshold_fn=nan_rule)
    with pytest.raises(ConfigError, match=r"^text_rule must return a threshold \(a number\), got 'high'\.$"):
        decisions.choose_thresholds(scores, y, threshold_fn=text_rule)


def test_logits_of_another_task_are_refused_before_anything_is_written(tmp_path):
    z = np.zeros((4, 3))
    with pytest.raises(ConfigError, match=r"^logits have 3 classes but pneumoniamnist has 2; is this the right "
                                          r"dataset\?$"):
        decisions.analyse_predictions(z, [0, 1, 0, 1], z, [0, 1, 0, 1], "pneumoniamnist", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_predictions_file_is_read_with_its_run_config(tmp_path, synth_root):
    """A ``predictions.npz`` path: the dataset and data root come from ``config.json`` beside it."""
    run, (tz, _) = _informative_run(tmp_path, synth_root, "synthetic", seed=4, scale=1)
    (run / "config.json").write_text(json.dumps({"config": {"dataset": "synthetic", "size": 28,
                                                            "root": str(synth_root)}}))
    got = decisions.load_predictions(run / "predictions.npz")
    assert (got.dataset, got.size, got.root, got.source) == ("synthetic", 28, str(synth_root),
                                                             str(run / "predictions.npz"))
    np.testing.assert_array_equal(got.test_logits, tz)


def test_missing_or_incomplete_predictions_say_what_to_do(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"predictions\.npz not found\. Train with `python -m medssl\.train "
                                              r"\.\.\. --out DIR` \(it writes predictions\.npz\), or pass the "
                                              r"checkpoint best\.pt instead\.$"):
        decisions.load_predictions(empty, dataset="synthetic")
    np.savez(empty / "predictions.npz", val_logits=np.zeros((2, 2)), test_logits=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match=r"lacks val_labels, test_labels; save val/test logits and labels "
                                              r"under these names \(np\.savez\(path, val_logits=\.\.\., "
                                              r"val_labels=\.\.\., \.\.\.\)\)\.$"):
        decisions.load_predictions(empty, dataset="synthetic")
