"""The probe's command line and its small records, whole: the CLI's defaults are the config's, each option parses
to its type, the comparison table and the records of a skipped method and a saved subset."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from medssl import probe
from medssl.data import SplitData, labels_hash
from medssl.errors import ConfigError
from medssl.registry import get_spec

REQUIRED = ["--dataset", "breastmnist", "--out", "x"]


def test_cli_defaults_are_the_configs_defaults():
    """A run from the command line with no options gets exactly the hyperparameters of ``DownstreamConfig()``."""
    args = probe.build_parser().parse_args(REQUIRED)
    from_cli = probe.config_from_args(args)
    plain = probe.DownstreamConfig(dataset="breastmnist")
    assert dataclasses.asdict(from_cli) == dataclasses.asdict(plain)
    assert (args.fractions, args.probe_c) == ([0.1], [0.001, 0.01, 0.1, 1.0, 10.0])
    assert (args.epochs, args.min_steps, args.batch_size, args.lr, args.encoder_lr, args.weight_decay, args.aug) == \
        (30, 100, 64, 1e-3, 1e-4, 1e-4, "light")
    assert not (args.finetune or args.compare_inits or args.overwrite)


def test_cli_options_parse_to_their_types_and_choices():
    args = probe.build_parser().parse_args(REQUIRED + ["--probe-c", "0.5", "2", "--label-frac", "0.05", "0.1",
                                                       "--encoder-lr", "3e-5", "--weight-decay", "0", "--aug",
                                                       "basic"])
    assert args.probe_c == [0.5, 2.0] and args.fractions == [0.05, 0.1]
    assert (args.encoder_lr, args.weight_decay, args.aug) == (3e-5, 0.0, "basic")
    with pytest.raises(SystemExit):
        probe.build_parser().parse_args(REQUIRED + ["--aug", "strong"])
    assert probe.build_parser().description == probe.__doc__.split("\n\n")[0]


def test_comparison_table_whole_text_with_a_skipped_row_in_the_middle():
    rows = [{"method": "ssl linear probe", "n_labels": 55, "auroc": 0.76875, "acc": 0.5, "ece": 0.125},
            probe.skipped("imagenet", 0.1, 42, "no weights"),
            {"method": "ssl fine-tune", "n_labels": 55, "auroc": 0.8, "acc": 0.75, "ece": 0.2,
             "model_init": "encoder:ssl_encoder.pt"}]
    assert probe.comparison_table(rows, "t") == (
        "### t\n\n| method | n labels | test AUROC | test acc | test ECE | note |\n|---|---:|---:|---:|---:|---|\n"
        "| ssl linear probe | 55 | 0.7688 | 0.5000 | 0.1250 |  |\n"
        "| imagenet fine-tune | | | | | skipped: no weights |\n"
        "| ssl fine-tune | 55 | 0.8000 | 0.7500 | 0.2000 | encoder:ssl_encoder.pt |\n")


def test_skipped_record_whole():
    assert probe.skipped("scratch", 0.05, 1, "why") == {
        "method": "scratch (supervised only)", "init": "scratch", "status": "skipped", "reason": "why",
        "fraction": 0.05, "seed": 1}
    assert probe.skipped("other", 0.05, 1, "why")["method"] == "other"


def test_saved_subset_record_whole(tmp_path):
    labels = np.array([0, 1, 1, 0, 1, 1])
    train = SplitData(get_spec("breastmnist"), "train", 28, np.zeros((6, 1, 28, 28), dtype=np.uint8), labels)
    path = probe.save_subset(np.array([1, 3, 4]), train, 0.5, 7, tmp_path, "my_sampler")
    assert path == tmp_path / "indices_frac=0.5_seed=7.json"
    assert json.loads(path.read_text()) == {
        "dataset": "breastmnist", "frac": 0.5, "seed": 7, "n_total": 6, "n_selected": 3, "class_counts": [1, 2],
        "drawn_by": "my_sampler", "labels_sha256": labels_hash(labels), "indices": [1, 3, 4]}


def test_log_probabilities_keep_float32_and_convert_integers():
    p32 = np.array([[0.25, 0.75]], dtype=np.float32)
    assert np.array_equal(probe.log_probabilities(p32, 1, 2), np.log(p32))
    ints = probe.log_probabilities(np.array([[0, 1]]), 1, 2)          # integer 0/1 probabilities: clipped, no error
    assert ints.dtype == np.float32 and ints[0, 1] == 0 and ints[0, 0] == np.float32(np.log(1e-12))
    with pytest.raises(ConfigError, match=r"^the probe must give finite probabilities of shape \(1, 2\), got "
                                          r"\(1, 3\)\.$"):
        probe.log_probabilities(np.ones((1, 3)) / 3, 1, 2)


@pytest.mark.parametrize("dataset,note", [("breastmnist", ""), ("synthetic", "  [SYNTHETIC data]")])
def test_cli_summary_line_marks_synthetic_data_only(dataset, note, monkeypatch, capsys):
    seen = {}

    def fake_run(cfg, out, overwrite, do_finetune, compare_inits):
        seen.update(cfg=cfg, out=out, flags=(overwrite, do_finetune, compare_inits))
        return {"wall_time_s": 1.25}

    monkeypatch.setattr(probe, "run", fake_run)
    assert probe.main(["--dataset", dataset, "--out", "o", "--finetune"]) == 0
    assert capsys.readouterr().out == f"done in 1.2s -> o{note}\n"
    assert seen["cfg"].dataset == dataset and seen["out"] == "o" and seen["flags"] == (False, True, False)


# ------------------------------------------------------------------ survivors of the seed-1 mutation sample
def _encoder(path, arch="smallcnn", **kw):
    import torch

    from medssl.models import build_model, save_encoder

    torch.manual_seed(0)
    return save_encoder(build_model(arch, 2, 1, **kw), path)


def test_run_records_the_device_config_and_numerics_everywhere_and_times_the_features(tmp_path, synth_root,
                                                                                       monkeypatch, capsys):
    """One probe + SSL fine-tune + scratch run: every record carries the run's device, whole config and numerics;
    the fine-tune's validation pass runs on the training device; only the SSL fine-tune gets ``optimizer_fn``;
    an encoder pretrained at another size is warned about, with both sizes; ``overwrite`` replaces the run."""
    import time

    import torch

    enc = _encoder(tmp_path / "ssl_encoder.pt")
    real_read = probe.read_encoder
    monkeypatch.setattr(probe, "read_encoder", lambda p: {**real_read(p), "input_size": 64})
    seen_devices, optimized = [], []
    real_eval = probe.evaluate

    def spy_eval(model, data, spec, bs, n_bins, device):
        seen_devices.append(device)
        return real_eval(model, data, spec, bs, n_bins, device)

    def my_optimizer(model, head_lr, encoder_lr, weight_decay):
        optimized.append(model.meta["init"])
        return torch.optim.Adam(model.parameters(), lr=head_lr)

    monkeypatch.setattr(probe, "evaluate", spy_eval)
    cfg = probe.DownstreamConfig("synthetic", encoder=str(enc), root=str(synth_root), epochs=1, min_steps=1,
                                 batch_size=32, progress=False, device="cpu", fractions=[0.05], n_bins=7)
    out = tmp_path / "down"
    t0 = time.perf_counter()
    res = probe.run(cfg, out, do_finetune=True, compare_inits=True, optimizer_fn=my_optimizer)
    wall = time.perf_counter() - t0
    assert "the encoder was pretrained on 64px images; evaluating at 28px." in capsys.readouterr().err
    assert seen_devices == [torch.device("cpu")] * len(seen_devices) and len(seen_devices) == 4   # ssl, scratch
    assert len(optimized) == 1 and optimized[0].startswith("encoder")                             # the SSL model
    config = json.loads((out / "downstream_config.json").read_text())
    want_cfg = json.loads(json.dumps(cfg.to_dict()))
    assert config["device"] == "cpu" and config["config"] == want_cfg
    pr = json.loads((out / "probe_metrics_5pct.json").read_text())
    ft = json.loads((out / "finetune_metrics_5pct.json").read_text())
    assert pr["config"] == ft["config"] == want_cfg
    assert pr["numerics"] == ft["numerics"] == config["numerics"]
    assert ft["split"] == pr["split"] == "test"
    assert 0 < pr["feature_seconds"] < wall
    assert [r["method"] for r in res["compare"][0]["rows"]][-1] == "scratch (supervised only)"
    probe.run(cfg, out, overwrite=True)                                 # replaces the earlier run, no error
    assert not (out / "finetune_metrics_5pct.json").exists()


def test_finetune_config_passes_weights_and_bins_on():
    cfg = probe.DownstreamConfig("synthetic", weights="w.pth", n_bins=9)
    tc = probe.finetune_config("imagenet", cfg, 0.1, 3, 50, "resnet18")
    assert (tc.weights, tc.n_bins, tc.pretrained, tc.encoder_lr) == ("w.pth", 9, True, cfg.encoder_lr)


def test_imagenet_init_builds_the_datasets_channels(tmp_path, monkeypatch):
    from medssl import models

    real = models.build_model
    monkeypatch.setattr(probe, "build_model", lambda *a, **kw: real(*a, **(kw | {"pretrained": False,
                                                                               "require_pretrained": False})))
    spec = get_spec("synthetic8")                                        # 3-channel images
    cfg = probe.DownstreamConfig("synthetic8", backbone="resnet18")
    assert probe.build_init_model("imagenet", spec, cfg).meta["in_channels"] == 3


def test_extract_features_returns_encoder_features_not_logits(tmp_path, synth_root):
    from medssl.data import load_splits
    from medssl.models import model_from_encoder

    splits = load_splits("synthetic", root=synth_root)
    model = model_from_encoder(_encoder(tmp_path / "e.pt"), 2, finetune="head")
    feats = probe.extract_features(model, {"val": splits["val"]})
    assert feats["val"].shape == (len(splits["val"]), model.feature_dim) and model.feature_dim != 2


def test_encoder_stem_is_the_checkpoints(tmp_path):
    enc = _encoder(tmp_path / "r.pt", "resnet18", stem="imagenet")
    assert probe.DownstreamConfig("synthetic", encoder=str(enc)).arch() == ("resnet18", "imagenet")
    small = _encoder(tmp_path / "s.pt")
    assert probe.DownstreamConfig("synthetic", encoder=str(small)).arch() == ("smallcnn", "auto")


def test_messages_name_the_option_and_the_students_function(tmp_path, synth_root):
    with pytest.raises(ConfigError, match="--label-frac"):
        probe.DownstreamConfig("synthetic", fractions=[1.5]).validate()
    assert probe.build_parser().parse_args(REQUIRED + ["--backbone", "resnet18"]).backbone == "resnet18"
    labels = np.array([0, 1] * 10)
    train = SplitData(get_spec("synthetic"), "train", 28, np.zeros((20, 1, 28, 28), dtype=np.uint8), labels)

    def my_bad_sampler(labels, frac, seed, save_dir):
        return [0, 0]

    with pytest.raises(ConfigError, match="my_bad_sampler"):
        probe.label_subset(train, 0.1, 0, None, my_bad_sampler)
    probe.label_subset(train, 0.5, 0, tmp_path)
    assert json.loads(next(tmp_path.glob("indices_frac=*.json")).read_text())["dataset"] == "synthetic"

    feats = {s: np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32) for s, n in
             (("train", 20), ("val", 6), ("test", 8))}
    splits = {s: SplitData(get_spec("synthetic"), s, 28, np.zeros((n, 1, 28, 28), dtype=np.uint8),
                           np.array([0, 1] * (n // 2))) for s, n in (("train", 20), ("val", 6), ("test", 8))}

    def my_probe(xt, yt, xv, yv, c_grid, seed):                         # right shape for val only
        return (lambda x: np.full((len(x), 2), 0.5) if len(x) == 6 else np.full((len(x), 3), 1 / 3)), {"C": 1.0}

    with pytest.raises(ConfigError, match="my_probe"):
        probe.linear_probe(feats, splits, get_spec("synthetic"), 0.5, 0, probe_fn=my_probe)
