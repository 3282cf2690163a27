"""Extra tasks (Weeks 5-8): the reference-summary stub a task's Lead writes, and the task board."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..utils import write_text
from . import manifest as M


def reference_stub_path(root: str | os.PathLike, task_id: str, shortname: str) -> Path:
    """``reports/references/<task_id>_<shortname>.md`` below the course ``root``."""
    short = "".join(c if (c.isalnum() or c in "-.") else "-" for c in str(shortname).strip()).strip("-.")
    if not short:
        raise ConfigError("a reference summary needs a short name (e.g. your name or 'guo2017').")
    return Path(root) / "reports" / "references" / f"{M.task(task_id).id}_{short}.md"


def write_reference_stub(root: str | os.PathLike, task_id: str, student: str, shortname: str | None = None) -> Path:
    """Write the reference-summary stub of an extra task a student owns, unless it exists already.

    The stub carries ``TODO(student)`` marks, so ``course check`` lists it as *to write*
    until the Lead has filled it in. An existing file (written or not) is never touched.
    """
    task = M.task(task_id)
    path = reference_stub_path(root, task.id, shortname or student)
    if path.exists():
        return path
    mark = M.STUDENT_MARK
    text = "\n".join([
        f"# {task.id} — {mark}: short title of the reference", "",
        f"**Reference:** {mark}: authors, \"title\", venue, year, link.",
        f"**Task:** {task.id} ({task.focus}, Week {task.week}: {task.title}) · **Lead:** {student} · "
        f"**Reviewer:** {mark}", "",
        "## Summary (8-12 lines)", "",
        f"- **Key idea:** {mark}",
        f"- **Protocol or metric it recommends:** {mark}",
        f"- **How we use it in our MedMNIST setup:** {mark}",
        f"- **What it does not cover / caveats:** {mark}", "",
        "## Reviewer sanity check (3-5 lines)", "",
        f"{mark}: did the numbers reproduce with the same seed and command? Does the interpretation follow?", ""])
    return write_text(path, text)


# ================================================================== the task board
def task_board_markdown() -> str:
    """``reports/task_board_week5_7.md``: every extra task from the manifest with Owner 1 / Owner 2 columns."""
    short = {"pneumoniamnist": "pneumo", "breastmnist": "breast"}
    rows = M.task_board_rows()
    lines = ["# Task board: extra tasks, Weeks 5-8", "",
             "Everyone does the core of every week on their primary dataset (no sign-up needed). On top of that, "
             "sign up for **1-2 extra tasks** below by writing your name in a free Owner column and opening an issue "
             "titled `Week5 extra: <task_id> – <dataset> – <your_name>` that links your results folder.", "",
             "- **Owner 1 (Lead)** produces the artifacts and the short write-up, and adds >= 1 reference summary "
             "in `reports/references/<task_id>_<shortname>.md` (see `reports/references/TEMPLATE.md`).",
             "- **Owner 2 (Reviewer/Runner)** re-runs or sanity-checks the results and reviews the interpretation "
             "(3-5 lines in the reference file).",
             "- If one team is much larger, its members take at least one task of the other dataset as helpers.",
             "- Each task is a switchable section of its week's notebook: `EXTRA_TASKS = [\"P1\"]` (or run "
             "`python -m medssl.course run --week 6 --dataset pneumoniamnist --student <you> -p EXTRA_TASKS "
             "'[\"P1\"]'`). Its files land in `results/week<N>/<dataset>/<your_name>/` with the task id as prefix.",
             ""]
    for title, weeks in (("Weeks 5-7", (5, 6, 7)), ("Week 8 (team tasks: each dataset team completes all three)",
                                                   (8,))):
        lines += [f"## {title}", "", "| Task | Week | Dataset | Description | Deliverables | Owner 1 | Owner 2 |",
                  "|------|------|---------|-------------|--------------|---------|---------|"]
        for r in rows:
            if r["week"] in weeks:
                lines.append(f"| {r['task']} | {r['week']} | {short.get(r['dataset'], r['dataset'])} | {r['title']} | "
                             f"{r['deliverables']} | | |")
        lines.append("")
    lines += ["_Generated from `medssl/course/manifest.py` (`python -c \"from medssl.course.tasks import "
              "task_board_markdown; print(task_board_markdown())\"`); keep the task list in sync by regenerating, "
              "then fill in names._", ""]
    return "\n".join(lines)
