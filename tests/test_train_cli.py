"""The supervised CLI end to end on the synthetic set (real data: see the closing note / README)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score

from medssl.train import load_classifier, main
from medssl.utils import read_jsonl, resolve_device

ARGS = ["--dataset", "synthetic", "--model", "smallcnn", "--epochs", "3", "--no-progress"]
# These runs use --device auto. Saved logits are fp32 on every device; recomputing them on the CPU
# (load_classifier's default) gives the same numbers up to float32 rounding, which is exact
# enough for 1e-5 on a CPU run but differs in the last digits after a run on a GPU.
AUTO = resolve_device("auto")
SAME_LOGITS = {"atol": 1e-5} if AUTO.type == "cpu" else {"rtol": 1e-4, "atol": 1e-4}
# the same seed gives the same numbers on the CPU; on CUDA only in deterministic mode (see the README)
REPEATABLE = [] if AUTO.type == "cpu" else ["--deterministic"]


def run_cli(args):
    from medssl.cli import run_cli as wrapped
    return wrapped(main, args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli")
    root = base / "data"
    root.mkdir()
    out = base / "run"
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out)]) == 0
    return root, out


def test_cli_writes_every_output(trained):
    _, out = trained
    for name in ("best.pt", "val_log.jsonl", "test_metrics.json", "reliability.png", "curves.png",
                 "predictions.npz", "config.json"):
        assert (out / name).is_file(), name
    for png in ("reliability.png", "curves.png"):
        Image.open(out / png).verify()
    m = json.loads((out / "test_metrics.json").read_text())
    for key in ("acc", "auroc", "ece", "f1_macro", "precision", "recall", "confusion_matrix", "n_per_class",
                "config", "split_sizes", "seed", "device", "wall_time_s"):
        assert key in m, key
    assert m["data"]["synthetic"] is True and m["positive_class"] == 0
    assert m["split_sizes"] == {"train": 400, "train_used": 400, "val": 100, "test": 100}
    assert m["auroc"] > 0.75, "the synthetic set is learnable; a 3-epoch smallcnn must find the lesion"
    log = read_jsonl(out / "val_log.jsonl")
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert set(log[0]) >= {"train_loss", "val_loss", "val_acc", "val_auroc", "lr", "seconds"}
    best = max(log, key=lambda r: r["val_auroc"])
    assert m["best_epoch"] == best["epoch"]


def plain_logits(model, images):
    """The model's logits by hand: uint8 -> [0, 1] -> (x - 0.5) / 0.5, a float64 copy in eval mode, no library code."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m((torch.from_numpy(np.asarray(images)).double() / 255 - 0.5) / 0.5).numpy()


def test_best_checkpoint_reproduces_saved_predictions(trained):
    root, out = trained
    from medssl.data import load_split

    model, ckpt = load_classifier(out / "best.pt")
    assert ckpt["config"]["dataset"] == "synthetic"
    saved = np.load(out / "predictions.npz")
    for split in ("val", "test"):
        data = load_split("synthetic", split, root=root)
        np.testing.assert_array_equal(saved[f"{split}_labels"], data.labels)
        assert np.allclose(plain_logits(model, data.images), saved[f"{split}_logits"], **SAME_LOGITS), split


def test_saved_test_metrics_are_the_metrics_of_the_saved_logits(trained):
    """acc, AUROC (positive class 0 = lesion) and ECE of test_metrics.json, recomputed with scikit-learn/numpy."""
    _, out = trained
    m = json.loads((out / "test_metrics.json").read_text())
    z = np.load(out / "predictions.npz")
    logits, labels = z["test_logits"].astype(np.float64), z["test_labels"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert m["acc"] == pytest.approx(np.mean(p.argmax(1) == labels), abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(labels == 0, p[:, 0]), abs=1e-9)
    assert m["auroc"] != pytest.approx(roc_auc_score(labels == 1, p[:, 0]), abs=1e-3)   # the class matters
    assert m["confusion_matrix"] == confusion_matrix(labels, p.argmax(1), labels=[0, 1]).tolist()
    # ECE on P(lesion) with 15 equal-width bins (lo, hi]
    conf, hit, ece = p[:, 0], (labels == 0).astype(float), 0.0
    for b in range(15):
        inside = (conf > b / 15) & (conf <= (b + 1) / 15) if b else (conf <= 1 / 15)
        if inside.any():
            ece += inside.mean() * abs(hit[inside].mean() - conf[inside].mean())
    assert m["ece"] == pytest.approx(ece, abs=1e-9)


def test_same_seed_same_numbers(trained, tmp_path):
    root, out = trained
    if REPEATABLE:
        out = tmp_path / "first"
        assert run_cli(ARGS + REPEATABLE + ["--root", str(root), "--out", str(out)]) == 0
    assert run_cli(ARGS + REPEATABLE + ["--root", str(root), "--out", str(tmp_path / "again")]) == 0
    a = json.loads((out / "test_metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "test_metrics.json").read_text())
    for k in ("acc", "auroc", "ece", "f1_macro", "confusion_matrix", "best_epoch"):
        assert a[k] == b[k], k


def test_refuses_to_overwrite_a_previous_run(trained, capsys):
    root, out = trained
    before = (out / "test_metrics.json").read_bytes()
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a previous run" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "test_metrics.json").read_bytes() == before


def test_overwrite_flag_replaces_the_run(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "o"
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out), "--epochs", "1"]) == 0
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out), "--epochs", "2", "--overwrite"]) == 0
    assert len(read_jsonl(out / "val_log.jsonl")) == 2


def test_label_fraction_and_readable_loader(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "frac"
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out), "--epochs", "1", "--label-frac", "0.1",
                           "--loader", "dataset"]) == 0
    m = json.loads((out / "test_metrics.json").read_text())
    assert m["n_train_labels"] == 40 and m["split_sizes"]["train_used"] == 40
    idx = json.loads((out / "indices_frac=0.1_seed=42.json").read_text())
    assert idx["class_counts"] == [20, 20] and idx["n_selected"] == 40


@pytest.mark.parametrize("extra,message", [
    (["--label-frac", "10"], "Did you mean 0.1"),
    (["--dataset", "breastmnst"], "Did you mean 'breastmnist'"),
    (["--epochs", "0"], "--epochs must be >= 1"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, extra, message):
    assert run_cli(ARGS + ["--root", str(tmp_path), "--out", str(tmp_path / "x")] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_load_run_feeds_images_the_way_the_model_was_trained(trained, tmp_path):
    """A model trained on grey-as-RGB input gets 3-channel splits back, also in decisions."""
    from medssl.decisions import load_predictions
    from medssl.train import load_run

    root, _ = trained
    out = tmp_path / "rgb"
    assert run_cli(ARGS + ["--root", str(root), "--out", str(out), "--epochs", "1", "--as-rgb"]) == 0
    r = load_run(out)
    assert r.dataset == "synthetic" and r.model.meta["in_channels"] == 3
    assert r.splits["val"].images.shape[1:] == (3, 28, 28)
    saved = np.load(out / "predictions.npz")
    grey = r.splits["test"].images[:, :1]
    assert np.array_equal(r.splits["test"].images, np.repeat(grey, 3, axis=1))     # grey copied to R, G and B
    # the model's own logits on those images, computed by hand, are the saved ones ...
    assert np.allclose(plain_logits(r.model, r.splits["test"].images), saved["test_logits"], **SAME_LOGITS)
    # ... and feeding it the 1-channel images instead is not even possible
    with pytest.raises(RuntimeError):
        plain_logits(r.model, grey)
    preds = load_predictions(out / "best.pt")          # recomputed on the auto device, like the run
    assert np.allclose(preds.test_logits, saved["test_logits"], **SAME_LOGITS)
    np.testing.assert_array_equal(preds.test_labels, saved["test_labels"])


def test_predictions_from_a_checkpoint_carry_every_field_of_the_run(trained, tmp_path, monkeypatch):
    """``load_predictions(best.pt)`` rebuilds the run: its val and test logits and labels, and the dataset, size,
    data root, source and config that the analysis reads (a dropped or swapped field would change an operating
    point or a report without an error)."""
    import medssl.train as train_mod
    from medssl.decisions import load_predictions

    root, out = trained
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    saved = np.load(out / "predictions.npz")
    preds = load_predictions(out / "best.pt", device="cpu")
    for split in ("val", "test"):                      # the validation split is what every threshold is chosen on
        assert np.allclose(getattr(preds, f"{split}_logits"), saved[f"{split}_logits"], **SAME_LOGITS), split
        np.testing.assert_array_equal(getattr(preds, f"{split}_labels"), saved[f"{split}_labels"])
    assert (preds.dataset, preds.size, preds.root) == ("synthetic", 28, str(root))
    assert preds.source == str(out / "best.pt")
    assert preds.meta == {"config": ckpt["config"]} and preds.meta["config"]["epochs"] == 3

    # a checkpoint that does not say its dataset: the caller's dataset is the one loaded, and without it, a clear error
    anonymous = copy.deepcopy(ckpt)
    anonymous.pop("dataset", None)
    anonymous["config"].pop("dataset", None)
    torch.save(anonymous, tmp_path / "anonymous.pt")
    from medssl.errors import ConfigError
    with pytest.raises(ConfigError, match="does not say its dataset"):
        load_predictions(tmp_path / "anonymous.pt")
    named = load_predictions(tmp_path / "anonymous.pt", dataset="synthetic", root=str(root))
    np.testing.assert_array_equal(named.val_labels, saved["val_labels"])
    assert named.dataset == "synthetic" and named.root == str(root)

    # the data root and the device the caller names are the ones used, not the checkpoint's or the default
    seen = {}

    def spy(run, dataset=None, root=None, device="cpu", splits=("val", "test")):
        seen.update(dataset=dataset, root=root, device=device)
        raise RuntimeError("stop here")

    monkeypatch.setattr(train_mod, "load_run", spy)
    with pytest.raises(RuntimeError, match="stop here"):
        load_predictions(out / "best.pt", dataset="synthetic", root="/elsewhere", device="meta")
    assert seen == {"dataset": "synthetic", "root": "/elsewhere", "device": torch.device("meta")}


def test_a_run_folder_without_saved_predictions_is_recomputed_from_its_checkpoint(trained, tmp_path, monkeypatch):
    import shutil

    import medssl.decisions as decisions_mod
    from medssl.decisions import load_predictions

    root, out = trained
    folder = tmp_path / "only-checkpoint"
    folder.mkdir()
    shutil.copy(out / "best.pt", folder / "best.pt")
    saved = np.load(out / "predictions.npz")
    preds = load_predictions(folder, device="cpu")
    assert preds.source == str(folder / "best.pt")
    assert np.allclose(preds.val_logits, saved["val_logits"], **SAME_LOGITS)
    # the caller's dataset, root and device are passed on to the checkpoint
    seen = []
    monkeypatch.setattr(decisions_mod, "_predictions_from_checkpoint", lambda *a: seen.append(a) or "rebuilt")
    assert load_predictions(folder, "synthetic", "/data", "meta") == "rebuilt"
    assert seen == [(folder / "best.pt", "synthetic", "/data", "meta")]
