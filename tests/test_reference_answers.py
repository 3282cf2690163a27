"""The course team's reference answers: filled in order under their prompts, and told apart from a submission."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medssl.course import manifest as M
from medssl.course.check import check_folder
from medssl.course.readme import Readme, answer_places
from medssl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (Readme("Week 1").p("numbers").student("What do the numbers say?").p("more")
            .student("One bug you hit.").render())


def test_answers_land_under_their_own_prompts_in_order():
    out = answer_places(_readme(), ["AUROC 0.84 beats the prior.", "A stale kernel."])
    assert M.STUDENT_MARK not in out
    assert out.count(M.REFERENCE_MARK) == 2
    first, second = out.index("What do the numbers say?"), out.index("One bug you hit.")
    assert first < out.index("AUROC 0.84 beats the prior.") < second < out.index("A stale kernel.")
    assert "numbers" in out and "more" in out          # the generated text around the places is kept


@pytest.mark.parametrize("answers", [["only one"], ["one", "two", "three"], ["one", "  "]])
def test_a_wrong_number_of_answers_or_an_empty_one_is_refused(answers):
    with pytest.raises(ConfigError, match="answer"):
        answer_places(_readme(), answers)


def _week1_folder(tmp_path: Path, student: str) -> Path:
    src = REPO / "results" / "week1" / "breastmnist" / "reference"
    if not src.is_dir():
        pytest.skip("no committed Week 1 reference folder")
    dst = tmp_path / "results" / "week1" / "breastmnist" / student
    shutil.copytree(src, dst)
    readme = dst / "README_week1.md"
    text = readme.read_text()
    n = text.count(M.STUDENT_MARK)
    if n:
        text = answer_places(text, [f"answer {i}" for i in range(n)])
    readme.write_text(text)
    return dst


def test_reference_answers_count_as_written_only_in_the_reference_folder(tmp_path):
    ref = check_folder(_week1_folder(tmp_path, "reference"))
    assert not [p for p in ref.problems if p.file == "README_week1.md"]
    copied = check_folder(_week1_folder(tmp_path, "alice"))
    flagged = [p for p in copied.problems if p.file == "README_week1.md"]
    assert [p.level for p in flagged] == ["to write"]
    assert "reference answer" in flagged[0].message and "your own words" in flagged[0].message
