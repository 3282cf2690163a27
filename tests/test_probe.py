"""Linear probe (frozen encoder, features once), fine-tuning LRs, initialisation comparison, probe CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import medssl.train as train_mod
from medssl.calibration import softmax
from medssl.cli import run_cli
from medssl.data import load_splits
from medssl.errors import ConfigError, OutputExistsError, WeightsUnavailableError
from medssl.models import SmallCNN, build_model, model_from_encoder, save_encoder
from medssl.probe import (
    DownstreamConfig,
    build_init_model,
    epochs_for,
    extract_features,
    finetune,
    linear_probe,
    main,
    pct_tag,
    run,
)
from medssl.registry import get_spec


@pytest.fixture
def encoder_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "enc" / "ssl_encoder.pt"
    save_encoder(build_model("smallcnn", 2, 1), path, extra={"note": "random weights, for plumbing tests"})
    return path


@pytest.fixture
def splits(synth_root):
    return load_splits("synthetic", root=synth_root)


def _cfg(synth_root, encoder_file, **kw):
    base = dict(encoder=None if encoder_file is None else str(encoder_file), root=str(synth_root), epochs=1,
                min_steps=1, batch_size=32, progress=False, device="cpu")
    return DownstreamConfig("synthetic", **(base | kw))


def test_pct_tag_and_epochs_for():
    assert [pct_tag(f) for f in (0.01, 0.05, 0.1, 0.2, 1.0, 0.005)] == ["1", "5", "10", "20", "100", "0.5"]
    assert epochs_for(n_labels=20, batch_size=64, epochs=5, min_steps=100) == 100   # 1 step per epoch
    assert epochs_for(n_labels=640, batch_size=64, epochs=5, min_steps=30) == 5       # 10 steps per epoch
    assert epochs_for(n_labels=130, batch_size=64, epochs=1, min_steps=10) == 4       # 3 steps per epoch


def test_probe_leaves_encoder_and_batchnorm_untouched(encoder_file, splits):
    spec = get_spec("synthetic")
    model = model_from_encoder(encoder_file, 2, finetune="head")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert any("running_mean" in k for k in before)
    model.train()                        # even a model left in training mode must not update BN statistics
    feats = extract_features(model, splits)
    for frac in (0.05, 1.0):
        linear_probe(feats, splits, spec, frac, seed=0)
    after = model.encoder.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert model.training                # predict_logits restores the mode it found


def test_probe_features_computed_once_per_split(encoder_file, synth_root, tmp_path, monkeypatch):
    seen = {"calls": 0, "images": 0}
    real_forward = SmallCNN.forward

    def counting_forward(self, x):
        seen["calls"] += 1
        seen["images"] += len(x)
        return real_forward(self, x)

    monkeypatch.setattr(SmallCNN, "forward", counting_forward)
    cfg = _cfg(synth_root, encoder_file, fractions=[0.05, 0.2, 1.0], probe_c=[0.1, 1.0, 10.0], eval_batch_size=64)
    res = run(cfg, tmp_path / "probe")
    splits_labels = {k: v.labels for k, v in load_splits("synthetic", root=synth_root).items()}
    n_images = sum(get_spec("synthetic").n_samples.values())            # 400 + 100 + 100
    assert seen["images"] == n_images                                   # each image through the encoder once
    assert seen["calls"] == 7 + 2 + 2                                    # ceil(400/64) + ceil(100/64) * 2
    assert len(res["probe"]) == 3
    for frac, tag in ((0.05, "5"), (0.2, "20"), (1.0, "100")):
        m = json.loads((tmp_path / "probe" / f"probe_metrics_{tag}pct.json").read_text())
        for key in ("acc", "auroc", "ece", "fraction", "seed", "n_labels", "f1_macro", "probe"):
            assert key in m, key
        assert m["fraction"] == frac and m["seed"] == 42
        saved = json.loads((tmp_path / "probe" / "indices" / m["indices_file"]).read_text())
        assert m["n_labels"] == len(saved["indices"]) == saved["n_selected"]
        scores = m["probe"]["val_score_by_C"]                 # C from the configured grid, best on validation
        assert set(scores) == {"0.1", "1", "10"} and scores[f"{m['probe']['C']:g}"] == max(scores.values())
        npz = np.load(tmp_path / "probe" / f"probe_predictions_{tag}pct.npz")
        assert npz["test_logits"].shape == (100, 2)
        # the saved metrics are those of the saved test predictions (positive class 0 = lesion)
        p = softmax(npz["test_logits"].astype(np.float64))
        test_labels = splits_labels["test"]
        assert m["acc"] == pytest.approx(np.mean(p.argmax(1) == test_labels), abs=1e-12)
        assert m["auroc"] == pytest.approx(roc_auc_score(test_labels == 0, p[:, 0]), abs=1e-9)


def test_linear_probe_separates_informative_features_and_not_noise(splits):
    spec = get_spec("synthetic")
    rng = np.random.default_rng(0)

    def feats(signal):
        out = {}
        for name, d in splits.items():
            x = rng.standard_normal((len(d), 16))
            x[:, 0] += signal * (d.labels == 0)
            out[name] = x.astype(np.float32)
        return out

    good = linear_probe(feats(5.0), splits, spec, 0.1, seed=1)
    noise = linear_probe(feats(0.0), splits, spec, 0.1, seed=1)
    assert good["auroc"] > 0.95 and good["acc"] > 0.85
    assert 0.3 < noise["auroc"] < 0.7
    assert good["n_labels"] == 40 and good["n_labels_per_class"] == [20, 20]


def test_probe_picks_c_on_validation_auroc_and_reports_test(splits):
    """The probe by hand with scikit-learn: standardise + logistic regression for every C of the grid, C with the
    best *validation* AUROC (P(lesion), class 0), test metrics of that classifier.

    With these features validation picks C = 0.1 and test would pick C = 10, so choosing C on test fails.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from medssl.probe import DEFAULT_C_GRID

    spec = get_spec("synthetic")
    rng = np.random.default_rng(0)
    feats = {}
    for name, d in splits.items():
        x = rng.standard_normal((len(d), 16))
        x[:, :3] += 0.7 * (d.labels == 0)[:, None]          # a weak signal: the C values score differently
        feats[name] = x.astype(np.float32)
    res = linear_probe(feats, splits, spec, 0.1, seed=1)
    idx = res["_indices"]
    fitted, val_auc, test_auc = {}, {}, {}
    for c in DEFAULT_C_GRID:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=1))
        fitted[c] = clf.fit(feats["train"][idx], splits["train"].labels[idx])
        val_auc[c] = roc_auc_score(splits["val"].labels == 0, clf.predict_proba(feats["val"])[:, 0])
        test_auc[c] = roc_auc_score(splits["test"].labels == 0, clf.predict_proba(feats["test"])[:, 0])
    best = max(DEFAULT_C_GRID, key=lambda c: val_auc[c])
    assert best == 0.1 and max(DEFAULT_C_GRID, key=lambda c: test_auc[c]) == 10.0
    assert res["probe"]["C"] == best
    assert res["auroc"] == pytest.approx(test_auc[best], abs=1e-9)
    p_test = fitted[best].predict_proba(feats["test"])
    assert res["acc"] == pytest.approx(np.mean(p_test.argmax(1) == splits["test"].labels), abs=1e-12)
    np.testing.assert_allclose(softmax(res["_test_logits"]), p_test, atol=1e-5)


def test_finetune_param_groups_get_requested_lrs(encoder_file, synth_root, splits, monkeypatch):
    made = []
    real_build = train_mod.build_optimizer

    def spy(model, lr, weight_decay, encoder_lr=None, kind="adamw"):
        opt = real_build(model, lr, weight_decay, encoder_lr, kind)
        made.append((model, opt))
        return opt

    monkeypatch.setattr(train_mod, "build_optimizer", spy)
    spec = get_spec("synthetic")
    cfg = _cfg(synth_root, encoder_file, lr=3e-3, encoder_lr=2e-4)
    res = finetune("ssl", splits, spec, cfg, 0.1, seed=0, device=torch.device("cpu"))
    model, opt = made[-1]
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["encoder"]["initial_lr"] == pytest.approx(2e-4)
    assert groups["head"]["initial_lr"] == pytest.approx(3e-3)
    assert {id(p) for p in groups["encoder"]["params"]} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in model.head.parameters()}
    assert res["lr_encoder"] == 2e-4 and res["lr_head"] == 3e-3 and res["model_init"] == "encoder:ssl_encoder.pt"
    # the encoder was unfrozen: its weights moved away from the SSL checkpoint
    start = model_from_encoder(encoder_file, 2)
    assert any(not torch.equal(a, b) for a, b in zip(start.encoder.parameters(), res["_model"].encoder.parameters()))
    # scratch trains everything at the head LR
    finetune("scratch", splits, spec, cfg, 0.1, seed=0, device=torch.device("cpu"))
    _, opt = made[-1]
    assert [g["initial_lr"] for g in opt.param_groups] == pytest.approx([3e-3, 3e-3])


def test_imagenet_init_unavailable_is_explained(encoder_file, synth_root, monkeypatch):
    spec = get_spec("synthetic")
    with pytest.raises(WeightsUnavailableError, match="smallcnn has no ImageNet weights"):
        build_init_model("imagenet", spec, _cfg(synth_root, encoder_file))

    def offline(arch, weights_path=None, required=False):
        raise WeightsUnavailableError(f"ImageNet weights for {arch} are not available (offline). To use them ...")

    monkeypatch.setattr("medssl.models.imagenet_state_dict", offline)
    cfg = _cfg(synth_root, None, backbone="resnet18")
    with pytest.raises(WeightsUnavailableError, match="resnet18"):
        build_init_model("imagenet", spec, cfg)
    assert build_init_model("scratch", spec, cfg).meta["arch"] == "resnet18"


def test_probe_cli_finetune_and_compare_inits(encoder_file, synth_root, tmp_path, capsys):
    out = tmp_path / "down"
    argv = ["--dataset", "synthetic", "--root", str(synth_root), "--encoder", str(encoder_file), "--label-frac",
            "0.05", "--epochs", "1", "--min-steps", "2", "--batch-size", "32", "--finetune", "--compare-inits",
            "--device", "cpu", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    for f in ("probe_metrics_5pct.json", "finetune_metrics_5pct.json", "finetune_5pct.pt",
              "finetune_predictions_5pct.npz", "finetune_reliability_5pct.png", "init_comparison_5pct.json",
              "init_comparison_5pct.md", "downstream_config.json"):
        assert (out / f).exists(), f
    ft = json.loads((out / "finetune_metrics_5pct.json").read_text())
    pr = json.loads((out / "probe_metrics_5pct.json").read_text())
    # the fine-tune's reported test metrics are those of its saved test logits (positive class 0)
    z = np.load(out / "finetune_predictions_5pct.npz")
    p = softmax(z["test_logits"].astype(np.float64))
    y = load_splits("synthetic", root=synth_root)["test"].labels
    assert ft["acc"] == pytest.approx(np.mean(p.argmax(1) == y), abs=1e-12)
    assert ft["auroc"] == pytest.approx(roc_auc_score(y == 0, p[:, 0]), abs=1e-9)
    assert ft["indices_md5"] == pr["indices_md5"] and ft["n_labels"] == pr["n_labels"] == 20
    assert ft["epochs"] == 2 and ft["fraction"] == 0.05
    comp = json.loads((out / "init_comparison_5pct.json").read_text())
    methods = [r["method"] for r in comp["rows"]]
    assert methods == ["ssl linear probe", "ssl fine-tune", "imagenet fine-tune", "scratch (supervised only)"]
    assert comp["rows"][2]["status"] == "skipped" and "smallcnn" in comp["rows"][2]["reason"]
    assert comp["rows"][3]["indices_md5"] == pr["indices_md5"]
    assert "skipped: smallcnn has no ImageNet weights" in (out / "init_comparison_5pct.md").read_text()
    model, ckpt = train_mod.load_classifier(out / "finetune_5pct.pt")
    assert ckpt["epoch"] == ft["best_epoch"]
    capsys.readouterr()
    assert run_cli(main, argv) == 2                                      # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_probe_bad_input(encoder_file, synth_root, tmp_path):
    with pytest.raises(ConfigError, match="0.1"):
        run(_cfg(synth_root, encoder_file, fractions=[10]), tmp_path / "x")
    with pytest.raises(ConfigError, match="--encoder"):
        run(_cfg(synth_root, None), tmp_path / "y")
    out = tmp_path / "z"
    out.mkdir()
    (out / "downstream_config.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        run(_cfg(synth_root, encoder_file), out)


# ------------------------------------------------------------- representations
def test_reduce_2d_pca_matches_svd_and_tsne_is_seeded():
    from medssl.embed import reduce_2d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8)) * np.arange(1, 9)
    xs = (x - x.mean(0)) / x.std(0)
    _, _, vt = np.linalg.svd(xs, full_matrices=False)
    ref = xs @ vt[:2].T
    got = reduce_2d(x, "pca")
    assert got.shape == (60, 2)
    for k in range(2):                                  # principal axes are defined up to sign
        assert np.allclose(np.abs(got[:, k]), np.abs(ref[:, k]), atol=1e-6)
    a, b = reduce_2d(x, "tsne", seed=3), reduce_2d(x, "tsne", seed=3)
    assert a.shape == (60, 2) and np.allclose(a, b)
    with pytest.raises(ConfigError, match="umap"):
        reduce_2d(x, "isomap")


def test_umap_is_seeded_and_quiet():
    import warnings

    from medssl.embed import reduce_2d

    x = np.random.default_rng(1).standard_normal((60, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)     # a warning in a student's notebook is noise
        a, b = reduce_2d(x, "umap", seed=3), reduce_2d(x, "umap", seed=3)
    assert a.shape == (60, 2) and np.allclose(a, b)


def test_embed_cli_ssl_vs_random_with_imagenet_skipped(encoder_file, synth_root, tmp_path, capsys):
    from medssl.embed import main as embed_main

    out = tmp_path / "embed"
    assert embed_main(["--dataset", "synthetic", "--root", str(synth_root), "--encoder", str(encoder_file),
                       "--methods", "pca", "tsne", "--split", "val", "--max-points", "60", "--device", "cpu",
                       "--out", str(out)]) == 0
    assert "5-NN balanced accuracy" in capsys.readouterr().out
    rec = json.loads((out / "embed_config.json").read_text())
    assert rec["encoders"] == ["SSL", "random"] and "smallcnn" in rec["skipped"]["ImageNet"]
    assert rec["n_points"] == 60
    pts = np.load(out / "embed_points_val.npz")
    assert {"SSL__pca", "SSL__tsne", "random__pca", "random__tsne", "labels", "indices"} <= set(pts.files)
    assert pts["SSL__pca"].shape == (60, 2) and len(np.unique(pts["indices"])) == 60
    # the points are the SSL encoder's features of those 60 validation images, computed here by hand
    from medssl.data import load_split
    from medssl.embed import knn_separability, reduce_2d

    val = load_split("synthetic", "val", root=synth_root)
    np.testing.assert_array_equal(pts["labels"], val.labels[pts["indices"]])
    enc = model_from_encoder(encoder_file, 2).eval()
    with torch.no_grad():
        feats = enc.encoder((torch.from_numpy(val.images[pts["indices"]]).float() / 255 - 0.5) / 0.5).numpy()
    assert rec["knn_balanced_accuracy"]["SSL"] == pytest.approx(knn_separability(feats, pts["labels"],
                                                                                 seed=rec["seed"]), abs=1e-9)
    np.testing.assert_allclose(np.abs(pts["SSL__pca"]), np.abs(reduce_2d(feats, "pca")), atol=1e-3)
    assert (out / "representations_val.png").stat().st_size > 0
