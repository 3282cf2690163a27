"""The class view of calibration, operating points and robustness (``medssl.course.aggregate_decisions``).

Folders are written by hand with known numbers, so every mean, std and row order below is checked against
values worked out here, not against the aggregator's own output.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from medssl.course import aggregate
from medssl.course import aggregate_decisions as AD

OP_HEADER = ("positive_class,point,rule,threshold,val_tpr,val_fpr,test_sensitivity,test_specificity,test_ppv,"
             "test_npv,test_f1,test_accuracy,test_tp,test_fp,test_tn,test_fn\n")
ROB_HEADER = "perturbation,severity,level,acc,auroc,ece,d_acc,d_auroc,d_ece\n"


def _folder(root: Path, week: int, dataset: str, student: str, smoke: bool = False) -> Path:
    f = root / f"week{week}" / dataset / student
    f.mkdir(parents=True)
    (f / "metrics_x.json").write_text(json.dumps({"course": {"smoke": smoke}}))
    return f


def _op_rows(f: Path, sens_tpr: float, spec_fpr: float) -> None:
    (f / "operating_points.csv").write_text(
        OP_HEADER
        + f"1 (pneumonia),target_fpr,r,0.7,0.6,0.1,0.55,{spec_fpr},0.9,0.5,0.6,0.7,1,2,3,4\n"
        + "1 (pneumonia),default,r,0.5,0.8,0.2,0.8,0.6,0.7,0.5,0.6,0.7,1,2,3,4\n"
        + f"1 (pneumonia),target_tpr,r,0.2,0.91,0.4,{sens_tpr},0.3,0.6,0.5,0.6,0.7,1,2,3,4\n")


def _rob_rows(f: Path, task: str, severe_auroc: float) -> None:
    (f / f"{task}_robustness_table.csv").write_text(
        ROB_HEADER
        + "clean,none,0.0,0.9,0.95,0.05,0,0,0\n"
        + f"blur,severe,2.0,0.7,{severe_auroc},0.2,-0.2,{severe_auroc - 0.95},0.15\n"
        + "blur,mild,0.5,0.88,0.93,0.06,-0.02,-0.02,0.01\n")


def test_operating_points_are_averaged_per_dataset_and_point_in_a_fixed_order(tmp_path):
    _op_rows(_folder(tmp_path, 7, "pneumoniamnist", "alice"), sens_tpr=0.90, spec_fpr=0.92)
    _op_rows(_folder(tmp_path, 7, "pneumoniamnist", "bob"), sens_tpr=0.96, spec_fpr=0.88)
    _op_rows(_folder(tmp_path, 7, "pneumoniamnist", "smoky", smoke=True), sens_tpr=0.0, spec_fpr=0.0)
    rows = AD.collect_operating_points(tmp_path)
    assert {r["student"] for r in rows} == {"alice", "bob"}              # smoke folder left out
    assert len(AD.collect_operating_points(tmp_path, include_smoke=True)) == 9
    tpr = sorted(r["sensitivity"] for r in rows if r["point"] == "target_tpr")
    assert tpr == [0.90, 0.96]                                             # test_ columns, not val_ ones
    md = AD.markdown([], rows, [])
    lines = [ln for ln in md.splitlines() if ln.startswith("| pneumoniamnist")]
    assert [ln.split(" | ")[1] for ln in lines] == ["default", "target_tpr", "target_fpr"]
    # target_tpr: sensitivity mean 0.93, std (ddof 1) of (0.90, 0.96) = 0.0424; val TPR 0.91 for both
    assert lines[1] == ("| pneumoniamnist | target_tpr | 0.2000 ± 0.0000 | 0.910 ± 0.000 | 0.400 ± 0.000 | "
                        "0.930 ± 0.042 | 0.300 ± 0.000 | 0.600 ± 0.000 | 2 |")
    assert "0.900 ± 0.028" in lines[2]                                    # specificity of (0.92, 0.88)


def test_robustness_rows_sorted_by_severity_and_clean_row_not_listed_as_a_shift(tmp_path):
    _rob_rows(_folder(tmp_path, 8, "pneumoniamnist", "lead"), "P8-1", severe_auroc=0.75)
    _rob_rows(_folder(tmp_path, 8, "breastmnist", "lead"), "B8-1", severe_auroc=0.65)
    rows = AD.collect_robustness(tmp_path)
    assert {(r["dataset"], r["task"]) for r in rows} == {("pneumoniamnist", "P8-1"), ("breastmnist", "B8-1")}
    md = AD.markdown([], [], rows)
    body = [ln for ln in md.splitlines() if ln.startswith("| breastmnist") or ln.startswith("| pneumoniamnist")]
    assert [ln.split(" | ")[2] for ln in body] == ["mild", "severe", "mild", "severe"]   # mild before severe
    assert "clean" not in md
    assert "| breastmnist | blur | severe | 0.650 ± 0.000 | -0.300 ± 0.000 |" in md
    fig = AD.robustness_figure(rows)
    ax = fig.axes[0]                                                       # breastmnist first (sorted)
    (blur,) = ax.containers                                                # one errorbar line: blur
    line = blur.lines[0]
    assert blur.get_label() == "blur"
    assert list(line.get_xdata()) == [1, 3] and list(line.get_ydata()) == pytest.approx([0.93, 0.65])
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(0.95)        # the clean level, dashed


def test_temperature_rows_and_the_full_aggregate_writes_all_three_views(tmp_path):
    results = tmp_path / "results"
    for student, t, after in (("alice", 1.5, 0.04), ("bob", 2.5, 0.06)):
        f = _folder(results, 6, "pneumoniamnist", student)
        (f / "P1_temp_scaling_ece.json").write_text(json.dumps(
            {"temperature": t, "ece_before": 0.12, "ece_after": after, "auroc_before": 0.9, "auroc_after": 0.9,
             "nll_before": 0.5, "nll_after": 0.4, "fitted_on": "val logits"}))
    _op_rows(_folder(results, 7, "pneumoniamnist", "alice"), 0.9, 0.9)
    _rob_rows(_folder(results, 8, "pneumoniamnist", "alice"), "P8-1", 0.7)
    res = aggregate.aggregate(results)
    assert (res["n_temperature_scaling"], res["n_operating_points"], res["n_robustness"]) == (2, 3, 3)
    md = Path(res["paths"]["summary_md"]).read_text()
    assert "| pneumoniamnist | 2.00 ± 0.71 | 0.120 ± 0.000 | 0.050 ± 0.014 |" in md
    assert "## Operating points" in md and "## Robustness" in md
    for key in ("calibration_png", "operating_points_png", "robustness_png", "operating_points_csv",
                "robustness_csv", "temperature_scaling_csv"):
        assert Path(res["paths"][key]).is_file(), key
