"""``course check`` reports the self-checks a notebook recorded in ``self_checks.json``."""

import json

import pytest
from test_course import make_folder

from medssl.course import check, cli


def _write(folder, week, checks):
    (folder / check.SELF_CHECKS_FILE).write_text(json.dumps({"week": week, "checks": checks}))


def test_failed_and_unfinished_exercises_are_listed_and_fail_only_a_strict_check(tmp_path, capsys):
    folder = make_folder(tmp_path / "results" / "week4" / "breastmnist" / "alice", 4)
    _write(folder, 4, {"nt_xent": {"status": "FAIL", "message": "case 2 of 3: got 1.2, expected 2.4"},
                       "projection_head": {"status": "TODO", "message": "not implemented yet"},
                       "two_views": {"status": "PASS", "message": "all 4 properties hold."}})
    rep = check.check_folder(folder)
    got = {(p.file, p.message) for p in rep.of("exercise")}
    assert got == {("self-check nt_xent", "FAIL: case 2 of 3: got 1.2, expected 2.4"),
                   ("self-check projection_head", "TODO: not implemented yet")}
    assert rep.passed() and not rep.passed(strict=True)
    assert check.SELF_CHECKS_FILE in rep.checked
    assert not any(p.file == check.SELF_CHECKS_FILE for p in rep.of("note"))   # a known file, not an extra
    assert cli.main(["check", str(folder)]) == 0
    assert cli.main(["check", "--strict", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "exercise  self-check nt_xent: FAIL: case 2 of 3" in out


def test_all_passed_is_clean(tmp_path):
    folder = make_folder(tmp_path / "results" / "week4" / "breastmnist" / "alice", 4)
    _write(folder, 4, {"nt_xent": {"status": "PASS", "message": ""}})
    rep = check.check_folder(folder)
    assert not rep.of("exercise") and rep.passed(strict=True), rep.format()


@pytest.mark.parametrize("content", ["{not json", json.dumps({"week": 4}), json.dumps({"checks": {"a": 3}})])
def test_an_unreadable_record_is_malformed(tmp_path, content):
    folder = make_folder(tmp_path / "results" / "week4" / "breastmnist" / "alice", 4)
    (folder / check.SELF_CHECKS_FILE).write_text(content)
    rep = check.check_folder(folder)
    assert [p.file for p in rep.of("malformed")] == [check.SELF_CHECKS_FILE] and not rep.passed()


def test_another_weeks_record_is_malformed(tmp_path):
    folder = make_folder(tmp_path / "results" / "week4" / "breastmnist" / "alice", 4)
    _write(folder, 5, {"nt_xent": {"status": "PASS"}})
    rep = check.check_folder(folder)
    assert any("Week 5's self-checks, not Week 4's" in p.message for p in rep.of("malformed"))


def test_a_missing_record_is_listed_for_weeks_with_exercises(tmp_path, monkeypatch):
    folder = make_folder(tmp_path / "results" / "week4" / "breastmnist" / "alice", 4)
    (folder / check.SELF_CHECKS_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(check, "week_has_exercises", lambda week: week == 4)
    rep = check.check_folder(folder)
    assert [p.file for p in rep.of("exercise")] == [check.SELF_CHECKS_FILE] and rep.passed()
    monkeypatch.setattr(check, "week_has_exercises", lambda week: False)
    assert not check.check_folder(folder).of("exercise")
