"""Issue forms and reference-summary stubs (issue 13, item 7)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medssl.course import manifest as M
from medssl.course.check import check_references, check_tree
from medssl.course.tasks import write_reference_stub

FORMS = Path(__file__).resolve().parents[1] / ".github" / "ISSUE_TEMPLATE"


def _dropdown(form: dict, field_id: str) -> list[str]:
    (field,) = [b for b in form["body"] if b.get("id") == field_id]
    assert field["type"] == "dropdown"
    return field["attributes"]["options"]


def test_signup_form_lists_exactly_the_manifest_datasets():
    form = yaml.safe_load((FORMS / "signup.yml").read_text())
    assert form["title"].startswith("Signup: ") and "— primary=" in form["title"]
    assert _dropdown(form, "dataset") == list(M.DATASETS)


def test_extra_task_form_lists_exactly_the_manifest_task_ids_and_datasets():
    form = yaml.safe_load((FORMS / "extra_task.yml").read_text())
    assert form["title"].startswith("Week5 extra: <task_id> – <dataset> – ")
    assert _dropdown(form, "task_id") == list(M.EXTRA_TASK_IDS)
    assert _dropdown(form, "dataset") == list(M.DATASETS)


def test_reference_stub_is_to_write_until_filled_in(tmp_path):
    path = write_reference_stub(tmp_path, "p1", "alice")
    assert path == tmp_path / "reports" / "references" / "P1_alice.md"
    (report,) = check_references(tmp_path)
    assert report.week == M.task("P1").week and report.tasks == ["P1"]
    assert [(p.level, p.file) for p in report.problems] == [("to write", "P1_alice.md")]
    (tmp_path / "results").mkdir()
    assert any(p.file == "P1_alice.md" for r in check_tree(tmp_path) for p in r.of("to write"))
    # a written summary is no longer listed, and writing the stub again never overwrites it
    path.write_text("# P1 — Guo et al. 2017\n\nKey idea: temperature scaling on validation NLL.\n")
    assert write_reference_stub(tmp_path, "P1", "alice").read_text().startswith("# P1 — Guo")
    (report,) = check_references(tmp_path)
    assert report.problems == [] and report.checked == ["P1_alice.md"]
