"""Week 4 -> Week 5 with MODEL_NAME = "smallcnn".

A smallcnn has no stem choice, so its encoder checkpoint records the stem as "n/a". Week 5 builds its
supervised comparison with the encoder's recorded (arch, stem); that used to fail with
``ConfigError: stem must be 'auto', 'small' or 'imagenet', got 'n/a'``.
"""

from __future__ import annotations

import pytest

from medssl.course import notebook as ch
from medssl.course.week_jobs import _buildable_stem
from medssl.errors import ConfigError
from medssl.models import read_encoder
from medssl.probe import DownstreamConfig


def test_week5_supervised_comparison_builds_from_a_smallcnn_encoder(synth_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDMNIST_ROOT", str(synth_root))
    common = dict(dataset="synthetic", student="s", model="smallcnn", epochs=1, batch_size=128,
                  results_root=tmp_path / "results", smoke=False, overwrite=False, tasks=None)
    wk4 = ch.WeekRun(4, **common)
    rec = wk4.pretrain("ssl", device="cpu", progress=False)
    assert rec["status"] == "done" and rec["encoder"]["stem"] == "n/a"
    encoder = wk4.run_dir("ssl") / "ssl_encoder.pt"
    enc = read_encoder(encoder)
    arch, stem = enc["arch"], enc["stem"]                       # what the Week 5 notebook reads
    assert (arch, stem) == ("smallcnn", "n/a")

    wk5 = ch.WeekRun(5, **common)
    probe_dir = wk5.downstream("probe", encoder, [0.1], device="cpu", progress=False)
    res = wk5.train("supervised_10pct", model=arch, stem=stem, label_frac=0.1, epochs=1, batch_size=64,
                    indices_dir=str(probe_dir / "indices"), device="cpu")
    probe = ch.load_json(probe_dir / "probe_metrics_10pct.json")
    assert res["n_train_labels"] == probe["n_labels"] == 40
    assert res["config"]["stem"] == "auto"                     # the same config as any other smallcnn run
    # the settings are stable, so the finished run is reused rather than retrained
    monkeypatch.setattr("medssl.train.run", lambda *a, **k: pytest.fail("retrained instead of reused"))
    again = wk5.train("supervised_10pct", model=arch, stem=stem, label_frac=0.1, epochs=1, batch_size=64,
                      indices_dir=str(probe_dir / "indices"), device="cpu")
    assert again["config"] == res["config"] and again["auroc"] == res["auroc"]


def test_a_recorded_n_a_stem_is_only_taken_for_smallcnn():
    assert DownstreamConfig("synthetic", backbone="smallcnn", stem="n/a").arch() == ("smallcnn", "auto")
    assert _buildable_stem({"model": "smallcnn", "stem": "n/a"}, "model")["stem"] == "auto"
    # a ResNet has a stem choice: "n/a" there is a mismatch, reported by build_model rather than guessed
    assert _buildable_stem({"model": "resnet18", "stem": "n/a"}, "model")["stem"] == "n/a"
    from medssl.models import build_model

    with pytest.raises(ConfigError, match="stem"):
        build_model("resnet18", 2, 1, stem="n/a")
