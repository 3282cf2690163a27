"""The seed projects' experiments (medssl.paradigms): pieces, CLI and the Extra_Paradigms notebook in smoke mode.

Everything runs on small synthetic sets with smallcnn so the file stays fast;
real-data numbers are in the closing note, never here.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support
from tiny_data import tiny_synthetic

from medssl import paradigms as P
from medssl.cli import run_cli
from medssl.errors import WeightsUnavailableError
from medssl.models import build_model, model_from_encoder, save_encoder
from medssl.train import predict_logits

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "Extra_Paradigms.ipynb"


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    """An empty torchvision cache, and downloads that fail at once (as on a machine without internet)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_download(arch, weights_path=None, required=False):
        raise WeightsUnavailableError(f"ImageNet weights for {arch} are not available (URLError: offline). To use")

    monkeypatch.setattr(P, "imagenet_state_dict", no_download)
    return tmp_path / "torch_home"


# ---------------------------------------------------------------- pieces
@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
def test_grey_encoder_expanded_to_rgb_computes_the_same_features(tmp_path, arch):
    torch.manual_seed(0)
    grey = build_model(arch, 2, 1, input_size=28)
    path = save_encoder(grey, tmp_path / "ssl_encoder.pt")
    rgb_path = P.encoder_as_rgb(path, tmp_path / "ssl_encoder_rgb.pt")
    rgb = model_from_encoder(rgb_path, 2)
    assert rgb.meta["in_channels"] == 3
    imgs = np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    f1 = predict_logits(grey, imgs, features=True)
    f3 = predict_logits(rgb, np.repeat(imgs, 3, axis=1), features=True)
    assert np.allclose(f1, f3, atol=1e-4)
    assert P.encoder_as_rgb(rgb_path, tmp_path / "again.pt") == rgb_path      # already RGB: unchanged


def test_imagenet_status_reasons(tmp_path, offline_torch_home):
    assert P.imagenet_status("smallcnn") == (False, "smallcnn has no ImageNet weights")
    ok, why = P.imagenet_status("resnet50", tmp_path / "missing.pth")
    assert not ok and "does not exist" in why
    (tmp_path / "w.pth").write_bytes(b"x")
    assert P.imagenet_status("resnet50", tmp_path / "w.pth") == (True, "file:w.pth")
    ok, why = P.imagenet_status("resnet50", allow_download=False)
    assert not ok and "smoke mode does not download" in why
    ok, why = P.imagenet_status("resnet50", allow_download=True)
    assert not ok and why.startswith("ImageNet weights for resnet50 are not available")


def test_smoke_falls_back_to_synthetic_loudly(tmp_path, capsys):
    key, msg = P.resolve_dataset("bloodmnist", 28, tmp_path, smoke=True)
    assert key == "synthetic8" and "SYNTHETIC" in msg and "NOT results" in msg
    assert "SMOKE MODE" in capsys.readouterr().out
    assert P.resolve_dataset("breastmnist", 28, tmp_path, smoke=True)[0] == "synthetic"
    assert P.resolve_dataset("synthetic8", 28, tmp_path, smoke=True) == ("synthetic8", None)


def test_per_class_table_matches_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 8, 300), rng.integers(0, 8, 300)
    pred[:150] = y[:150]
    from sklearn.metrics import confusion_matrix

    rows = P.per_class_table(confusion_matrix(y, pred, labels=range(8)), {k: f"c{k}" for k in range(8)})
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=range(8), zero_division=0)
    assert np.allclose([x["precision"] for x in rows], p) and np.allclose([x["recall"] for x in rows], r)
    assert np.allclose([x["f1"] for x in rows], f) and [x["n_test"] for x in rows] == n.tolist()


def test_sample_indices_show_every_class():
    labels = np.repeat(np.arange(8), [1, 5, 5, 5, 5, 5, 5, 20])
    idx = P.sample_indices(labels, 16, seed=0)
    assert len(idx) == 16 == len(set(idx.tolist())) and set(labels[idx]) == set(range(8))
    assert np.array_equal(idx, P.sample_indices(labels, 16, seed=0))


# ------------------------------------------------------ ImageNet regime skipped
def test_imagenet_regime_is_skipped_cleanly_without_weights(tmp_path, offline_torch_home):
    root = tiny_synthetic(tmp_path / "data", sizes=(64,))
    cfg = P.Seed000Config(dataset="synthetic8", arch="resnet50", regimes=["imagenet"], root=str(root),
                          device="cpu", progress=False)
    rec = P.run_seed000(cfg, tmp_path / "out")
    (row,) = rec["rows"]
    assert row["key"] == "imagenet" and row["status"].startswith("skipped: ImageNet weights for resnet50")
    assert "test_acc" not in row and row["seed000_acc"] == 0.9617
    assert not (tmp_path / "out" / "imagenet").exists()
    table = pd.read_csv(tmp_path / "out" / "seed000_table.csv")
    assert table.loc[0, "status"].startswith("skipped") and np.isnan(table.loc[0, "test_acc"])
    assert "skipped: ImageNet weights" in (tmp_path / "out" / "seed000_table.md").read_text()
    assert json.loads((tmp_path / "out" / "seed000_results.json").read_text())["status"] == "done"


def test_unreadable_weights_file_skips_the_imagenet_regime(tmp_path):
    root = tiny_synthetic(tmp_path / "data")
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    cfg = P.Seed000Config(dataset="synthetic8", arch="resnet18", size=28, regimes=["imagenet"], weights=str(bad),
                          root=str(root), device="cpu", progress=False)
    (row,) = P.run_seed000(cfg, tmp_path / "out")["rows"]
    assert row["status"].startswith("skipped: could not read weights file")


# ------------------------------------------------------------------- CLI
def test_cli_recipe_smoke_writes_every_artifact_and_a_readable_excel_report(tmp_path, capsys):
    root = tiny_synthetic(tmp_path / "data")
    out = tmp_path / "recipe"
    args = ["recipe", "--dataset", "bloodmnist", "--smoke", "--arch", "smallcnn", "--root", str(root),
            "--seeds", "3", "--out", str(out), "--no-progress"]
    assert run_cli(P.main, args) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC 'synthetic8' set instead of bloodmnist" in printed and "seed project 001" in printed
    rec = json.loads((out / "recipe_results.json").read_text())
    assert rec["dataset"] == "synthetic8" and rec["smoke"] and rec["fallback"]
    run = out / "seed3"
    for f in ("confusion_matrix.png", "training_curves.png", "sample_predictions.png", "report.xlsx", "best.pt"):
        assert (run / f).is_file(), f
    m = json.loads((run / "test_metrics.json").read_text())
    sheets = pd.read_excel(run / "report.xlsx", sheet_name=None)
    assert {"summary", "per_class", "confusion_matrix", "history", "run", "config"} <= set(sheets)
    summary = sheets["summary"].set_index("metric")
    assert summary.loc["acc", "test"] == pytest.approx(m["acc"])
    assert summary.loc["acc", "test_tta"] == pytest.approx(m["tta"]["acc"])
    per_class = sheets["per_class"]
    assert len(per_class) == 8 and per_class["f1"].mean() == pytest.approx(m["tta"]["f1_macro"])
    # the headline is the TTA prediction: its confusion matrix (rows = true class) and accuracy from the saved
    # TTA probabilities, recounted with scikit-learn
    pz = np.load(run / "predictions.npz")
    from sklearn.metrics import confusion_matrix

    tta_pred = pz["test_probs_tta"].argmax(1)
    np.testing.assert_array_equal(sheets["confusion_matrix"].iloc[:, 1:].to_numpy(),
                                  confusion_matrix(pz["test_labels"], tta_pred, labels=range(8)))
    assert m["n"] == 32 and m["tta"]["acc"] == pytest.approx(np.mean(tta_pred == pz["test_labels"]))
    assert len(sheets["history"]) == m["epochs_run"] == 1
    assert rec["rows"][0]["acc_tta"] == pytest.approx(m["tta"]["acc"])


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert run_cli(P.main, ["recipe", "--dataset", "bloodmnst", "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'bloodmnist'" in capsys.readouterr().err
    assert run_cli(P.main, ["recipe", "--dataset", "synthetic8", "--seeds", "1", "1", "--out", str(tmp_path)]) == 2


# -------------------------------------------------------------- notebook
def test_notebook_is_built_from_its_builder_with_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'DATASET_KEY = "bloodmnist"' in params[0].source
    assert "SMOKE = ch.smoke_from_env()" in params[0].source
    import sys

    sys.path.insert(0, str(NOTEBOOK.parent))
    try:
        from build_extra_paradigms import build
    finally:
        sys.path.remove(str(NOTEBOOK.parent))
    committed = [c.source for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert [c.source for c in build().cells] == committed, \
        "Extra_Paradigms.ipynb is out of date: run python notebooks/build_extra_paradigms.py"


def test_notebook_end_to_end_in_smoke_mode(tmp_path, monkeypatch):
    """Every code cell, in order, as papermill would run it (parameters injected after the tagged cell)."""
    root = tiny_synthetic(tmp_path / "data")
    monkeypatch.setenv("MEDMNIST_ROOT", str(root))
    monkeypatch.setenv("MEDSSL_SMOKE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.chdir(tmp_path)
    injected = (f"SEED000_ARCH = 'smallcnn'\nRECIPE_ARCH = 'smallcnn'\nSURVEY_BACKBONE = 'smallcnn'\n"
                f"RECIPE_SEEDS = [42]\nSURVEY_DATASETS = [DATASET_KEY, 'dermamnist']\nDEVICE = 'cpu'\n"
                f"OUT_ROOT = {str(tmp_path / 'results')!r}\n")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ns: dict = {}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for cell in nb.cells:
            if cell.cell_type != "code" or "injected-parameters" in cell.metadata.get("tags", []):
                continue
            exec(compile(cell.source, "<cell>", "exec"), ns)
            if "parameters" in cell.metadata.get("tags", []):
                assert ns["SMOKE"] is True and ns["DATASET_KEY"] == "bloodmnist"
                exec(injected, ns)
    out = buf.getvalue()
    assert "SMOKE MODE" in out and "SYNTHETIC 'synthetic8' set instead of bloodmnist" in out
    assert "they are not results" in out
    res0, res1, res2 = ns["res000"], ns["res_recipe"], ns["res_survey"]
    assert res0["dataset"] == res1["dataset"] == "synthetic8" and res0["fallback"]
    assert [r["key"] for r in res0["rows"]] == ["scratch", "imagenet", "ssl"]
    assert res0["rows"][1]["status"].startswith("skipped") and "test_acc" in res0["rows"][2]
    with np.load(tmp_path / "results" / "recipe" / "seed42" / "predictions.npz") as pz:
        tta_acc = np.mean(pz["test_probs_tta"].argmax(1) == pz["test_labels"])
    assert res1["rows"][0]["acc_tta"] == pytest.approx(tta_acc)
    assert [d["status"] for d in res2["datasets"]] == ["done", "skipped: same data as an earlier entry (synthetic8)"]
    assert {r["encoder"] for r in res2["rows"]} == {"SSL", "ImageNet", "random"}
    assert os.path.isfile(tmp_path / "results" / "survey" / "synthetic8" / "features_synthetic8.png")
    for name in ("seed000/seed000_table.csv", "recipe/recipe_table.csv", "survey/survey_table.csv"):
        assert (tmp_path / "results" / name).is_file(), name
