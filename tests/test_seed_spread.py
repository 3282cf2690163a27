"""benchmarks/seed_spread.py: other seeds repeat the recorded configuration exactly, and the table's numbers are
the runs' numbers (synthetic data, smallcnn, one epoch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from medssl.augment import supervised_augmentation
from medssl.errors import ConfigError
from medssl.train import TrainConfig, run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import seed_spread


def test_mean_and_sample_std_by_hand():
    assert seed_spread.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))       # n - 1, not n (0.816)
    m, sd = seed_spread.mean_std([0.5])
    assert m == 0.5 and np.isnan(sd)


def test_config_is_rebuilt_from_the_record_and_a_notebook_pipeline_is_refused():
    cfg = TrainConfig(dataset="breastmnist", model="resnet18", epochs=7, lr=3e-4, aug="basic", seed=5,
                      finetune="head", weight_decay=0.05)
    record = {"config": cfg.to_dict(), "augmentation": supervised_augmentation("basic", "ultrasound").describe()}
    assert seed_spread.config_of(record) == cfg
    with pytest.raises(ConfigError, match="not the 'basic' preset"):
        seed_spread.config_of({**record, "augmentation": ["custom (my_aug)"]})
    with pytest.raises(ConfigError, match="no 'config' record"):
        seed_spread.config_of({"auroc": 0.9})


def test_sweep_trains_other_seeds_with_the_same_config_reports_them_and_resumes(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    cfg = TrainConfig(dataset="synthetic", model="smallcnn", epochs=1, aug="none", root=str(root), progress=False)
    first = run(cfg, tmp_path / "base")
    metrics = tmp_path / "metrics_smallcnn_x.json"
    metrics.write_text(json.dumps(first))
    with pytest.raises(ConfigError, match="own seed"):
        seed_spread.sweep(metrics, [42], tmp_path / "runs")

    rows = seed_spread.sweep(metrics, [3], tmp_path / "runs")
    assert [r["seed"] for r in rows] == [42, 3]
    new = json.loads((tmp_path / "runs" / "synthetic" / "smallcnn_x" / "seed3" / "test_metrics.json").read_text())
    assert {k: v for k, v in new["config"].items() if k != "seed"} == \
        {k: v for k, v in first["config"].items() if k != "seed"} and new["config"]["seed"] == 3
    assert rows[0]["auroc"] == first["auroc"] and rows[1]["auroc"] == new["auroc"]
    assert rows[1]["init"] == new["model"]["init"] == "random"      # what ran, not what was asked for
    text = seed_spread.report(rows, metrics, cfg)
    m, sd = seed_spread.mean_std([first["auroc"], new["auroc"]])
    assert f"{m:.4f} ± {sd:.4f}" in text
    assert f"| 3 | {new['auroc']:.4f} | {new['acc']:.4f} | {new['ece']:.4f} | {new['best_epoch']} |" in text

    def no_training(*a, **k):
        raise AssertionError("a finished seed was trained again")
    monkeypatch.setattr(seed_spread, "run", no_training)
    assert seed_spread.sweep(metrics, [3], tmp_path / "runs") == rows        # resumes from the saved run
    other = json.loads(metrics.read_text())
    other["config"]["lr"] = 0.5
    metrics.write_text(json.dumps(other))
    with pytest.raises(ConfigError, match="another configuration"):
        seed_spread.sweep(metrics, [3], tmp_path / "runs")
