"""The submission checker: does a results folder hold what :mod:`medssl.course.manifest` asks of its week?

Every problem has a level. ``missing`` and ``malformed`` fail the check; ``to add`` (a file the student makes
by hand, such as a screenshot), ``to write`` (a place left for the student's own words) and ``exercise`` (a
self-check of a *your turn* exercise that did not pass, from ``self_checks.json``) are listed, and fail it only when
strict; a ``note`` is for information.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from . import manifest as M

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SELF_CHECKS_FILE = "self_checks.json"
LEVELS = ("missing", "malformed", "to add", "to write", "exercise", "note")
FAILING = ("missing", "malformed")
TO_DO = ("to add", "to write", "exercise")  # listed; fail the check only when strict


@dataclass
class Problem:
    level: str        # one of LEVELS
    file: str
    message: str = ""

    def line(self) -> str:
        msg = f"  {self.level:<9} {self.file}"
        return msg + (f": {self.message}" if self.message else "")


@dataclass
class CheckReport:
    folder: Path
    week: int
    dataset: str | None = None
    student: str | None = None
    tasks: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def add(self, level: str, file: str, message: str = "") -> None:
        self.problems.append(Problem(level, file, message))

    def of(self, *levels: str) -> list[Problem]:
        return [p for p in self.problems if p.level in levels]

    def passed(self, strict: bool = False) -> bool:
        return not self.of(*FAILING, *(TO_DO if strict else ()))

    def format(self, strict: bool = False, label: str | None = None) -> str:
        label = label or str(self.folder)
        status = "OK" if self.passed(strict) else f"FAILED ({len(self.of(*FAILING))} problem(s))"
        if self.passed(strict) and strict is False and self.of(*TO_DO):
            status = "OK (still to do by hand, see below)"
        what = f"Week {self.week}" + (f", {self.dataset}" if self.dataset else "") + (
            f", {self.student}" if self.student else "")
        tasks = f"; extra tasks: {', '.join(self.tasks)}" if self.tasks else ""
        lines = [f"{label}  [{what}{tasks}]  {status}"]
        order = {lvl: i for i, lvl in enumerate(LEVELS)}
        lines += [p.line() for p in sorted(self.problems, key=lambda p: order[p.level])]
        return "\n".join(lines)


def _get(obj, dotted: str):
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_value(rule: M.KeyRule, value) -> str | None:
    """Why ``value`` breaks ``rule`` (None when it is fine)."""
    k = rule.kind
    if k in ("prob", "number", "int"):
        if not _is_number(value):
            return f"'{rule.key}' should be a number, got {value!r}"
        if isinstance(value, float) and math.isnan(value):
            return f"'{rule.key}' is NaN (was one class missing from the split, or did training diverge?)"
        if k == "int" and not float(value).is_integer():
            return f"'{rule.key}' should be a whole number, got {value!r}"
        lo, hi = (0.0, 1.0) if k == "prob" else (rule.lo, rule.hi)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return (f"'{rule.key}' is {value:g}, outside "
                    f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]")
        return None
    if k == "str":
        return None if isinstance(value, str) and value else f"'{rule.key}' should be a non-empty string"
    if k == "list":
        return None if isinstance(value, list) and value else f"'{rule.key}' should be a non-empty list"
    if k == "dict":
        return None if isinstance(value, dict) else f"'{rule.key}' should be an object"
    if k == "counts":
        ok = isinstance(value, list) and value and all(isinstance(v, int) and v >= 0 for v in value)
        return None if ok else f"'{rule.key}' should be a list of counts (non-negative integers), got {value!r}"
    if k == "matrix":
        ok = (isinstance(value, list) and value and all(isinstance(r, list) and len(r) == len(value) for r in value)
              and all(isinstance(v, int) and v >= 0 for r in value for v in r))
        return None if ok else f"'{rule.key}' should be a square matrix of counts, got {value!r}"
    return None


def _check_json(path: Path, spec: M.FileSpec, report: CheckReport) -> None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("malformed", path.name, f"not valid JSON ({exc})")
        return
    if not isinstance(data, dict):
        report.add("malformed", path.name, "should hold a JSON object {...}")
        return
    absent = []
    for rule in spec.keys:
        try:
            value = _get(data, rule.key)
        except KeyError:
            absent.append(rule.key)
            continue
        why = check_value(rule, value)
        if why:
            report.add("malformed", path.name, why)
    if absent:
        report.add("malformed", path.name, f"missing key(s) {', '.join(absent)}")
    if spec.keys is M.METRIC_RULES:
        cm, counts = data.get("confusion_matrix"), data.get("n_per_class")
        if (check_value(M.KeyRule("cm", "matrix"), cm) is None and check_value(M.KeyRule("n", "counts"), counts) is None
                and [sum(r) for r in cm] != counts):
            report.add("malformed", path.name, f"confusion_matrix row sums {[sum(r) for r in cm]} do not match "
                                               f"n_per_class {counts}")
        if report.dataset and isinstance(data.get("dataset"), str) and data["dataset"] != report.dataset:
            report.add("malformed", path.name, f"holds {data['dataset']} results but the folder is for "
                                               f"{report.dataset}; copy it into the right folder")


def _check_png(path: Path, report: CheckReport) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        report.add("malformed", path.name, f"cannot be read ({exc.strerror})")
        return
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        report.add("malformed", path.name, "is not a PNG image (save figures with medssl.utils.save_figure "
                                           "or fig.savefig(..., format='png'))")
        return
    w, h = struct.unpack(">II", head[16:24])
    if w == 0 or h == 0:
        report.add("malformed", path.name, f"has an empty image size {w}x{h}")
        return
    try:
        from PIL import Image

        with Image.open(path) as img:
            img.verify()
    except ImportError:
        pass
    except Exception as exc:  # truncated or corrupt data after a valid header
        report.add("malformed", path.name, f"is a damaged PNG ({type(exc).__name__}: {exc})")


def _check_text(path: Path, report: CheckReport) -> None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        report.add("malformed", path.name, f"cannot be read as text ({exc})")
        return
    if not text.strip():
        report.add("malformed", path.name, "is empty")
        return
    n = text.count(M.STUDENT_MARK)
    if n:
        report.add("to write", path.name, f"{n} place(s) marked {M.STUDENT_MARK} still to write")
    n = text.count(M.REFERENCE_MARK)
    if n and report.student != "reference":
        report.add("to write", path.name, f"{n} place(s) hold the course team's reference answer "
                   f"({M.REFERENCE_MARK!r}); replace each with your own words")


def _check_csv(path: Path, spec: M.FileSpec, report: CheckReport) -> None:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except Exception as exc:
        report.add("malformed", path.name, f"not a readable CSV ({type(exc).__name__}: {exc})")
        return
    if df.empty:
        report.add("malformed", path.name, "has a header but no rows")
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        report.add("malformed", path.name, f"missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})")


def check_file(path: Path, spec: M.FileSpec, report: CheckReport) -> None:
    """Validate one present file by its type."""
    report.checked.append(path.name)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if size == 0:
        report.add("malformed", path.name, "is an empty file")
        return
    kind = path.suffix.lower().lstrip(".")
    if kind == "json":
        _check_json(path, spec, report)
    elif kind == "png":
        _check_png(path, report)
    elif kind in ("md", "txt"):
        _check_text(path, report)
    elif kind == "csv":
        _check_csv(path, spec, report)
    elif kind == "pdf":
        if path.read_bytes()[:5] != b"%PDF-":
            report.add("malformed", path.name, "is not a PDF file")


def _find(folder: Path, spec: M.FileSpec) -> Path | None:
    for name in spec.names:
        if spec.is_pattern:
            hits = sorted(folder.glob(name))
            if hits:
                return hits[0]
        elif (folder / name).is_file():
            return folder / name
    return None


def _task_started(folder: Path, d: M.Deliverable) -> bool:
    """A task counts as started when a file carrying its id prefix is there (shared files do not count)."""
    return any((folder / n).is_file() for f in d.files for n in f.names if n.startswith(f"{d.id}_"))


def _check_deliverable(folder: Path, d: M.Deliverable, report: CheckReport, seen: set[str]) -> None:
    for spec in d.files:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        path = _find(folder, spec)
        shown = spec.name + (f" (or {', '.join(spec.alternatives)})" if spec.alternatives else "")
        if path is None:
            if spec.status == M.REQUIRED:
                owner = "" if d.kind == "core" else f"[{d.id}] "
                report.add("missing", shown, owner + (spec.what or "required file"))
            elif spec.status == M.BY_HAND:
                report.add("to add", shown, spec.what)
            continue
        check_file(path, spec, report)


def parse_location(folder: Path) -> tuple[int | None, str | None, str | None]:
    """(week, dataset, student) from ``.../week<N>/<dataset>/<student>`` (or ``.../week<N>``)."""
    parts = folder.resolve().parts
    for i in range(len(parts) - 1, -1, -1):
        m = re.fullmatch(r"week0?(\d+)", parts[i])
        if m:
            rest = parts[i + 1:]
            return int(m.group(1)), (rest[0] if len(rest) > 0 else None), (rest[1] if len(rest) > 1 else None)
    return None, None, None


def check_folder(folder: str | os.PathLike, week: int | None = None, dataset: str | None = None,
                 student: str | None = None, tasks: Iterable[str] | str | None = None) -> CheckReport:
    """Check one ``results/week<N>/<dataset>/<student>/`` folder against the manifest.

    Extra tasks: every task whose files have been started must be complete;
    ``tasks`` (ids, or ``"auto"`` for the dataset's focus tasks) names tasks
    that must be there. Week 8 needs at least one complete task.
    """
    folder = Path(folder)
    pw, pd_, ps = parse_location(folder)
    week = M.check_week(week if week is not None else (pw if pw is not None else _no_week(folder)))
    if M.core(week).location == "group":
        return check_group(folder.parent if folder.name == f"week{week}" else folder, week)
    report = CheckReport(folder, week, dataset or pd_, student or ps)
    if not folder.is_dir():
        report.add("missing", str(folder), "folder does not exist (run the week's notebook first)")
        return report
    if report.dataset and report.dataset not in M.DATASETS and not report.dataset.startswith("synthetic"):
        report.add("note", report.dataset, f"not one of the course datasets ({', '.join(M.DATASETS)})")
    chosen = {d.id: d for d in M.resolve_tasks(week, report.dataset or "", tasks)} if tasks else {}
    for d in M.extra_tasks(week):
        if d.id not in chosen and _task_started(folder, d):
            chosen[d.id] = d
    report.tasks = sorted(chosen)
    seen: set[str] = set()
    _check_deliverable(folder, M.core(week), report, seen)
    for d in chosen.values():
        _check_deliverable(folder, d, report, seen)
    if week == 8 and not chosen:
        ids = ", ".join(d.id for d in M.extra_tasks(8, report.dataset)) or ", ".join(M.EXTRA_TASK_IDS[-6:])
        report.add("missing", "Week 8 task files", f"no Week 8 task started; the team tasks are {ids}")
    _check_self_checks(folder, week, report)
    known = M.allowed_names(week) | {SELF_CHECKS_FILE}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir() or p.name in known or p.suffix == ".ipynb":
            continue
        report.add("note", p.name, "not in the manifest (fine for your own extras; the checker ignores it)")
    return report


def _check_self_checks(folder: Path, week: int, report: CheckReport) -> None:
    """``self_checks.json`` (written by the notebook's self-checks): every check that did not pass is listed."""
    path = folder / SELF_CHECKS_FILE
    if not path.exists():
        if week_has_exercises(week):
            report.add("exercise", SELF_CHECKS_FILE, "missing: run the week's self-check cells (the notebook "
                       "writes it) to record your exercises")
        return
    try:
        data = json.loads(path.read_text())
        checks = data["checks"]
        rows = [(str(name), str(r["status"]), str(r.get("message", ""))) for name, r in checks.items()]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        report.add("malformed", SELF_CHECKS_FILE, f"cannot read the self-check results ({type(exc).__name__}: {exc})")
        return
    if data.get("week") not in (None, week):
        report.add("malformed", SELF_CHECKS_FILE, f"holds Week {data.get('week')}'s self-checks, not Week {week}'s")
    report.checked.append(SELF_CHECKS_FILE)
    for name, status, message in sorted(rows):
        if status != "PASS":
            report.add("exercise", f"self-check {name}", f"{status}: {message}" if message else status)


def week_has_exercises(week: int) -> bool:
    """Whether Week ``week`` has self-checked exercises (a stored expected-values file in the course)."""
    from .selfcheck import expected_path

    return expected_path(week).exists()


def _no_week(folder: Path) -> int:
    raise ConfigError(f"cannot tell the week from {folder}: expected results/week<N>/<dataset>/<student>. "
                      "Pass --week N (and --dataset, --student).")


def check_group(root: str | os.PathLike, week: int) -> CheckReport:
    """Week 9 (figures/, reports/final_writeup/) or Week 10 (results/week10/), paths relative to ``root``.

    ``root`` may be the repository root or its ``results/`` folder.
    """
    root = Path(root)
    if root.name == "results":
        root = root.parent
    report = CheckReport(root, M.check_week(week))
    seen: set[str] = set()
    _check_deliverable(root, M.core(week), report, seen)
    return report


def find_submissions(tree: str | os.PathLike) -> list[Path]:
    """Every ``week<N>/<dataset>/<student>`` folder at or below ``tree`` (a results root or part of one)."""
    tree = Path(tree)
    week, ds, st = parse_location(tree) if tree.exists() else (None, None, None)
    if week is not None and ds and st:
        return [tree]
    out = []
    for p in sorted(tree.rglob("*")):
        if not p.is_dir() or any(part.startswith(".") for part in p.relative_to(tree).parts):
            continue
        w, d, s = parse_location(p)
        if w is not None and d and s and p.name == s and p.parent.name == d and 1 <= w <= 8:
            out.append(p)
    return out


def check_tree(tree: str | os.PathLike, tasks=None) -> list[CheckReport]:
    """Check every submission folder below ``tree``, plus the group weeks that have been started."""
    tree = Path(tree)
    if not tree.exists():
        raise ConfigError(f"{tree} does not exist.")
    w, ds, st = parse_location(tree)
    if w is not None and M.core(w).location == "group":
        return [check_group(tree.parent.parent if tree.name == f"week{w}" else tree, w)]
    if w is not None and ds and st:
        return [check_folder(tree, tasks=tasks)]
    reports = [check_folder(p, tasks=tasks) for p in find_submissions(tree)]
    results = tree if tree.name == "results" else (tree / "results" if (tree / "results").is_dir() else None)
    if results is not None and w is None:
        root = results.parent
        for gw in (9, 10):
            if any(_find(root, f) for f in M.core(gw).files if f.status != M.BY_HAND):
                reports.append(check_group(root, gw))
        reports += check_references(root)
    return reports


def check_references(root: str | os.PathLike) -> list[CheckReport]:
    """``reports/references/<task_id>_<shortname>.md``: one report per week, stubs still marked count as to write."""
    refs = Path(root) / "reports" / "references"
    by_week: dict[int, CheckReport] = {}
    for path in sorted(refs.glob("*.md")) if refs.is_dir() else []:
        if path.name.upper().startswith("TEMPLATE"):
            continue
        tid = path.stem.split("_", 1)[0].upper()
        week = M.task(tid).week if tid in M.EXTRA_TASK_IDS else 8
        report = by_week.setdefault(week, CheckReport(refs, week, tasks=[]))
        if tid in M.EXTRA_TASK_IDS and tid not in report.tasks:
            report.tasks.append(tid)
        report.checked.append(path.name)
        _check_text(path, report)
    return [by_week[w] for w in sorted(by_week)]
