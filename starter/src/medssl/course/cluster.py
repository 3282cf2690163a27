"""A class's batch through submitit: each week of each (student, dataset) chain is one job.

::

    python -m medssl.course batch --roster roster.csv --weeks 1-8 --executor slurm --cluster-config cluster.toml
    python -m medssl.course status                       # pending, running, done, failed (+ log), checked

How a week waits for the weeks it needs (Week 5 needs Week 4, Week 6 needs Weeks 3 and 4, ...):

* **slurm**: one job array per week with one task per chain, the chains in the same order in every array. A
  week's array depends on the arrays of the weeks it needs through Slurm's ``aftercorr``: task *i* (one chain)
  starts only when task *i* of each of those arrays has succeeded, and ``--kill-on-invalid-dep=yes`` cancels it
  when one failed. So a failed week stops its own chain and nothing else, Slurm keeps the order without anyone
  watching, and the submitting process returns as soon as the arrays are queued (one ``sbatch`` per week, not
  one per notebook).
* **local**: submitit's local executor has no dependencies, so this process takes Slurm's part: it starts a
  week once the weeks it needs have succeeded, at most ``--parallelism`` at once, and waits for the last one.

Why a job per week rather than one job per chain: every week gets its own log, state and time limit; the
independent weeks of a chain (1-4) and all chains run side by side; a re-run redoes only the weeks that are
not finished; and a week waiting for another holds no node.

What each job does is decided before anything is submitted, as in the inline batch (:func:`plan`): a week whose
folder passes ``course check`` is kept (``checked``); one holding files that fail the check is refused unless
``--retry-failed`` (or ``--overwrite``) says to replace it; a week whose prerequisite is refused is skipped. In
a Slurm array a chain with nothing to do that week still has a task (it ends at once) so that task *i* is the
same chain in every array. Each job runs :func:`medssl.course.runner.run_week` with the arguments the inline
batch gives it, so a chain computes the same metrics whichever executor runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError, MedSSLError, OutputExistsError
from ..jobs.executors import ClusterSettings, check_executor, make_executor
from ..jobs.jobbook import Job, JobBook, SkipJob, format_status, run_local, submit_slurm
from . import manifest as M
from .roster import Chain
from .runner import _all_deps, folder_state, notebook_parameters, notebook_path, run_week

RUN, KEEP, REFUSE, SKIP = "run", "keep", "refuse", "skip"
BOOK_STATE = {RUN: "pending", KEEP: "checked", REFUSE: "failed", SKIP: "skipped"}


def check_weeks(weeks: Sequence[int]) -> list[int]:
    group = [w for w in weeks if M.core(w).location == "group"]
    if group:
        raise ConfigError(f"Week {group[0]} is a group week (one per class, in figures/ and reports/), not a chain "
                          "of a student: run the chains' weeks (1-8) on the cluster, then the group weeks "
                          "inline, e.g. python -m medssl.course batch --weeks 9-10 --student ta.")
    return sorted(weeks)


def job_key(week: int, chain: Chain) -> str:
    return f"week{week}-{chain.dataset}-{chain.student}"


def plan(weeks: Sequence[int], chains: Sequence[Chain], results_root, overwrite: bool = False,
         retry_failed: bool = False) -> dict[tuple[int, Chain], tuple[str, str]]:
    """``(action, reason)`` of each (week, chain): run, keep (already checked), refuse or skip."""
    out: dict[tuple[int, Chain], tuple[str, str]] = {}
    for chain in chains:
        for w in sorted(weeks):
            blocked = [d for d in sorted(_all_deps(w)) if d in weeks and out[(d, chain)][0] in (REFUSE, SKIP)]
            if blocked:
                out[(w, chain)] = (SKIP, f"needs Week {blocked[0]}, which will not run")
                continue
            found = "empty" if overwrite else folder_state(results_root, w, chain.dataset, chain.student)
            if found == "checked":
                out[(w, chain)] = (KEEP, "")
            elif found == "unfinished" and not retry_failed:
                folder = M.results_dir(Path(results_root), w, chain.dataset, chain.student)
                out[(w, chain)] = (REFUSE, f"{folder} holds Week {w} files that fail the check (a failed or "
                                           "unfinished run?). Pass --retry-failed to run it again and replace "
                                           "them, or look at it with: python -m medssl.course check " + str(folder))
            else:   # "retry": the run replaces the unfinished folder
                out[(w, chain)] = (RUN, "retry" if found == "unfinished" else "")
    return out


def week_job(action: str, reason: str, week: int, dataset: str, student: str, results_root: str, smoke: bool,
             params: dict, overwrite: bool, notebooks_dir: str | None, kernel: str | None) -> str:
    """One week of one chain, inside its job: returns ``done`` or ``checked``; raises when the week failed."""
    if action == KEEP:
        return "checked"
    if action == SKIP:
        raise SkipJob(reason)
    if action == REFUSE:
        raise OutputExistsError(reason)
    oc = run_week(week, dataset, student, results_root, smoke, params, overwrite, notebooks_dir, kernel,
                  raise_on_error=False)
    if oc.status != "ok":
        where = f" in cell {oc.cell}" if oc.cell is not None else ""
        raise MedSSLError(f"Week {week} {dataset} {student} failed{where}: {oc.detail or oc.error}\n"
                          f"  executed notebook (with the error): {oc.notebook}")
    return "done"


def _prefetch(datasets: Sequence[str], report: Callable[[str], None]) -> None:
    """Download each dataset once, here, before the jobs start (a cluster's compute nodes are often offline)."""
    from ..data import ensure_file

    for key in dict.fromkeys(datasets):
        try:
            ensure_file(key)
        except MedSSLError as exc:
            report(f"warning: {key}: {exc} (its chains will fail unless the jobs can fetch it)")


def submit_batch(weeks: Sequence[int], chains: Sequence[Chain], results_root, settings: ClusterSettings,
                 smoke: bool = False, params: dict | None = None, overwrite: bool = False,
                 retry_failed: bool = False, notebooks_dir=None, kernel: str | None = None,
                 report: Callable[[str], None] = print) -> JobBook:
    """Run (local) or queue (slurm) the weeks of every chain; returns the batch's record."""
    weeks = check_weeks(weeks)
    if not chains:
        raise ConfigError("no chain to run: give --student and --datasets, or --roster roster.csv.")
    check_executor(settings)
    results_root = Path(results_root).resolve()
    nb_dir = notebook_path(weeks[0], notebooks_dir).parent.resolve()
    declared = {w: notebook_parameters(notebook_path(w, nb_dir)) for w in weeks}
    actions = plan(weeks, chains, results_root, overwrite, retry_failed)

    def job(w: int, chain: Chain) -> Job:
        action, reason = actions[(w, chain)]
        week_params = {k: v for k, v in (params or {}).items() if k in declared[w]}
        args = (action, reason, w, chain.dataset, chain.student, str(results_root), smoke, week_params,
                overwrite or reason == "retry", str(nb_dir), kernel)
        needs = tuple(job_key(d, chain) for d in sorted(_all_deps(w)) if d in weeks)
        return Job(job_key(w, chain), f"week {w} {chain.title}", week_job, args, needs, BOOK_STATE[action],
                   reason if action != RUN else "")

    jobs = [job(w, c) for w in weeks for c in chains]
    to_run = sum(a == RUN for a, _ in actions.values())
    book = JobBook.create(results_root, "course", settings.executor, jobs,
                          meta={"weeks": weeks, "chains": [[c.student, c.dataset] for c in chains], "smoke": smoke})
    report(f"batch {book.batch}: {len(chains)} chain(s) x {len(weeks)} week(s) = {len(jobs)} weeks; "
           f"{to_run} to run, {sum(a == KEEP for a, _ in actions.values())} already checked (kept)")
    if not to_run:
        return book
    _prefetch([c.dataset for c in chains], report)
    executor = make_executor(settings, book.log_dir, name="medssl-course")
    if settings.executor == "local":
        run_local(executor, book, jobs, settings.jobs_at_once, settings.cpus, report)
        return book
    active = [c for c in chains if any(actions[(w, c)][0] == RUN for w in weeks)]
    by_key = {j.key: j for j in jobs}
    submitted: list[int] = []
    groups = []
    for w in weeks:
        if not any(actions[(w, c)][0] == RUN for c in active):
            continue
        needs = [submitted.index(d) for d in sorted(_all_deps(w)) if d in submitted]
        groups.append(([by_key[job_key(w, c)] for c in active], needs))
        submitted.append(w)
    ids = submit_slurm(executor, book, groups, settings.cpus)
    report(f"submitted {len(groups)} job array(s) of {len(active)} task(s) each: "
           + ", ".join(f"week {w} = {i}" for w, i in zip(submitted, ids)))
    shown = os.path.relpath(results_root)
    report(f"watch: python -m medssl.course status {results_root if shown.startswith('..') else shown}")
    return book


def status_text(results_root, batch: str | None = None, log_lines: int = 8) -> tuple[str, bool]:
    """The status list of a batch (default: the latest) and whether every job succeeded."""
    book = JobBook.open(results_root, batch)
    rows = book.status(log_lines)
    return format_status(rows, book), all(r["state"] in ("done", "checked") for r in rows)
