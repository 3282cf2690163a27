"""The mutation-score script's sampling and scoring (the mutmut runs themselves are not run here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mutation_score.py"
spec = importlib.util.spec_from_file_location("mutation_score", SCRIPT)
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)


@pytest.mark.parametrize("killed,n", [(0, 10), (5, 10), (10, 10), (389, 400), (1, 3)])
def test_wilson_interval_matches_scipy(killed, n):
    ci = binomtest(killed, n).proportion_ci(method="wilson")
    assert ms.wilson_interval(killed, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_sample_is_uniform_without_replacement_and_repeatable():
    names = [f"medssl.decisions.x_f__mutmut_{i}" for i in range(1, 2032)]
    a = ms.draw_sample(names, 400, seed=0)
    assert len(a) == len(set(a)) == 400 and set(a) <= set(names)
    assert a == ms.draw_sample(list(reversed(names)), 400, seed=0)    # the same draw whatever the listing order
    assert a != ms.draw_sample(names, 400, seed=1)
    assert ms.draw_sample(names[:5], 400, seed=0) == sorted(names[:5])  # a sample larger than the module: all
    # uniform: over many seeds, the first and the last 10 % of the mutants are drawn about equally often
    counts = [0, 0]
    for seed in range(200):
        s = ms.draw_sample(names, 40, seed)
        counts[0] += sum(n in names[:203] for n in s)
        counts[1] += sum(n in names[-203:] for n in s)
    assert abs(counts[0] - counts[1]) < 0.15 * sum(counts) / 2


def test_a_sampled_run_scores_only_its_sample(tmp_path):
    meta = tmp_path / "decisions" / "mutants" / "src" / "medssl" / "decisions.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"m.x_a__mutmut_1": 1, "m.x_a__mutmut_2": 0, "m.x_a__mutmut_3": 1, "m.x_a__mutmut_4": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    assert ms.read_results(tmp_path, ["decisions"])["decisions"] == codes
    (tmp_path / "decisions" / ms.SAMPLE).write_text(json.dumps({"population": 4, "seed": 0,
                                                                "mutants": ["m.x_a__mutmut_1", "m.x_a__mutmut_3"]}))
    # the survivor _2 and the untested _4 were not drawn: they do not count
    assert ms.read_results(tmp_path, ["decisions"])["decisions"] == {"m.x_a__mutmut_1": 1, "m.x_a__mutmut_3": 1}
    (tmp_path / "decisions" / ms.RECHECK).write_text(json.dumps({"m.x_a__mutmut_3": 0}))   # a later re-run
    row, = ms.score(ms.read_results(tmp_path, ["decisions"]), lambda name: "", [])
    assert (row["killed"], row["survived"], row["kill_ratio"]) == (1, 1, 0.5)
