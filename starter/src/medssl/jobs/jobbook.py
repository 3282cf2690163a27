"""A batch of jobs run through submitit, recorded beside its results so that anyone can see how it stands,
also after the process that submitted it has exited.

::

    <root>/_jobs/<batch>.json         the batch: executor, and for each job its title, prerequisites, job id, log
    <root>/_jobs/<batch>/<key>.json   one job's own state, written by the job: running, then done | checked | failed
    <root>/_logs/<batch>/             submitit's folder: each job's stdout and stderr logs (and its pickles)

``<root>`` is the results folder (course batch) or the grid's ``--out``; paths in the record are relative to it.

Two ways of running, one per submitit executor:

* :func:`run_local` (``LocalExecutor``, which knows no dependencies): this process submits a job once the jobs
  it needs have succeeded, keeps at most ``parallelism`` running, and waits for the last one;
* :func:`submit_slurm` (``SlurmExecutor``): one job array per group of jobs, the groups' prerequisites as Slurm
  dependencies (``aftercorr``: task *i* of an array starts when task *i* of each array it needs has succeeded;
  ``--kill-on-invalid-dep=yes`` cancels it when one failed); this process exits once everything is submitted.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, MedSSLError
from ..utils import write_json
from .executors import use_threads

FINAL = ("done", "checked", "failed", "skipped")
WHICH = {"failed": "failed", "skipped": "was skipped"}   # "needs week 4 ..., which failed"
SUCCEEDED = ("done", "checked")
# Slurm states (sacct) that end a job without our own final state
POLL_S = 1.0          # how often run_local looks at its running jobs
SLURM_FAILED = ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE", "CANCELLED")


class SkipJob(Exception):
    """Raised by a job that was planned not to run (a job it needs will not be there): recorded as skipped."""


@dataclass
class Job:
    """One job: ``fn(*args)`` returns ``"done"`` or ``"checked"``, raises on failure."""

    key: str                       # unique in the batch; names the job's state file
    title: str                     # what people read: "week 5 breastmnist alice"
    fn: Callable | None = None
    args: tuple = ()
    needs: tuple[str, ...] = ()    # keys of the jobs that must succeed first
    state: str = "pending"         # pending (to run), or decided without running: checked | failed | skipped
    error: str = ""


def one_line(exc: BaseException) -> str:
    """The first line of an error; a :class:`MedSSLError`'s message says what happened without its class name."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return (first if isinstance(exc, MedSSLError) and first else f"{type(exc).__name__}: {first}")[:300]


def run_tracked(state_file: str, fn: Callable, args: tuple, cpus: int | None = None) -> str:
    """What each submitted job runs: ``fn(*args)``, with its state written to ``state_file`` before and after."""
    use_threads(cpus)
    t0 = time.time()
    info = {"started": t0, "host": socket.gethostname(), "pid": os.getpid()}
    write_json(state_file, {"state": "running", **info})
    try:
        result = fn(*args)
    except SkipJob as exc:
        write_json(state_file, {"state": "skipped", "error": str(exc), **info, "seconds": time.time() - t0})
        raise
    except BaseException as exc:
        write_json(state_file, {"state": "failed", "error": one_line(exc), "detail": str(exc)[:2000], **info,
                                "seconds": time.time() - t0})
        raise
    state = result if result in SUCCEEDED else "done"
    write_json(state_file, {"state": state, **info, "finished": time.time(), "seconds": time.time() - t0})
    return state


def log_tail(path: str | os.PathLike, n: int = 8) -> list[str]:
    """The last ``n`` non-empty lines of a log file ([] when there is none yet)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def _alive(pid, host) -> bool | None:
    """Whether process ``pid`` on ``host`` is still running (None: another machine, cannot tell)."""
    if not pid or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


class JobBook:
    """The record of one batch (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, record: dict):
        self.root = Path(root)
        self.record = record

    # ------------------------------------------------------------------ files
    @property
    def batch(self) -> str:
        return self.record["batch"]

    @property
    def path(self) -> Path:
        return self.root / "_jobs" / f"{self.batch}.json"

    @property
    def log_dir(self) -> Path:
        return self.root / "_logs" / self.batch

    def state_file(self, key: str) -> Path:
        return self.root / "_jobs" / self.batch / f"{key}.json"

    @classmethod
    def create(cls, root: str | os.PathLike, kind: str, executor: str, jobs: Sequence[Job],
               meta: dict | None = None) -> JobBook:
        """A new batch ``<kind>-<date>-<time>`` listing ``jobs``, saved at once."""
        root = Path(root).resolve()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        batch, n = f"{kind}-{stamp}", 1
        while (root / "_jobs" / f"{batch}.json").exists():
            n += 1
            batch = f"{kind}-{stamp}-{n}"
        book = cls(root, {"batch": batch, "kind": kind, "executor": executor, "created": time.time(),
                          "host": socket.gethostname(), "submitter_pid": os.getpid(), **(meta or {}),
                          "jobs": {j.key: {"title": j.title, "needs": list(j.needs), "state": j.state,
                                           "error": j.error, "job_id": None, "log": None} for j in jobs}})
        book.state_file("x").parent.mkdir(parents=True, exist_ok=True)
        book.log_dir.mkdir(parents=True, exist_ok=True)
        book.save()
        return book

    @classmethod
    def open(cls, root: str | os.PathLike, batch: str | None = None) -> JobBook:
        """Batch ``batch`` of ``root``, else its latest."""
        root = Path(root)
        folder = root / "_jobs"
        if batch:
            path = folder / f"{batch.removesuffix('.json')}.json"
            if not path.is_file():
                known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
                raise ConfigError(f"no batch {batch} in {folder}" + (f"; batches: {', '.join(known)}." if known
                                                                     else "."))
            return cls(root, json.loads(path.read_text()))
        records = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
        if not records:
            raise ConfigError(f"{root} has no batch of jobs (no {folder.name}/ folder with a record): submit one "
                              "with --executor local or slurm first.")
        return cls(root, max(records, key=lambda r: (r.get("created", 0), r["batch"])))

    def save(self) -> None:
        write_json(self.path, self.record)

    def mark(self, key: str, state: str, error: str = "") -> None:
        self.record["jobs"][key].update(state=state, error=error)

    def submitted(self, key: str, job) -> None:
        """Remember submitit's job id and log of ``key``."""
        rec = self.record["jobs"][key]
        rec["job_id"] = str(job.job_id)
        try:
            rec["log"] = str(Path(job.paths.stderr).resolve().relative_to(self.root.resolve()))
        except ValueError:
            rec["log"] = str(job.paths.stderr)

    def own_state(self, key: str) -> dict:
        try:
            return json.loads(self.state_file(key).read_text())
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------ status
    def status(self, log_lines: int = 8) -> list[dict]:
        """Every job: ``{"key", "title", "state", "detail", "log", "tail"}``, prerequisites first."""
        out: dict[str, dict] = {}
        slurm_states = self._slurm_states()
        submitter_alive = _alive(self.record.get("submitter_pid"), self.record.get("host"))
        for key, rec in self.record["jobs"].items():
            own = self.own_state(key)
            state, detail = own.get("state") or rec["state"], own.get("error") or rec.get("error", "")
            sacct = slurm_states.get(rec.get("job_id") or "", "")
            ended = sacct.split()[0] in SLURM_FAILED if sacct.strip() else False
            if state == "running" and (ended or (self.record["executor"] == "local" and _alive(
                    own.get("pid"), own.get("host")) is False)):
                state, detail = "failed", (f"Slurm: {sacct}" if ended else
                                           "the job's process ended without a result (killed? out of memory?)")
            if state == "pending":
                blocked = [n for n in rec["needs"] if out.get(n, {}).get("state") in ("failed", "skipped")]
                if blocked:
                    state, detail = "skipped", (f"needs {out[blocked[0]]['title']}, which "
                                                f"{WHICH[out[blocked[0]]['state']]}")
                elif ended:
                    state, detail = "failed", f"Slurm: {sacct}"
                elif sacct == "RUNNING":
                    state = "running"
                elif self.record["executor"] == "local" and _alive(rec.get("job_id"), self.record.get("host")) is False:
                    state, detail = "failed", "the job's process ended before it started; see its log"
                elif rec.get("job_id") is None and self.record["executor"] == "local" and submitter_alive is False:
                    detail = "not submitted: the batch stopped before its prerequisites finished; run it again"
                elif rec.get("job_id") is None and rec["needs"]:
                    detail = "waiting for " + ", ".join(self.record["jobs"][n]["title"] for n in rec["needs"]
                                                        if n in self.record["jobs"])
                elif rec.get("job_id"):
                    detail = f"job {rec['job_id']}" + (f" ({sacct})" if sacct else "")
            log = self.root / rec["log"] if rec.get("log") else None
            out[key] = {"key": key, "title": rec["title"], "state": state, "detail": detail,
                        "job_id": rec.get("job_id"), "log": log,
                        "tail": log_tail(log, log_lines) if log is not None and state == "failed" else []}
        return list(out.values())

    def _slurm_states(self) -> dict[str, str]:
        """sacct's state of the batch's Slurm jobs, through submitit ({} without Slurm or without submitit)."""
        import shutil

        if self.record["executor"] != "slurm" or shutil.which("sacct") is None:
            return {}
        try:
            from submitit.slurm.slurm import SlurmJob
        except ModuleNotFoundError:
            return {}
        states = {}
        for rec in self.record["jobs"].values():
            if rec.get("job_id"):
                try:
                    states[rec["job_id"]] = SlurmJob(self.log_dir, rec["job_id"]).state
                except Exception:  # sacct unreachable: the jobs' own files still tell most
                    pass
        return states


def format_status(rows: Sequence[dict], book: JobBook) -> str:
    """One line per job, then the failed jobs' errors and the last lines of their logs."""
    width = max((len(r["title"]) for r in rows), default=10)
    lines = [f"batch {book.batch} ({book.record['executor']}), {len(rows)} jobs; logs in {book.log_dir}"]
    for r in rows:
        detail = r["detail"] if len(r["detail"]) <= 200 else r["detail"][:199] + "…"
        lines.append(f"  {r['title']:<{width}}  {r['state']:<8}  {detail}".rstrip())
    for r in rows:
        if r["state"] == "failed" and r["tail"]:
            lines += ["", f"{r['title']}: last lines of {r['log']}"] + [f"  | {ln}" for ln in r["tail"]]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("pending", "running", *FINAL)}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- running
def run_local(executor, book: JobBook, jobs: Sequence[Job], parallelism: int, cpus: int | None = None,
              report: Callable[[str], None] = print) -> dict[str, str]:
    """Run ``jobs`` through submitit's local executor; returns each job's final state.

    A job is submitted when every job it needs has succeeded (done or checked), at most ``parallelism`` at a
    time; when one of them failed or was skipped, it is skipped. Ctrl-C cancels the running jobs.
    """
    states = {j.key: j.state for j in jobs}
    titles = {j.key: j.title for j in jobs}
    todo = [j for j in jobs if j.state == "pending"]
    running: dict[str, object] = {}
    n_total, n_done = len(todo), 0
    try:
        while todo or running:
            for key, sj in list(running.items()):
                if sj.done():
                    own = book.own_state(key)
                    states[key] = own.get("state") if own.get("state") in FINAL else "failed"
                    if states[key] == "failed" and not own.get("error"):
                        book.mark(key, "failed", "the job ended without a result; see its log")
                    del running[key]
                    n_done += 1
                    report(f"[{n_done}/{n_total}] {titles[key]}: {states[key]}"
                           + (f" ({own.get('seconds', 0):.0f}s)" if states[key] in SUCCEEDED else
                              f": {own.get('error') or 'see its log'}"))
            started = False
            for job in list(todo):
                blocked = [n for n in job.needs if states.get(n) in ("failed", "skipped")]
                if blocked:
                    states[job.key] = "skipped"
                    book.mark(job.key, "skipped", f"needs {titles[blocked[0]]}, which {WHICH[states[blocked[0]]]}")
                    todo.remove(job)
                    n_done += 1
                    report(f"[{n_done}/{n_total}] {job.title}: skipped (needs {titles[blocked[0]]})")
                elif len(running) < parallelism and all(states.get(n, "done") in SUCCEEDED for n in job.needs):
                    sj = executor.submit(run_tracked, str(book.state_file(job.key)), job.fn, job.args, cpus)
                    book.submitted(job.key, sj)
                    running[job.key] = sj
                    todo.remove(job)
                    started = True
            if started:
                book.save()
            if todo and not running and not started:  # cannot happen with needs inside the batch; never spin
                for job in todo:
                    book.mark(job.key, "skipped", "its prerequisites are not part of this batch")
                    states[job.key] = "skipped"
                todo = []
            if todo or running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for key, sj in running.items():
            sj.cancel()
            book.mark(key, "failed", "interrupted (Ctrl-C)")
        raise
    finally:
        book.save()
    return states


def submit_slurm(executor, book: JobBook, groups: Sequence[tuple[Sequence[Job], Sequence[int]]],
                 cpus: int | None = None, then: Job | None = None) -> list[str]:
    """Submit each group of jobs as one Slurm array; returns the arrays' job ids.

    ``groups``: ``(jobs, needs)`` with ``needs`` the indices of earlier groups this one depends on. The groups
    must line up: task *i* of a group needs task *i* of each group in ``needs`` (Slurm's ``aftercorr``).
    ``then``: one more job, started when every array has ended (``afterany``), e.g. to summarize.
    """
    ids: list[str] = []
    for jobs, needs in groups:
        if any(len(groups[n][0]) != len(jobs) for n in needs):
            raise ValueError("dependent job arrays must have the same tasks (aftercorr pairs task i with task i)")
        after = [ids[n] for n in needs]
        kind = "aftercorr" if len(jobs) > 1 else "afterok"   # a lone job is no array; afterok is the same then
        executor.update_parameters(dependency=f"{kind}:{':'.join(after)}" if after else None,
                                   additional_parameters={"kill-on-invalid-dep": "yes"} if after else None)
        with executor.batch():
            subs = [executor.submit(run_tracked, str(book.state_file(j.key)), j.fn, j.args, cpus) for j in jobs]
        for job, sj in zip(jobs, subs):
            book.submitted(job.key, sj)
        ids.append(str(subs[0].job_id).split("_")[0])
        book.save()
    if then is not None:
        executor.update_parameters(dependency="afterany:" + ":".join(ids) if ids else None,
                                   additional_parameters=None)
        sj = executor.submit(run_tracked, str(book.state_file(then.key)), then.fn, then.args, cpus)
        book.submitted(then.key, sj)
        book.save()
    return ids

