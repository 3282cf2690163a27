"""Label-efficiency grid: CSV schema, mean/std, shared indices across methods, resume."""

from __future__ import annotations

import csv
import json
import math
import statistics

import pandas as pd
import pytest
import torch

from medssl.data import indices_filename, load_split
from medssl.efficiency import (
    RAW_COLUMNS,
    SUMMARY_COLUMNS,
    GridConfig,
    build_parser,
    config_from_args,
    run_grid,
    summarize,
)
from medssl.errors import ConfigError, OutputExistsError
from medssl.models import build_model, save_encoder
from medssl.utils import write_json

FRACS, SEEDS, METHODS = [0.05, 0.1], [0, 1], ["probe", "finetune", "scratch"]
CUSTOM = list(range(0, 24, 2))       # a hand-made labelled subset for (0.05, seed 1): 12 images


def _grid_cfg(root, encoder, **kw):
    base = dict(encoder=str(encoder), root=str(root), fractions=FRACS, seeds=SEEDS, methods=METHODS, epochs=1,
                min_steps=1, batch_size=32, progress=False, device="cpu")
    return GridConfig("synthetic", **(base | kw))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid")
    root = tmp / "data"
    torch.manual_seed(0)
    encoder = tmp / "ssl_encoder.pt"
    save_encoder(build_model("smallcnn", 2, 1), encoder)
    out = tmp / "grid"
    # an indices file that already exists must be used by every method, not redrawn
    labels = load_split("synthetic", "train", root=root).labels
    write_json(out / "indices" / indices_filename(0.05, 1),
               {"dataset": "synthetic", "frac": 0.05, "seed": 1, "n_total": len(labels), "indices": CUSTOM})
    cfg = _grid_cfg(root, encoder)
    res = run_grid(cfg, out)
    return {"res": res, "out": out, "root": root, "encoder": encoder, "cfg": cfg}


def test_grid_files_and_csv_schema(grid):
    out = grid["out"]
    for f in ("label_grid.csv", "label_grid_runs.csv", "label_grid.md", "label_efficiency.png", "grid_config.json"):
        assert (out / f).stat().st_size > 0, f
    with open(out / "label_grid.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert tuple(summary[0].keys()) == SUMMARY_COLUMNS
    assert len(summary) == len(FRACS) * len(METHODS)
    assert {(r["method"], float(r["fraction"])) for r in summary} == {(m, f) for m in METHODS for f in FRACS}
    with open(out / "label_grid_runs.csv") as fh:
        raw = list(csv.DictReader(fh))
    assert tuple(raw[0].keys()) == RAW_COLUMNS
    assert len(raw) == len(FRACS) * len(SEEDS) * len(METHODS)
    assert len(list((out / "runs").glob("*.json"))) == len(raw)
    # mean and sample std recomputed independently from the raw rows
    for r in summary:
        vals = [float(x["auroc"]) for x in raw if x["method"] == r["method"] and float(x["fraction"]) ==
                float(r["fraction"])]
        assert int(r["n_seeds"]) == len(vals) == 2
        assert float(r["auroc_mean"]) == pytest.approx(statistics.mean(vals))
        assert float(r["auroc_std"]) == pytest.approx(statistics.stdev(vals))
    cfg = json.loads((out / "grid_config.json").read_text())
    assert cfg["status"] == "done" and cfg["config"]["seeds"] == SEEDS and cfg["synthetic"] is True
    md = (out / "label_grid.md").read_text()
    assert "SYNTHETIC" in md and "±" in md


def test_all_methods_share_the_saved_indices(grid):
    out = grid["out"]
    raw = pd.read_csv(out / "label_grid_runs.csv")
    files = sorted(p.name for p in (out / "indices").glob("*.json"))
    assert files == sorted(indices_filename(f, s) for f in FRACS for s in SEEDS)
    for (frac, seed), g in raw.groupby(["fraction", "seed"]):
        assert sorted(g["method"]) == sorted(METHODS)
        assert g["indices_md5"].nunique() == 1 and g["n_labels"].nunique() == 1
        assert set(g["indices_file"]) == {indices_filename(frac, seed)}
    custom = raw[(raw["fraction"] == 0.05) & (raw["seed"] == 1)]
    assert set(custom["n_labels"]) == {len(CUSTOM)}                  # the pre-existing file was reused
    drawn = raw[(raw["fraction"] == 0.05) & (raw["seed"] == 0)]
    assert set(drawn["n_labels"]) == {20}                           # 5% of 200 per class


def test_resume_keeps_runs_and_checks_settings(grid):
    out = grid["out"]
    before = (out / "label_grid.csv").read_text()
    again = run_grid(_grid_cfg(grid["root"], grid["encoder"]), out, resume=True)
    assert again["record"]["n_new_runs"] == 0
    assert (out / "label_grid.csv").read_text() == before
    with pytest.raises(ConfigError, match="lr"):
        run_grid(_grid_cfg(grid["root"], grid["encoder"], lr=0.1), out, resume=True)
    with pytest.raises(OutputExistsError, match="--resume"):
        run_grid(_grid_cfg(grid["root"], grid["encoder"]), out)


def test_summarize_single_seed_has_nan_std():
    raw = pd.DataFrame([{"dataset": "d", "method": "probe", "fraction": 0.1, "pct": 10.0, "seed": 0, "n_labels": 5,
                         "auroc": 0.8, "acc": 0.7, "ece": 0.1, "f1_macro": 0.6, "sensitivity": 0.5,
                         "specificity": 0.9}])
    s = summarize(raw)
    assert s.loc[0, "auroc_mean"] == 0.8 and math.isnan(s.loc[0, "auroc_std"]) and s.loc[0, "n_seeds"] == 1


def test_grid_cli_arguments(tmp_path):
    args = build_parser().parse_args(["--dataset", "breastmnist", "--encoder", "e.pt", "--out", str(tmp_path),
                                      "--seed", "7", "--n-seeds", "2", "--fractions", "0.1", "0.01"])
    cfg = config_from_args(args).validate()
    assert cfg.seeds == [7, 8] and cfg.fractions == [0.01, 0.1] and cfg.methods == ["probe", "finetune", "scratch"]
    with pytest.raises(ConfigError, match="methods"):
        GridConfig("synthetic", encoder="e.pt", methods=["byol"]).validate()
    with pytest.raises(ConfigError, match="--encoder"):
        GridConfig("synthetic", methods=["probe"]).validate()


def test_both_label_fraction_figures_share_the_log_percent_axis():
    import pandas as pd

    from medssl.course.lessons import fraction_figure
    from medssl.efficiency import label_efficiency_plot

    rows = [{"method": m, "fraction": f, "auroc": 0.7 + f / 10}
            for m in ("probe", "supervised") for f in (0.05, 0.1, 1.0)]
    summary = pd.DataFrame({"method": ["probe"] * 3, "fraction": [0.05, 0.1, 1.0], "pct": [5.0, 10.0, 100.0],
                            "auroc_mean": [0.7, 0.75, 0.8], "auroc_std": [0.01, float("nan"), 0.0]})
    for fig in (fraction_figure(rows, "auroc"), label_efficiency_plot(summary, "auroc")):
        ax = fig.axes[0]
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "100"]
        assert ax.get_xlabel() == "labelled training images (%)" and ax.get_ylabel() == "test auroc"
