"""Execute the weekly notebooks with papermill: one week (:func:`run_week`) or weeks x datasets (:func:`batch`).

``run_week`` keeps the executed copy of the notebook in the results folder it filled and checks that folder;
``batch`` runs in dependency order, so a failed week skips only the weeks that need it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, MedSSLError, OutputExistsError
from ..utils import progress_bar, relative_path
from . import manifest as M
from .check import FAILING, CheckReport, check_folder, check_group
from .config import repo_root


def notebook_path(week: int, notebooks_dir: str | os.PathLike | None = None) -> Path:
    """``notebooks/WeekNN_<name>.ipynb`` of a week (name from the manifest)."""
    nb_dir = Path(notebooks_dir) if notebooks_dir else repo_root() / "notebooks"
    path = nb_dir / M.core(week).notebook
    if not path.exists():
        raise ConfigError(f"notebook {path} not found. Run from the repository root or pass --notebooks DIR.")
    return path


@dataclass
class RunOutcome:
    week: int
    dataset: str | None
    student: str
    status: str = "ok"            # ok | checked (already there and passing the check: kept) | failed | skipped
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


def folder_state(results_root, week: int, dataset: str, student: str) -> str:
    """A student week's folder: ``empty`` (no file of the week), ``checked`` (passes ``course check``) or
    ``unfinished`` (holds files but fails the check: a failed or interrupted run, or work in progress)."""
    out_dir = M.results_dir(Path(results_root), week, dataset, student)
    if not _has_submission(out_dir, week):
        return "empty"
    return "checked" if check_folder(out_dir, week, dataset, student).passed() else "unfinished"


def batch(weeks: Sequence[int], datasets: Sequence[str], student: str, results_root="results", smoke=False,
          params: dict | None = None, overwrite: bool = False, notebooks_dir=None, kernel=None,
          progress: bool = True, retry_failed: bool = False) -> list[RunOutcome]:
    """Run weeks x datasets in dependency order; a failure skips only the weeks that need it.

    A week whose folder already passes the check is kept, not run again (``checked``), unless ``overwrite``;
    a folder that fails it is replaced only with ``overwrite`` or ``retry_failed``.
    """
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
        found = folder_state(results_root, w, d, student) if d is not None and not overwrite else "empty"
        if found == "checked":
            outcomes.append(RunOutcome(w, d, student, status="checked",
                                       out_dir=M.results_dir(Path(results_root), w, d, student)))
            continue
        try:
            oc = run_week(w, d, student, results_root, smoke, week_params,
                          overwrite or (retry_failed and found == "unfinished"), notebooks_dir, kernel,
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
                                               "checked (kept)" if o.status == "checked" else
                                               o.summary().replace("|", "/")))
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    n_ok = sum(o.status in ("ok", "checked") for o in outcomes)
    lines.append(f"\n{n_ok}/{len(outcomes)} notebooks ok; total {sum(o.seconds for o in outcomes):.0f}s")
    return "\n".join(lines)
