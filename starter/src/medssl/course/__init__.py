"""Run, batch-run, check and aggregate the weekly notebooks.

::

    python -m medssl.course run --week 1 --dataset breastmnist --student alice
    python -m medssl.course run --week 3 --dataset pneumoniamnist --student bob --smoke -p EPOCHS 2
    python -m medssl.course batch --weeks 1-8 --datasets breastmnist pneumoniamnist --student ta --smoke
    python -m medssl.course check results/week2/breastmnist/alice      # or a whole results/ tree
    python -m medssl.course aggregate                                  # class-wide tables in reports/
    python -m medssl.course collect handins/*.zip --results-root class/results   # take in hand-in zips

``run`` executes ``notebooks/WeekNN_*.ipynb`` with papermill and keeps the
executed copy in the results folder it filled. ``check`` validates folders
against :mod:`medssl.manifest`, the one list of what each week must hold.
``collect`` unpacks the students' hand-in zips (made by ``WeekRun.hand_in``)
into a class's results tree, refusing any zip that is unsafe or mislabelled.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, MedSSLError, OutputExistsError
from ..utils import progress_bar, relative_path
from . import manifest as M

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = ("missing", "malformed", "to add", "to write", "note")
FAILING = ("missing", "malformed")


# =============================================================== paths
def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first folder upwards holding ``starter/src/medssl`` (else the package's)."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "starter" / "src" / "medssl").is_dir():
            return p
    pkg = Path(__file__).resolve()
    if len(pkg.parents) > 3 and (pkg.parents[3] / "notebooks").is_dir():
        return pkg.parents[3]
    return here


def notebook_path(week: int, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """``notebooks/WeekNN_<name>.ipynb`` of a week (name from the manifest)."""
    nb_dir = Path(notebooks_dir) if notebooks_dir else repo_root() / "notebooks"
    path = nb_dir / M.core(week).notebook
    if not path.exists():
        raise ConfigError(f"notebook {path} not found. Run from the repository root or pass --notebooks DIR.")
    return path


# =============================================================== where the course is published
COURSE_FILE = "course.toml"          # at the repository root: the one place for the course's repository URL
REPO_URL_ENV = "MEDSSL_REPO_URL"     # overrides it in a running notebook's setup cell
PLACEHOLDER_URL = "github.com/your-org/"
_COURSE_DEFAULTS = {"repo_url": "https://github.com/your-org/medmnist-ssl", "branch": "main"}


def course_config(root: str | os.PathLike | None = None) -> dict:
    """``[course]`` of ``course.toml`` (``repo_url``, ``branch``) in the repository ``root``."""
    path = Path(root or repo_root()) / COURSE_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: the course's repository URL is set there (repo_url = \"https://...\").")
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the file is two plain key = "value" lines
        data = dict(re.findall(r'^\s*(\w+)\s*=\s*"([^"]*)"', text, re.M))
    else:
        try:
            data = tomllib.loads(text).get("course", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}).") from None
    cfg = {**_COURSE_DEFAULTS, **{k: v for k, v in data.items() if k in _COURSE_DEFAULTS}}
    for key, value in cfg.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: '{key}' should be a non-empty string, got {value!r}.")
    return cfg


def github_slug(url: str) -> str | None:
    """``owner/name`` of a GitHub repository URL (https or ssh form), else None."""
    m = re.fullmatch(r"(?:https?://(?:www\.)?|git@|ssh://git@)github\.com[/:]([\w.-]+)/([\w.-]+?)(?:\.git)?/?",
                     url.strip())
    return f"{m.group(1)}/{m.group(2)}" if m else None


# =============================================================== checking
@dataclass
class Problem:
    level: str        # missing | malformed | to add | to write | note
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
        return not self.of(*FAILING, *(("to add", "to write") if strict else ()))

    def format(self, strict: bool = False, label: str | None = None) -> str:
        label = label or str(self.folder)
        status = "OK" if self.passed(strict) else f"FAILED ({len(self.of(*FAILING))} problem(s))"
        if self.passed(strict) and strict is False and self.of("to add", "to write"):
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
    known = M.allowed_names(week)
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.is_dir() or p.name in known or p.suffix == ".ipynb":
            continue
        report.add("note", p.name, "not in the manifest (fine for your own extras; the checker ignores it)")
    return report


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


# =============================================================== papermill runs
@dataclass
class RunOutcome:
    week: int
    dataset: str | None
    student: str
    status: str = "ok"            # ok | failed | skipped
    error: str = ""               # one line, for the summary table
    detail: str = ""              # the whole error message
    cell: int | None = None
    seconds: float = 0.0
    out_dir: Path | None = None
    notebook: Path | None = None
    check: CheckReport | None = None

    def summary(self) -> str:
        if self.status == "ok":
            return "ok"
        where = f" (cell {self.cell})" if self.cell is not None else ""
        return f"{self.status}{where}: {self.error}"


def notebook_parameters(path: str | os.PathLike) -> set[str]:
    """Names assigned in a notebook's cell tagged ``parameters``."""
    nb = json.loads(Path(path).read_text())
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell.get("source", []))
            return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", src, re.M))
    return set()


def parse_param(value: str):
    """``-p`` values: Python literals (``3``, ``0.1``, ``[0.05, 0.1]``, ``True``, ``None``), else the string."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


# notebook parameters that run_week sets from its own arguments (it checks the folder they lead to)
RUNNER_PARAMS = {"RESULTS_ROOT": "--results-root", "STUDENT": "--student", "DATASET_KEY": "--dataset",
                 "SMOKE": "--smoke", "OVERWRITE": "--overwrite"}


def _has_submission(out_dir: Path, week: int) -> list[str]:
    if not out_dir.is_dir():
        return []
    names = M.allowed_names(week)
    return sorted(p.name for p in out_dir.iterdir() if p.name in names)


def run_week(week: int, dataset: str | None, student: str, results_root: str | os.PathLike = "results",
             smoke: bool = False, params: dict | None = None, overwrite: bool = False,
             notebooks_dir: str | os.PathLike | None = None, kernel: str | None = None,
             log_output: bool = False, raise_on_error: bool = True) -> RunOutcome:
    """Execute one week's notebook with papermill; the executed copy lands in the week's results folder."""
    import papermill as pm

    week = M.check_week(week)
    group = M.core(week).location == "group"
    if not group and not dataset:
        raise ConfigError(f"Week {week} needs --dataset (breastmnist or pneumoniamnist).")
    if not student or not re.fullmatch(r"[A-Za-z0-9_.-]+", student):
        raise ConfigError(f"--student must be a simple name (letters, digits, _ . -), got {student!r}.")
    clash = sorted(set(params or {}) & set(RUNNER_PARAMS))
    if clash:
        raise ConfigError(f"-p {clash[0]} is set by the runner, which also checks and keeps the results where it "
                          f"says: use {RUNNER_PARAMS[clash[0]]} instead.")
    nb = notebook_path(week, notebooks_dir)
    unknown = sorted(set(params or {}) - notebook_parameters(nb))
    if unknown:
        raise ConfigError(f"{nb.name} has no parameter {', '.join(unknown)}; its parameters are "
                          f"{', '.join(sorted(notebook_parameters(nb)))}.")
    results_root = Path(results_root).resolve()
    out_dir = M.results_dir(results_root, week, dataset, student)
    existing = _has_submission(out_dir, week) if not group else [
        f.name for f in M.core(week).files if f.status != M.BY_HAND and not f.is_pattern
        and (results_root.parent / f.name).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{results_root.parent if group else out_dir} already holds Week {week} files ({', '.join(existing[:4])}"
            f"{', ...' if len(existing) > 4 else ''}). Pass --overwrite to run again and replace it, "
            "or use another --student / --results-root.")
    out_dir.mkdir(parents=True, exist_ok=True)
    # inside the repository the executed notebook records the results root relative to it (no machine paths)
    root_param = relative_path(results_root, repo_root(nb.parent)) or str(results_root)
    parameters = {"RESULTS_ROOT": root_param, "STUDENT": student, "SMOKE": bool(smoke),
                  "OVERWRITE": bool(overwrite)}
    if dataset:
        parameters["DATASET_KEY"] = dataset
    parameters.update(params or {})
    executed = out_dir / nb.name
    outcome = RunOutcome(week, dataset, student, out_dir=out_dir, notebook=executed)
    env_before = {k: os.environ.get(k) for k in ("MEDSSL_SMOKE", "MPLBACKEND", "TQDM_DISABLE")}
    os.environ["MPLBACKEND"] = "Agg"
    # nobody watches a batch run's progress bars, and in a kernel each one is a widget whose state papermill
    # saves into the executed notebook (megabytes per week)
    os.environ["TQDM_DISABLE"] = "1"
    if smoke:
        os.environ["MEDSSL_SMOKE"] = "1"
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(executed), parameters=parameters, kernel_name=kernel,
                            cwd=str(nb.parent), progress_bar=False, log_output=log_output)
    except pm.PapermillExecutionError as exc:
        outcome.status = "failed"
        outcome.cell = exc.exec_count
        evalue = str(exc.evalue or "").strip()
        outcome.detail = f"{exc.ename}: {evalue}"
        outcome.error = f"{exc.ename}: {evalue.splitlines()[0] if evalue else ''}"[:300]
    except Exception as exc:  # kernel died, notebook unreadable, ...
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
    finally:
        outcome.seconds = time.perf_counter() - t0
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if executed.exists():
        relativize_notebook(executed, repo_root(nb.parent))
    if outcome.status == "ok":
        outcome.check = (check_group(results_root.parent, week) if group else check_folder(out_dir, week, dataset,
                                                                                           student))
        if not outcome.check.passed():
            outcome.status = "failed"
            first = outcome.check.of(*FAILING)[0]
            outcome.error = f"check: {first.level} {first.file}" + (f" ({first.message})" if first.message else "")
    if outcome.status != "ok" and raise_on_error:
        raise MedSSLError(f"Week {week} {dataset or ''} failed after {outcome.seconds:.0f}s: "
                          f"{outcome.detail or outcome.error}\n"
                          f"  executed notebook (with the error): {executed}")
    return outcome


def relativize_notebook(path: str | os.PathLike, repo: str | os.PathLike) -> None:
    """Rewrite the paths papermill records in an executed notebook relative to ``repo`` (when inside it).

    An executed notebook is a submission and is committed; it should not carry the machine's folders.
    """
    path = Path(path)

    def rel(value):
        if isinstance(value, str) and os.path.isabs(value):
            return relative_path(value, repo) or value
        return value

    nb = json.loads(path.read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if key in meta:
            meta[key] = rel(meta[key])
    params = meta.get("parameters", {})
    old_root = params.get("RESULTS_ROOT")
    if isinstance(old_root, str) and rel(old_root) != old_root:
        params["RESULTS_ROOT"] = rel(old_root)
        for cell in nb.get("cells", []):
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                src = "".join(cell.get("source", []))
                cell["source"] = src.replace(json.dumps(old_root), json.dumps(params["RESULTS_ROOT"]))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parse_weeks(text: str | Sequence) -> list[int]:
    """``"1-8"``, ``"1,3,5"``, ``"1-3 5"`` or a list -> sorted week numbers."""
    items = text if not isinstance(text, str) else re.split(r"[,\s]+", text.strip())
    weeks: set[int] = set()
    for it in items:
        it = str(it).strip()
        if not it:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", it)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if a > b:
                raise ConfigError(f"week range {it} runs backwards; write {b}-{a}.")
            weeks.update(range(a, b + 1))
        elif it.isdigit():
            weeks.add(int(it))
        else:
            raise ConfigError(f"cannot read weeks {text!r}; use e.g. 1-8 or 1,2,3.")
    for w in weeks:
        M.check_week(w)
    return sorted(weeks)


def batch(weeks: Sequence[int], datasets: Sequence[str], student: str, results_root="results", smoke=False,
          params: dict | None = None, overwrite: bool = False, notebooks_dir=None, kernel=None,
          progress: bool = True) -> list[RunOutcome]:
    """Run weeks x datasets in dependency order; a failure skips only the weeks that need it."""
    jobs: list[tuple[int, str | None]] = []
    for w in sorted(weeks):
        if M.core(w).location == "group":
            jobs.append((w, None))
        else:
            jobs.extend((w, d) for d in datasets)
    outcomes: list[RunOutcome] = []
    failed: set[tuple[int, str | None]] = set()
    declared = {w: notebook_parameters(notebook_path(w, notebooks_dir)) for w in sorted(set(weeks))}
    bar = progress_bar(jobs, progress, desc="course", unit="notebook")
    for w, d in bar:
        bar.set_postfix_str(f"week {w} {d or 'group'}")
        blockers = [dep for dep in _all_deps(w) if (dep, d) in failed]
        if blockers:
            outcomes.append(RunOutcome(w, d, student, status="skipped",
                                       error=f"needs Week {blockers[0]}, which failed"))
            failed.add((w, d))
            continue
        # a batch-wide -p applies to the weeks whose notebook declares that parameter
        week_params = {k: v for k, v in (params or {}).items() if k in declared[w]}
        try:
            oc = run_week(w, d, student, results_root, smoke, week_params, overwrite, notebooks_dir, kernel,
                          raise_on_error=False)
        except MedSSLError as exc:
            oc = RunOutcome(w, d, student, status="failed", error=str(exc).splitlines()[0])
        outcomes.append(oc)
        if oc.status != "ok":
            failed.add((w, d))
    return outcomes


def _all_deps(week: int) -> set[int]:
    deps, todo = set(), list(M.core(week).depends_on)
    while todo:
        w = todo.pop()
        if w not in deps:
            deps.add(w)
            todo.extend(M.core(w).depends_on)
    return deps


def summary_table(outcomes: Sequence[RunOutcome]) -> str:
    """Week x dataset table of ok / failed / skipped (+ the failing cell's error) and wall times."""
    cols = sorted({o.dataset or "(group)" for o in outcomes}, key=lambda s: (s == "(group)", s))
    weeks = sorted({o.week for o in outcomes})
    by = {(o.week, o.dataset or "(group)"): o for o in outcomes}
    head = "| week | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for w in weeks:
        cells = []
        for c in cols:
            o = by.get((w, c))
            cells.append("" if o is None else (f"ok ({o.seconds:.0f}s)" if o.status == "ok" else
                                               o.summary().replace("|", "/")))
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    n_ok = sum(o.status == "ok" for o in outcomes)
    lines.append(f"\n{n_ok}/{len(outcomes)} notebooks ok; total {sum(o.seconds for o in outcomes):.0f}s")
    return "\n".join(lines)


# =============================================================== aggregation
_METRIC_COLS = ("acc", "auroc", "ece", "f1_macro", "sensitivity", "specificity")
_PCT = re.compile(r"_(\d+(?:\.\d+)?)pct$")


def variant_of(week: int, stem: str) -> str:
    """A readable name for a metrics file: ``metrics_resnet18_head`` -> ``resnet18_head``, ``test_metrics`` ->
    ``baseline``, ``probe_metrics_5pct`` -> ``probe@5%``."""
    if stem == "test_metrics":
        return "baseline"
    m = _PCT.search(stem)
    if m:
        return f"{stem[:m.start()].replace('_metrics', '')}@{m.group(1)}%"
    return stem.replace("metrics_", "")


def collect_metrics(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """One row per metrics JSON in ``results/week<N>/<dataset>/<student>/`` (files with the metric keys)."""
    rows = []
    for folder in find_submissions(results_root):
        week, dataset, student = parse_location(folder)
        for path in sorted(folder.glob("*.json")):
            try:
                spec = M.file_spec(week, path.name)
            except ConfigError:
                continue
            if spec.keys is not M.METRIC_RULES:
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            course = data.get("course") or {}
            smoke = bool(course.get("smoke")) or bool((data.get("data") or {}).get("synthetic"))
            if smoke and not include_smoke:
                continue
            row = {"week": week, "dataset": dataset, "student": student, "file": path.name,
                   "variant": variant_of(week, path.stem), "smoke": smoke,
                   "label_frac": data.get("label_frac", course.get("label_frac"))}
            row.update({k: data.get(k) for k in _METRIC_COLS})
            rows.append(row)
    return rows


def _folder_is_smoke(folder: Path) -> bool:
    """True when any JSON in ``folder`` says it came from a smoke run or synthetic data."""
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and ((data.get("course") or {}).get("smoke")
                                       or (data.get("data") or {}).get("synthetic")):
            return True
    return False


def collect_label_efficiency(results_root: str | os.PathLike, include_smoke: bool = False) -> list[dict]:
    """Label-efficiency rows of every student's Week 5 folder (method, fraction, metrics).

    From ``probe_vs_supervised.csv`` (core: probe vs supervised at 5% / 10%) and,
    when the student ran task B1, ``B1_label_grid.csv`` (the probe's mean over seeds).
    """
    import pandas as pd

    rows = []
    for folder in find_submissions(results_root):
        week, dataset, student = parse_location(folder)
        if week != 5 or (not include_smoke and _folder_is_smoke(folder)):
            continue
        core_csv, grid_csv = folder / "probe_vs_supervised.csv", folder / "B1_label_grid.csv"
        try:
            if core_csv.is_file():
                for r in pd.read_csv(core_csv).to_dict("records"):
                    rows.append({"dataset": dataset, "student": student, **r})
            if grid_csv.is_file():
                for r in pd.read_csv(grid_csv).to_dict("records"):
                    rows.append({"dataset": dataset, "student": student, "method": f"{r['method']} (B1 seed mean)",
                                 "fraction": r["fraction"], **{m: r.get(f"{m}_mean") for m in ("acc", "auroc", "ece")}})
        except Exception:  # a malformed CSV is the checker's business; aggregation skips it
            continue
    return rows


def _mean_std(values) -> tuple[float, float, int]:
    import numpy as np

    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def summarise(rows: Sequence[dict], metrics: Sequence[str] = ("acc", "auroc", "ece")) -> list[dict]:
    """Mean, std (over students) and n per (week, variant, dataset)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["week"], r["variant"], r["dataset"]), []).append(r)
    out = []
    for (w, v, d), rs in sorted(groups.items()):
        row = {"week": w, "variant": v, "dataset": d, "n_students": len({r["student"] for r in rs})}
        for m in metrics:
            mean, std, n = _mean_std(r.get(m) for r in rs)
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
        out.append(row)
    return out


def _fmt_ms(mean: float, std: float) -> str:
    if isinstance(mean, float) and math.isnan(mean):
        return "-"
    return f"{mean:.3f} ± {std:.3f}"


def summary_markdown(summary: Sequence[dict], metrics: Sequence[str] = ("acc", "auroc", "ece")) -> str:
    """Breast vs Pneumonia side by side: one row per (week, variant), mean ± std over students (n)."""
    datasets = sorted({r["dataset"] for r in summary})
    keys = sorted({(r["week"], r["variant"]) for r in summary})
    by = {(r["week"], r["variant"], r["dataset"]): r for r in summary}
    head = ["week", "variant"] + [f"{d} {m}" for d in datasets for m in metrics] + [f"n {d}" for d in datasets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for w, v in keys:
        cells = [str(w), v]
        for d in datasets:
            r = by.get((w, v, d))
            cells += [_fmt_ms(r[f"{m}_mean"], r[f"{m}_std"]) if r else "-" for m in metrics]
        cells += [str(by[(w, v, d)]["n_students"]) if (w, v, d) in by else "0" for d in datasets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_figure(summary: Sequence[dict], weeks: Sequence[int] = (1, 2, 3, 6), metric: str = "auroc",
                      title: str | None = None):
    """Grouped bars: each (week, variant) with one bar per dataset, error bars = std over students."""
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in summary if r["week"] in weeks]
    datasets = sorted({r["dataset"] for r in rows})
    keys = sorted({(r["week"], r["variant"]) for r in rows})
    by = {(r["week"], r["variant"], r["dataset"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(keys) + 2), 3.8))
    width = 0.8 / max(len(datasets), 1)
    x = np.arange(len(keys))
    for i, d in enumerate(datasets):
        means = [by[(w, v, d)][f"{metric}_mean"] if (w, v, d) in by else np.nan for w, v in keys]
        stds = [by[(w, v, d)][f"{metric}_std"] if (w, v, d) in by else 0.0 for w, v in keys]
        ax.bar(x + (i - (len(datasets) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=d)
    ax.set_xticks(x, [f"W{w} {v}" for w, v in keys], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"test {metric} (mean ± std over students)")
    if metric in ("acc", "auroc"):
        ax.set_ylim(0.4, 1.0)
    if not keys:
        ax.text(0.5, 0.5, "(no results yet)", transform=ax.transAxes, ha="center")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title(title or f"Breast vs Pneumonia: test {metric}", fontsize=10)
    fig.tight_layout()
    return fig


def label_efficiency_figure(rows: Sequence[dict], metric: str = "auroc"):
    """Per dataset: metric vs label fraction per method, mean ± std over students."""
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in rows}) or ["(no results yet)"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.6), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = [r for r in rows if r["dataset"] == d]
        for method in sorted({r["method"] for r in sub}):
            fr = sorted({float(r["fraction"]) for r in sub if r["method"] == method})
            stats = [_mean_std(r.get(metric) for r in sub if r["method"] == method and float(r["fraction"]) == f)
                     for f in fr]
            ax.errorbar(np.array(fr) * 100, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o",
                        capsize=3, label=f"{method} (n={max((s[2] for s in stats), default=0)})")
        ax.set_xscale("log")
        ax.set_xlabel("% of training labels")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(d, fontsize=10)
        if sub and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def aggregate(results_root: str | os.PathLike = "results", out: str | os.PathLike | None = None,
              include_smoke: bool = False) -> dict:
    """Class-wide tables and plots from every student's metrics; returns the paths written."""
    import pandas as pd

    from ..utils import save_figure, write_text

    results_root = Path(results_root)
    if not results_root.is_dir():
        raise ConfigError(f"{results_root} is not a folder; point --results-root at the course's results/.")
    out = Path(out) if out else results_root.resolve().parent / "reports"
    rows = collect_metrics(results_root, include_smoke)
    le = collect_label_efficiency(results_root, include_smoke)
    summary = summarise(rows)
    paths = {}
    cols = ["week", "dataset", "student", "file", "variant", "label_frac", *_METRIC_COLS, "smoke"]
    df = pd.DataFrame(rows, columns=cols)
    paths["metrics_csv"] = out / "class_metrics.csv"
    write_text(paths["metrics_csv"], df.to_csv(index=False))
    n_students = df.groupby("dataset")["student"].nunique().to_dict() if len(df) else {}
    note = "smoke/synthetic runs included" if include_smoke else "smoke and synthetic runs excluded"
    md = [f"# Class-wide results ({note})", "",
          f"Generated by `python -m medssl.course aggregate` from {len(rows)} metrics files of "
          "students per dataset: "
          + (", ".join(f"{d}: {n}" for d, n in sorted(n_students.items())) or "none yet") + ".",
          "Values are test-set mean ± std over students (std = 0 with one student).", "",
          summary_markdown(summary) if summary else "_No metrics found yet._", ""]
    if le:
        le_sum = []
        for (d, meth, fr), grp in _group(le, ("dataset", "method", "fraction")).items():
            mean, std, n = _mean_std(r.get("auroc") for r in grp)
            le_sum.append(f"| {d} | {meth} | {float(fr) * 100:g}% | {_fmt_ms(mean, std)} | {n} |")
        md += ["## Label efficiency (Week 5, test AUROC)", "", "| dataset | method | labels | AUROC | n |",
               "|---|---|---|---|---|", *le_sum, ""]
    paths["summary_md"] = out / "class_summary.md"
    write_text(paths["summary_md"], "\n".join(md))
    paths["comparison_png"] = out / "class_breast_vs_pneumonia.png"
    save_figure(comparison_figure(summary), paths["comparison_png"])
    paths["label_efficiency_png"] = out / "class_label_efficiency.png"
    save_figure(label_efficiency_figure(le), paths["label_efficiency_png"])
    paths["label_efficiency_csv"] = out / "class_label_efficiency.csv"
    write_text(paths["label_efficiency_csv"], pd.DataFrame(le).to_csv(index=False))
    return {"paths": paths, "n_rows": len(rows), "n_label_efficiency": len(le), "summary": summary}


def _group(rows, keys):
    out: dict[tuple, list] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


# =============================================================== hand-in zips
HANDIN_DIR = "handin"                # next to results/: where WeekRun.hand_in writes the zips
COLLECT_MAX_BYTES = 2 * 1024 ** 3    # a week's folder is a few MB (Week 4 adds a ~45 MB encoder)
COLLECT_MAX_FILES = 2000
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SKIPPED_PREFIXES = ("__MACOSX/",)   # written by macOS's Finder next to the real files; never extracted
_SKIPPED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class SubmissionRejected(ConfigError):
    """A hand-in zip that ``collect`` will not take in (nothing of it is written)."""


def submission_prefix(week: int, dataset: str, student: str) -> str:
    """The one folder a hand-in zip holds: ``week<N>/<dataset>/<student>/`` (its place under results/)."""
    return f"week{week}/{dataset}/{student}/"


def make_submission_zip(folder: str | os.PathLike, week: int, dataset: str, student: str,
                        out_dir: str | os.PathLike) -> Path:
    """Zip a results folder as ``week<N>/<dataset>/<student>/...`` into ``out_dir``; never replaces a zip.

    The zip is ``week<N>_<dataset>_<student>.zip``, or ``..._2.zip``, ``..._3.zip`` when earlier ones exist. It is
    written to a temporary file and then linked into place, so no half-written zip is ever visible and an
    existing one is never overwritten. Hidden files and symbolic links are left out.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    for name in (dataset, student):
        if not _SAFE_NAME.fullmatch(name or ""):
            raise ConfigError(f"{name!r} cannot name a hand-in (letters, digits, _ . - only).")
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    if not files:
        raise ConfigError(f"{folder} holds no files: nothing to hand in.")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = submission_prefix(week, dataset, student)
    fd, tmp_name = tempfile.mkstemp(prefix=".handin.", suffix=".zip.tmp", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:  # any file date
            for p in files:
                zf.write(p, prefix + p.relative_to(folder).as_posix())
        stem = f"week{week}_{dataset}_{student}"
        for i in range(1, 10_000):
            dst = out_dir / (f"{stem}.zip" if i == 1 else f"{stem}_{i}.zip")
            if dst.exists():
                continue
            try:
                os.link(tmp, dst)          # atomic, and fails instead of replacing a zip that appeared meanwhile
            except FileExistsError:
                continue
            except OSError:                # file systems without hard links (some network drives)
                if dst.exists():
                    continue
                os.replace(tmp, dst)
            return dst
        raise ConfigError(f"{out_dir} already holds 9999 hand-ins of {stem}; remove old ones.")
    finally:
        tmp.unlink(missing_ok=True)


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why extracting ``info`` could write outside its folder or create something other than a file (else None)."""
    name = info.filename
    parts = name.rstrip("/").split("/")
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or any(p in ("..", ".", "") for p in parts):
        return f"the entry '{name}' points outside the zip's folder (absolute path, '..' or a backslash)"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return f"the entry '{name}' is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"the entry '{name}' is not a plain file"
    if info.flag_bits & 0x1:
        return f"the entry '{name}' is encrypted"
    return None


def _declared_mismatch(name: str, data, week: int, dataset: str, student: str) -> str | None:
    """Where a JSON or notebook in a hand-in says it belongs to another week, dataset or student."""
    if name.endswith(".ipynb"):
        m = re.match(r"Week0?(\d+)_", Path(name).name)
        if m and int(m.group(1)) != week:
            return f"{Path(name).name} is the Week {m.group(1)} notebook"
        params = ((data.get("metadata") or {}).get("papermill") or {}).get("parameters") or {} \
            if isinstance(data, dict) else {}
        declared = {"student": params.get("STUDENT"), "dataset": params.get("DATASET_KEY")}
    elif isinstance(data, dict):
        course = data.get("course") if isinstance(data.get("course"), dict) else {}
        declared = {"week": course.get("week"), "student": course.get("student"),
                    "dataset": data.get("dataset", course.get("dataset"))}
    else:
        return None
    want = {"week": week, "student": student, "dataset": dataset}
    for key, value in declared.items():
        if value is not None and not isinstance(value, (dict, list)) and value != want[key]:
            return f"{Path(name).name} records {key} {value!r}"
    return None


def inspect_submission_zip(path: str | os.PathLike, max_bytes: int = COLLECT_MAX_BYTES,
                           max_files: int = COLLECT_MAX_FILES) -> tuple[int, str, str, list[zipfile.ZipInfo]]:
    """Validate a hand-in zip without extracting anything: ``(week, dataset, student, file entries)``.

    A hand-in declares where it belongs by its one top folder ``week<N>/<dataset>/<student>/``; every metrics
    JSON (its ``course`` block and ``dataset``) and executed notebook inside must agree with that folder.
    Raises :class:`SubmissionRejected` saying why otherwise: a corrupt zip, an entry that would land outside
    the folder (``..``, absolute paths, symbolic links), files outside the one folder, or a mislabelled file.
    """
    path = Path(path)
    label = path.name
    if not path.is_file():
        raise SubmissionRejected(f"{path} does not exist.")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise SubmissionRejected(f"{label} is not a readable zip file (corrupt, truncated or not a zip: {exc}).") \
            from None
    with zf:
        members, seen = [], set()
        for info in zf.infolist():
            if info.filename.startswith(_SKIPPED_PREFIXES) or Path(info.filename).name in _SKIPPED_NAMES:
                continue
            why = _unsafe_member(info)
            if why:
                raise SubmissionRejected(f"{label}: {why}.")
            if info.is_dir():
                continue
            if info.filename in seen:
                raise SubmissionRejected(f"{label} holds '{info.filename}' twice.")
            seen.add(info.filename)
            members.append(info)
        if not members:
            raise SubmissionRejected(f"{label} holds no files.")
        layout = "every file has to be inside one folder week<N>/<dataset>/<student>/ (as the notebook's hand-in " \
                 "cell writes it)"
        tops = {tuple(i.filename.split("/")[:3]) for i in members}
        shallow = [i.filename for i in members if i.filename.count("/") < 3]
        if shallow or len(tops) != 1:
            found = ", ".join(sorted("/".join(t) for t in tops)[:4])
            raise SubmissionRejected(f"{label}: {layout}; found {found}.")
        (week_part, dataset, student), = tops
        m = re.fullmatch(r"week(\d+)", week_part)
        if not m or int(m.group(1)) not in M.WEEKS:
            raise SubmissionRejected(f"{label}: {layout}; '{week_part}' is not week1 ... week8.")
        week = int(m.group(1))
        if M.core(week).location == "group":
            raise SubmissionRejected(f"{label}: Week {week} is group work, handed in through the group's repository; "
                                     "collect takes the per-student Weeks 1-8.")
        for name, what in ((dataset, "dataset"), (student, "student")):
            if not _SAFE_NAME.fullmatch(name):
                raise SubmissionRejected(f"{label}: the {what} folder {name!r} is not a simple name.")
        if len(members) > max_files:
            raise SubmissionRejected(f"{label} holds {len(members)} files (at most {max_files}).")
        total = sum(i.file_size for i in members)
        if total > max_bytes:
            raise SubmissionRejected(f"{label} unpacks to {total / 2 ** 20:.0f} MB "
                                     f"(at most {max_bytes / 2 ** 20:.0f} MB).")
        try:
            bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
            raise SubmissionRejected(f"{label} is corrupt ({type(exc).__name__}: {exc}).") from None
        if bad is not None:
            raise SubmissionRejected(f"{label} is corrupt: '{bad}' fails its checksum.")
        for info in members:
            if not info.filename.endswith((".json", ".ipynb")) or info.file_size > 64 * 2 ** 20:
                continue
            try:
                data = json.loads(zf.read(info).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue                   # unreadable JSON: the checker reports it as malformed
            why = _declared_mismatch(info.filename, data, week, dataset, student)
            if why:
                where = submission_prefix(week, dataset, student)
                raise SubmissionRejected(f"{label}: {why}, but the zip's folder is {where} -- it belongs to another "
                                         "week, dataset or student.")
    return week, dataset, student, members


@dataclass
class Collected:
    zip: Path
    status: str                    # taken in | rejected
    message: str = ""
    folder: Path | None = None
    report: CheckReport | None = None

    def ok(self) -> bool:
        return self.status == "taken in" and self.report is not None and self.report.passed()

    def format(self) -> str:
        if self.status == "rejected":
            return f"rejected  {self.zip.name}: {self.message} Nothing was written."
        head = f"taken in  {self.zip.name} -> {self.folder}" + (f" ({self.message})" if self.message else "")
        return head + ("\n" + self.report.format(label=str(self.folder)) if self.report else "")


def _extract(path: Path, members: Sequence[zipfile.ZipInfo], into: Path) -> None:
    into = into.resolve()
    with zipfile.ZipFile(path) as zf:
        for info in members:
            target = (into / info.filename).resolve()
            if into not in target.parents:  # inspect_submission_zip refused these already; never trust one check
                raise SubmissionRejected(f"{path.name}: the entry '{info.filename}' points outside its folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size:
                        raise SubmissionRejected(f"{path.name}: '{info.filename}' is larger than its header says.")
                    dst.write(chunk)


def collect(zips: Iterable[str | os.PathLike], results_root: str | os.PathLike, overwrite: bool = False,
            max_bytes: int = COLLECT_MAX_BYTES) -> list[Collected]:
    """Take hand-in zips into a class's results tree, each checked like ``course check``.

    A rejected zip (see :func:`inspect_submission_zip`, or a submission already there without ``overwrite``)
    writes nothing. An accepted one is unpacked into a hidden staging folder inside ``results_root`` and then
    moved into ``week<N>/<dataset>/<student>/`` in one rename; with ``overwrite`` it replaces the earlier one.
    """
    results_root = Path(results_root)
    out: list[Collected] = []
    for z in zips:
        z = Path(z)
        try:
            week, dataset, student, members = inspect_submission_zip(z, max_bytes=max_bytes)
            dest = M.results_dir(results_root, week, dataset, student)
            if dest.is_symlink() or dest.exists() and not dest.is_dir():
                raise SubmissionRejected(f"{dest} exists and is not a folder.")
            replaced = dest.is_dir() and any(dest.iterdir())
            if replaced and not overwrite:
                raise SubmissionRejected(f"{dest} already holds a submission; pass --overwrite to replace it with "
                                         f"{z.name}.")
        except SubmissionRejected as exc:
            out.append(Collected(z, "rejected", str(exc)))
            continue
        if results_root.exists() and not results_root.is_dir():
            raise ConfigError(f"{results_root} is not a folder.")
        made_root = not results_root.exists()
        results_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=results_root))
        try:
            _extract(z, members, staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.replace(dest, staging / "previous")
            os.replace(staging / submission_prefix(week, dataset, student).rstrip("/"), dest)
        except (SubmissionRejected, OSError, zipfile.BadZipFile) as exc:
            if not dest.exists() and (staging / "previous").exists():
                os.replace(staging / "previous", dest)
            shutil.rmtree(staging, ignore_errors=True)
            if made_root and not any(results_root.iterdir()):
                results_root.rmdir()
            out.append(Collected(z, "rejected", str(exc) if isinstance(exc, SubmissionRejected)
                                 else f"{z.name} could not be unpacked ({type(exc).__name__}: {exc})."))
            continue
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        out.append(Collected(z, "taken in", "replaced the earlier submission" if replaced else "", dest,
                             check_folder(dest, week, dataset, student)))
    return out


# =============================================================== CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.course", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common_run(sp):
        sp.add_argument("--student", required=True, help="your name: results go to results/week<N>/<dataset>/<name>")
        sp.add_argument("--results-root", default=None,
                        help="the course's results folder (default results; -p RESULTS_ROOT DIR means the same)")
        sp.add_argument("--smoke", action="store_true", help="tiny epochs and subsets (CI / a quick try)")
        sp.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="override a notebook parameter, e.g. -p EPOCHS 10 -p MODEL_NAME resnet18")
        sp.add_argument("--overwrite", action="store_true", help="replace an existing submission folder")
        sp.add_argument("--notebooks", default=None, help="folder of the WeekNN_*.ipynb notebooks")
        sp.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")

    r = sub.add_parser("run", help="execute one week's notebook with papermill")
    r.add_argument("--week", type=int, required=True, help="1-10")
    r.add_argument("--dataset", default=None, help="breastmnist or pneumoniamnist (not needed for Weeks 9-10)")
    r.add_argument("--log-output", action="store_true", help="stream the notebook's output to the terminal")
    common_run(r)

    b = sub.add_parser("batch", help="run several weeks x datasets in dependency order")
    b.add_argument("--weeks", default="1-8", help="e.g. 1-8, 1,2,3 (default 1-8)")
    b.add_argument("--datasets", nargs="+", default=list(M.DATASETS))
    b.add_argument("--summary", default=None, help="also write the summary table to this markdown file")
    b.add_argument("--no-progress", action="store_true")
    common_run(b)

    c = sub.add_parser("check", help="validate submission folders against the manifest")
    c.add_argument("paths", nargs="+", help="a results/week<N>/<dataset>/<student> folder or a results/ tree")
    c.add_argument("--week", type=int, default=None, help="when the folder does not follow the layout")
    c.add_argument("--dataset", default=None)
    c.add_argument("--student", default=None)
    c.add_argument("--tasks", nargs="*", default=None, help="extra tasks that must be there (ids, or 'auto')")
    c.add_argument("--strict", action="store_true", help="also fail on files to add by hand / text still to write")

    co = sub.add_parser("collect", help="take in hand-in zips: unpack each into a results tree and check it")
    co.add_argument("zips", nargs="+", metavar="ZIP", help="hand-in zips (week<N>_<dataset>_<student>.zip)")
    co.add_argument("--results-root", required=True, help="the class's results folder to unpack into")
    co.add_argument("--overwrite", action="store_true", help="replace a submission that is already there")
    co.add_argument("--max-mb", type=int, default=COLLECT_MAX_BYTES // 2 ** 20,
                    help="refuse zips that unpack to more than this")

    a = sub.add_parser("aggregate", help="class-wide tables and plots in reports/")
    a.add_argument("--results-root", default="results")
    a.add_argument("--out", default=None, help="output folder (default: reports/ next to results/)")
    a.add_argument("--include-smoke", action="store_true", help="also count smoke and synthetic runs")
    return p


def _params(pairs) -> dict:
    out = {}
    for k, v in pairs:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", k):
            raise ConfigError(f"-p {k} {v}: notebook parameters are UPPER_CASE names like EPOCHS or MODEL_NAME.")
        out[k] = parse_param(v)
    return out


def _runner_args(args) -> tuple[str, dict]:
    """(results root, notebook parameters) of run / batch: ``-p RESULTS_ROOT DIR`` is ``--results-root DIR``."""
    params = _params(args.param)
    root = args.results_root
    if "RESULTS_ROOT" in params:
        value = params.pop("RESULTS_ROOT")
        if value not in (None, ""):
            if root is not None and Path(root).resolve() != Path(str(value)).resolve():
                raise ConfigError(f"-p RESULTS_ROOT {value} and --results-root {root} disagree: give only "
                                  "--results-root.")
            root = str(value)
    return root or "results", params


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "run":
        results_root, params = _runner_args(args)
        oc = run_week(args.week, args.dataset, args.student, results_root, args.smoke, params,
                      args.overwrite, args.notebooks, args.kernel, log_output=args.log_output)
        print(oc.check.format(label=str(oc.out_dir)) if oc.check else "")
        print(f"Week {args.week} done in {oc.seconds:.0f}s -> {oc.out_dir} (executed notebook: {oc.notebook.name})")
        return 0
    if args.cmd == "batch":
        results_root, params = _runner_args(args)
        known = set().union(*(notebook_parameters(notebook_path(w, args.notebooks)) for w in parse_weeks(args.weeks)))
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"-p {', '.join(unknown)}: no notebook of these weeks has such a parameter "
                              f"(known: {', '.join(sorted(known))}).")
        outcomes = batch(parse_weeks(args.weeks), args.datasets, args.student, results_root, args.smoke,
                         params, args.overwrite, args.notebooks, args.kernel,
                         progress=not args.no_progress)
        table = summary_table(outcomes)
        print(table)
        if args.summary:
            from ..utils import write_text

            write_text(args.summary, table + "\n")
        return 0 if all(o.status == "ok" for o in outcomes) else 1
    if args.cmd == "check":
        reports = []
        for path in args.paths:
            p = Path(path)
            if args.week is not None or args.dataset or args.student:
                reports.append(check_folder(p, args.week, args.dataset, args.student, args.tasks))
            else:
                found = check_tree(p, tasks=args.tasks)
                if not found:
                    raise ConfigError(f"no submission folders under {p} (expected week<N>/<dataset>/<student>/).")
                reports.extend(found)
        for rep in reports:
            print(rep.format(strict=args.strict))
        n_ok = sum(r.passed(args.strict) for r in reports)
        print(f"\n{n_ok} of {len(reports)} folder(s) pass" + (" (strict)" if args.strict else ""))
        return 0 if n_ok == len(reports) else 1
    if args.cmd == "collect":
        done = collect(args.zips, args.results_root, overwrite=args.overwrite, max_bytes=args.max_mb * 2 ** 20)
        for c in done:
            print(c.format() + "\n")
        taken = [c for c in done if c.status == "taken in"]
        failing = [c for c in taken if not c.ok()]
        print(f"{len(taken)} of {len(done)} zip(s) taken in into {args.results_root}"
              + (f"; {len(done) - len(taken)} rejected" if len(taken) < len(done) else "")
              + (f"; {len(failing)} taken in but failing the check" if failing else ""))
        if taken:
            print(f"class tables: python -m medssl.course aggregate --results-root {args.results_root}")
        return 0 if len(taken) == len(done) and not failing else 1
    if args.cmd == "aggregate":
        res = aggregate(args.results_root, args.out, args.include_smoke)
        for k, v in res["paths"].items():
            print(f"{k:>22}: {v}")
        print(f"{res['n_rows']} metrics rows, {res['n_label_efficiency']} label-efficiency rows")
        return 0
    return 2

