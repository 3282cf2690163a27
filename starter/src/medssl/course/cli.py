"""Run, batch-run, check and aggregate the weekly notebooks.

::

    python -m medssl.course run --week 1 --dataset breastmnist --student alice
    python -m medssl.course run --week 3 --dataset pneumoniamnist --student bob --smoke -p EPOCHS 2
    python -m medssl.course batch --weeks 1-8 --datasets breastmnist pneumoniamnist --student ta --smoke
    python -m medssl.course batch --roster roster.csv --executor slurm --cluster-config cluster.toml
    python -m medssl.course status                                     # the jobs of the latest batch
    python -m medssl.course check results/week2/breastmnist/alice      # or a whole results/ tree
    python -m medssl.course aggregate                                  # class-wide tables in reports/
    python -m medssl.course collect handins/*.zip --results-root class/results   # take in hand-in zips

``run`` executes ``notebooks/WeekNN_*.ipynb`` with papermill and keeps the
executed copy in the results folder it filled. ``check`` validates folders
against :mod:`medssl.course.manifest`, the one list of what each week must hold.
``batch --executor local|slurm`` runs each week of each (student, dataset) chain as a submitit job
(:mod:`medssl.course.cluster`), and ``status`` lists those jobs.
``collect`` unpacks the students' hand-in zips (made by ``WeekRun.hand_in``)
into a class's results tree, refusing any zip that is unsafe or mislabelled.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..jobs.executors import add_executor_args, settings_from_args, use_threads
from . import manifest as M
from .aggregate import aggregate
from .check import check_folder, check_tree
from .cluster import check_weeks, status_text, submit_batch
from .collect import COLLECT_MAX_BYTES, collect
from .roster import chains_for, read_roster
from .runner import batch, notebook_parameters, notebook_path, parse_param, parse_weeks, run_week, summary_table


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medssl.course", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common_run(sp, student_help="your name: results go to results/week<N>/<dataset>/<name>"):
        sp.add_argument("--student", required=sp.prog.endswith(" run"), help=student_help)
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

    b = sub.add_parser("batch", help="run several weeks x datasets in dependency order (or a class: --roster)")
    b.add_argument("--weeks", default="1-8", help="e.g. 1-8, 1,2,3 (default 1-8)")
    b.add_argument("--datasets", nargs="+", default=None, help=f"default: {' '.join(M.DATASETS)}")
    b.add_argument("--roster", default=None, metavar="CSV",
                   help="a class: one chain of weeks per student,dataset row (instead of --student/--datasets)")
    b.add_argument("--retry-failed", action="store_true",
                   help="run again weeks whose folder fails the check (a failed run), replacing it; folders "
                        "that pass the check are always kept")
    b.add_argument("--status", action="store_true", help="list the jobs of the latest batch in --results-root")
    b.add_argument("--summary", default=None, help="also write the summary table to this markdown file")
    b.add_argument("--no-progress", action="store_true")
    common_run(b, "one student's name (or --roster)")
    add_executor_args(b)

    s = sub.add_parser("status", help="the jobs of a batch run with --executor local or slurm (exit status 0 once "
                                      "every job has succeeded)")
    s.add_argument("results_root", nargs="?", default="results", help="the batch's results folder (or a grid's --out)")
    s.add_argument("--batch", default=None, help="which batch (default: the latest), e.g. course-20250301-101500")
    s.add_argument("--lines", type=int, default=8, help="log lines shown per failed job")

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
        return _batch(args)
    if args.cmd == "status":
        text, ok = status_text(args.results_root, args.batch, args.lines)
        print(text)
        return 0 if ok else 1
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


def _batch(args) -> int:
    results_root, params = _runner_args(args)
    if args.status:
        text, ok = status_text(results_root)
        print(text)
        return 0 if ok else 1
    settings = settings_from_args(args)
    if settings.executor == "inline":
        use_threads(settings.cpus)   # what --cpus means for a job, here: the same numbers as a job with --cpus
    weeks = parse_weeks(args.weeks)
    known = set().union(*(notebook_parameters(notebook_path(w, args.notebooks)) for w in weeks))
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"-p {', '.join(unknown)}: no notebook of these weeks has such a parameter "
                          f"(known: {', '.join(sorted(known))}).")
    if args.roster and (args.student or args.datasets):
        raise ConfigError("give either --roster (a class) or --student with --datasets (one student), not both.")
    if not args.roster and not args.student:
        raise ConfigError("say whose weeks to run: --student NAME (and --datasets), or --roster roster.csv.")
    if settings.executor == "inline" and not args.roster:   # one student, in this process: as it always was
        outcomes = batch(weeks, args.datasets or list(M.DATASETS), args.student, results_root, args.smoke, params,
                         args.overwrite, args.notebooks, args.kernel, progress=not args.no_progress,
                         retry_failed=args.retry_failed)
        text, ok = summary_table(outcomes), all(o.status in ("ok", "checked") for o in outcomes)
    else:
        chains = read_roster(args.roster) if args.roster else chains_for(args.student,
                                                                         args.datasets or list(M.DATASETS))
        check_weeks(weeks)
        if settings.executor == "inline":
            parts, ok = [], True
            for c in chains:
                outcomes = batch(weeks, [c.dataset], c.student, results_root, args.smoke, params, args.overwrite,
                                 args.notebooks, args.kernel, progress=not args.no_progress,
                                 retry_failed=args.retry_failed)
                parts.append(f"## {c.student} ({c.dataset})\n\n{summary_table(outcomes)}")
                ok = ok and all(o.status in ("ok", "checked") for o in outcomes)
            text = "\n\n".join(parts)
        else:
            book = submit_batch(weeks, chains, results_root, settings, args.smoke, params, args.overwrite,
                                args.retry_failed, args.notebooks, args.kernel)
            if settings.executor == "slurm":
                return 0
            text, ok = status_text(results_root, book.batch)
    print(text)
    if args.summary:
        from ..utils import write_text

        write_text(args.summary, text + "\n")
    return 0 if ok else 1
