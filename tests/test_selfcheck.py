"""The self-check machinery: stored cases, PASS/FAIL/TODO, the first mismatch, self_checks.json, and the fallback."""

import json

import numpy as np
import pytest
import torch

from medssl.course.selfcheck import SelfChecks, decode, encode, first_mismatch, record_cases
from medssl.errors import ConfigError


def _square_sum(x, scale=1.0):
    return (x ** 2).sum() * scale


def _expected():
    cases = [{"args": [torch.tensor([1.0, 2.0])]}, {"args": [np.array([3.0, 4.0])], "kwargs": {"scale": 2.0}}]
    return {"checks": {"sq": {"cases": record_cases(_square_sum, cases), "atol": 1e-6, "rtol": 0.0}}}


def test_encode_decode_keeps_kind_dtype_and_shape():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = np.arange(4, dtype=np.int64).reshape(4, 1)
    back = decode(json.loads(json.dumps(encode([t, {"a": a}, 0.5, "x"]))))
    assert isinstance(back[0], torch.Tensor) and back[0].dtype == torch.float32 and torch.equal(back[0], t)
    assert isinstance(back[1]["a"], np.ndarray) and back[1]["a"].dtype == np.int64 and (back[1]["a"] == a).all()
    assert back[2:] == [0.5, "x"]


def test_record_cases_stores_the_reference_outputs():
    spec = _expected()["checks"]["sq"]
    assert [decode(c["want"]) for c in spec["cases"]] == [pytest.approx(5.0), pytest.approx(50.0)]


def test_pass_fail_todo_and_the_json_record(tmp_path):
    sc = SelfChecks(week=4, out_dir=tmp_path, expected=_expected())
    assert sc.compare("sq", _square_sum) is True

    def wrong(x, scale=1.0):  # forgets the scale: case 2 differs
        return (x ** 2).sum()
    assert sc.compare("sq", wrong) is False
    rec = json.loads((tmp_path / "self_checks.json").read_text())
    assert rec["week"] == 4 and rec["checks"]["sq"]["status"] == "FAIL"
    assert "case 2 of 2" in rec["checks"]["sq"]["message"] and "expected 50" in rec["checks"]["sq"]["message"]

    def stub(x, scale=1.0):
        raise NotImplementedError()
    assert sc.compare("sq", stub) is False
    assert sc.status("sq") == "TODO"
    assert json.loads((tmp_path / "self_checks.json").read_text())["checks"]["sq"]["status"] == "TODO"


def test_a_crash_in_the_students_code_is_a_fail_not_a_traceback(tmp_path):
    sc = SelfChecks(week=4, out_dir=tmp_path, expected=_expected())
    assert sc.compare("sq", lambda x, scale=1.0: x.nonexistent) is False
    assert sc.status("sq") == "FAIL" and "AttributeError" in sc.results["sq"]["message"]


def test_first_mismatch_names_the_first_differing_element():
    assert first_mismatch(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.5]), 1e-6, 0) == \
        "got 2 at index (1,), expected 2.5"
    assert "shape (2,), expected (3,)" == first_mismatch([1, 2], [1, 2, 3], 1e-6, 0)
    assert first_mismatch({"a": 1.0}, {"a": 1.0, "b": 2}, 1e-6, 0) == "missing key 'b'"
    assert first_mismatch(float("nan"), float("nan"), 1e-6, 0) is None
    assert first_mismatch(1.0 + 1e-3, 1.0, 1e-6, 0) is not None


def test_properties_and_pick(tmp_path, capsys):
    sc = SelfChecks(week=5, out_dir=tmp_path, expected={"checks": {}})
    assert sc.properties("p", [("one is one", lambda: 1 == 1), ("two is two", lambda: 2 == 2)])
    assert sc.pick("p", "mine", "library") == "mine"
    assert not sc.properties("q", [("ok", lambda: True), ("broken", lambda: False)])
    assert "broken" in sc.results["q"]["message"]
    assert sc.pick("q", "mine", "library") == "library"
    assert sc.pick("never run", "mine", "library") == "library"
    out = capsys.readouterr().out
    assert "using your p" in out and "using the library's q (your self-check: FAIL)" in out


def test_results_survive_a_restart_until_the_check_runs_again(tmp_path):
    SelfChecks(week=4, out_dir=tmp_path, expected=_expected()).compare("sq", _square_sum)
    again = SelfChecks(week=4, out_dir=tmp_path, expected=_expected())
    assert again.status("sq") == "PASS"


def test_missing_expected_values_or_check_name_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Rebuild the notebooks"):
        SelfChecks(week=4, out_dir=tmp_path, expected=tmp_path / "nope.json")
    sc = SelfChecks(week=4, out_dir=tmp_path, expected=_expected())
    with pytest.raises(ConfigError, match="no stored cases for self-check 'nt_xent'"):
        sc.compare("nt_xent", _square_sum)


def test_check_is_cases_then_properties_and_the_first_failure_wins(tmp_path, capsys):
    sc = SelfChecks(week=4, out_dir=tmp_path, expected=_expected())
    assert sc.check("sq", _square_sum, properties=[("non-negative", lambda: _square_sum(np.array([-2.0])) >= 0)]) \
        is None
    assert sc.status("sq") == "PASS" and sc.results["sq"]["message"] == \
        "all 2 stored cases match and the 1 property holds."
    sc.check("sq", lambda x, scale=1.0: (x ** 2).sum(), properties=[("never run", lambda: 1 / 0)])
    assert sc.status("sq") == "FAIL" and sc.results["sq"]["message"].startswith("case 2 of 2")
    sc.check("sq", _square_sum, properties=[("is negative", lambda: _square_sum(np.array([1.0])) < 0)])
    assert sc.status("sq") == "FAIL" and sc.results["sq"]["message"] == "is negative: not true for your code."
    assert "FAIL  sq: is negative" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="give a function"):
        sc.check("sq")


def test_first_mismatch_walks_sequences_of_arrays_of_different_shapes():
    want = [np.zeros((2, 2)), np.ones(3)]
    assert first_mismatch([np.zeros((2, 2)), np.ones(3)], want, 1e-6, 0) is None
    assert first_mismatch([np.zeros((2, 2)), np.array([1.0, 2.0, 1.0])], want, 1e-6, 0) == \
        "item 1: got 2 at index (1,), expected 1"
    assert first_mismatch([np.zeros((2, 2))], want, 1e-6, 0) == "expected a sequence of 2 items, got list of 1"


def test_expected_file_is_one_line_per_case_and_float32_round_trips_exactly(tmp_path):
    from medssl.course.selfcheck import expected_from_spec, write_expected

    x = torch.tensor([0.1, 1 / 3, 1e-8], dtype=torch.float32)
    spec = {"id": {"reference": lambda t: t * 1, "cases": [{"args": [x]}, {"args": [2 * x]}], "atol": 0, "rtol": 0}}
    path = write_expected(tmp_path / "w.json", expected_from_spec(spec))
    text = path.read_text()
    assert text.count('{"args"') == 2 and len(text.splitlines()) == 12 and "0.1," in text   # not 0.10000000149
    case = json.loads(text)["checks"]["id"]["cases"][0]
    assert torch.equal(decode(case["want"]), x) and decode(case["want"]).dtype == torch.float32
