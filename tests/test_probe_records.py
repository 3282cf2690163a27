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
