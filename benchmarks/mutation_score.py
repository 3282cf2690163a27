"""Mutation score of the library's core modules: how many deliberate small bugs do the unit tests catch?

    python benchmarks/mutation_score.py                          # all listed modules, 2 workers
    python benchmarks/mutation_score.py --modules calibration metrics --max-children 2
    python benchmarks/mutation_score.py --out benchmarks/results/mutation.json

It uses mutmut (``pip install mutmut``; it is in ``requirements.txt``). mutmut rewrites every function of the
chosen modules into many variants, each with one small change (``<`` for ``<=``, ``+`` for ``-``, a constant off
by one, a dropped argument, ...), runs the unit tests that reach that function against each variant, and counts a
variant *killed* when a test fails.

The run happens in a scratch copy (``--workdir``, default a temporary folder), never in the repository: the
tracked files are copied there, with the library also at ``src/medssl`` where mutmut looks for it. Each module is
mutated in its own scratch copy and tested with its own unit tests (``UNIT_TESTS``), without the slow and CUDA tests.
The real-data tests run when ``MEDMNIST_ROOT`` holds the files, as in CI.

Survivors that cannot be killed because the change does not alter behaviour (*equivalent mutants*) are listed in
``benchmarks/mutation_equivalents.toml``, each with a one-line reason; they are left out of the score and reported
separately. Every other survivor is printed with its diff: write the test that kills it.
Not run in CI: on a 2-core machine a full run takes tens of minutes.

``--sample N`` tests a random sample of N mutants per module (``--seed``) instead of all of them, for modules
whose every mutant costs seconds of tests (decisions, probe: thousands of mutants, hours on two cores). The
score is then an estimate, printed with its 95 % Wilson interval; random mutant sampling is the usual way to
cut the cost (Zhang et al., "Is operator-based mutant selection superior to random mutant selection?", ICSE 2010).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
# each module with its unit tests: a mutant is run against these only (the tests that reach the mutated
# function, as mutmut records them), so a mutant of a widely used helper does not rerun the training tests
UNIT_TESTS = {
    "calibration": ("test_calibration.py", "test_ties.py", "test_known_answers.py", "test_multiclass.py",
                    "test_temperature_report.py", "test_calibration_contracts.py"),
    "metrics": ("test_metrics.py", "test_ties.py", "test_known_answers.py", "test_multiclass.py",
                "test_metrics_contracts.py"),
    "ssl": ("test_ssl.py", "test_moco_reference.py", "test_nt_xent_batch_size.py", "test_ssl_contracts.py",
            "test_fake_cuda.py"),
    "decisions": ("test_decisions.py", "test_ties.py", "test_known_answers.py", "test_selection_invariance.py",
                  "test_exercise_hooks.py", "test_calibration.py", "test_multiclass.py", "test_train_cli.py",
                  "test_decisions_contracts.py", "test_decisions_records.py"),
    "probe": ("test_probe.py", "test_selection_invariance.py", "test_smallcnn_encoder_downstream.py",
              "test_exercise_hooks.py", "test_multiclass.py", "test_probe_records.py"),
    "recipes": ("test_recipes_contracts.py", "test_recipes.py", "test_known_answers.py", "test_fake_cuda.py"),
    "data": ("test_data_contracts.py", "test_data.py", "test_data_skip_guards.py", "test_label_fractions.py",
             "test_accel.py", "test_fake_cuda.py"),
}
MODULES = tuple(UNIT_TESTS)
EQUIVALENTS = REPO / "benchmarks" / "mutation_equivalents.toml"
# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code)
KILLED = {1, 3, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}
TIMEOUT_CODE = 36
RECHECK = "recheck.json"  # verdicts of --recheck, beside mutmut's own
SAMPLE = "sample.json"  # the mutants a --sample run tests, beside mutmut's own records
NO_MUTANT = "medssl.__generate_only__"  # a mutant filter that matches nothing (see generate_mutants)
RECHECK_TIMEOUT_S = 600

PYTEST_INI = """[pytest]
testpaths = tests
addopts = -p no:cacheprovider -p no:nbval
markers =
    slow: slow
    cuda: needs a GPU
"""


def prepare(workdir: Path, module: str, rev: str | None = None) -> None:
    """A scratch copy of the repository, with the library also at ``src/medssl`` for mutmut.

    ``rev`` (a commit) copies that commit's files; without it, the working tree's tracked files plus any new
    files in ``tests/`` and the library. mutmut mutates ``src/`` and puts its mutated copy first on ``sys.path``;
    the rest of the repository (notebooks, results, course.toml, ...) comes along because some unit tests read it.
    """
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    listing = ["git", "ls-files", "-z"] if rev is None else ["git", "ls-tree", "-r", "-z", "--name-only", rev]
    files = subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True)
    names = [rel for rel in files.stdout.split("\0") if rel]
    top = {rel.split("/")[0] for rel in names}
    if rev is not None:
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive.stdout, check=True)
    else:
        for rel in names:
            src = REPO / rel
            if not src.is_file():  # deleted in the working tree
                continue
            dst = workdir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        for rel in ("tests", "starter/src/medssl"):  # new, not yet committed files count too
            shutil.copytree(REPO / rel, workdir / rel, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(workdir / "starter" / "src" / "medssl", workdir / "src" / "medssl")
    (workdir / "pytest.ini").write_text(PYTEST_INI)
    tests = "".join(f"    tests/{t}\n" for t in UNIT_TESTS[module])
    also = "\n    ".join(sorted(t + ("/" if (workdir / t).is_dir() else "") for t in top
                                if t not in ("tests", "pytest.ini", "setup.cfg", "pyproject.toml")))
    (workdir / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src\n"
        f"also_copy =\n    {also}\n"
        f"only_mutate =\n    src/medssl/{module}.py\n"
        "timeout_multiplier = 40\n"  # the wall limit is (test time + 1 s) x this: loose, for a loaded machine
        "pytest_add_cli_args =\n    -m\n    not slow and not cuda\n    -x\n    -q\n"
        f"pytest_add_cli_args_test_selection =\n{tests}")


def load_equivalents() -> list[dict]:
    """The equivalent mutants: ``[{function, before, after, reason}]``, matched by their change, not their number.

    mutmut numbers the mutants of a function in order, so the numbers move whenever the function changes; the
    changed line before and after the mutation does not.
    """
    if not EQUIVALENTS.exists():
        return []
    return list(tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", []))


def change_of(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a mutant's diff, each joined and stripped of indentation."""
    lines = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    return (" ".join(ln[1:].strip() for ln in lines if ln.startswith("-")),
            " ".join(ln[1:].strip() for ln in lines if ln.startswith("+")))


def equivalent_reason(name: str, diff: str, equivalents: list[dict]) -> str | None:
    function = name.rsplit("__mutmut_", 1)[0]
    before, after = change_of(diff)
    for e in equivalents:
        if e["function"] == function and e["before"].strip() == before and e["after"].strip() == after:
            return e["reason"]
    return None


def read_results(workdir: Path, modules: list[str]) -> dict[str, dict[str, int | None]]:
    """``{module: {mutant name: exit code}}`` from mutmut's per-file ``.meta`` records (``workdir/<module>``),
    with the verdicts of a later ``--recheck`` (``recheck.json``) taking precedence."""
    out = {}
    for m in modules:
        meta = workdir / m / "mutants" / "src" / "medssl" / f"{m}.py.meta"
        out[m] = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        rechecked = workdir / m / RECHECK
        if rechecked.exists():
            out[m].update(json.loads(rechecked.read_text()))
        sample = workdir / m / SAMPLE
        if sample.exists():  # a --sample run: only the drawn mutants count
            drawn = json.loads(sample.read_text())["mutants"]
            out[m] = {name: out[m].get(name) for name in drawn}
    return out


def same_source(workdir: Path, module: str, option: str) -> None:
    """Stop unless ``workdir/<module>`` holds a run of the module's current source (else its mutants are stale)."""
    original = workdir / module / "src" / "medssl" / f"{module}.py"
    current = REPO / "starter" / "src" / "medssl" / f"{module}.py"
    if not original.exists():
        raise SystemExit(f"{option}: no earlier run of {module} in {workdir / module}; run without {option} first")
    if original.read_bytes() != current.read_bytes():
        raise SystemExit(f"{option}: {current.relative_to(REPO)} changed since the run in {workdir / module}; "
                         f"its mutants are stale, so run without {option}")


def recheck(workdir: Path, module: str, python: str, workers: int, equivalents: list[dict], diff_of) -> dict:
    """Re-run the survivors of an earlier run in ``workdir/<module>`` against the repository's current tests.

    mutmut keeps its verdicts and does not re-test survivors when tests are added, and adding test files to the
    selection makes it throw every verdict away. Killed mutants stay killed when tests are only added, so only the
    survivors (and the mutants no test reached) need a new run: each is run here the way mutmut runs it (the
    mutated copy first on the path, ``MUTANT_UNDER_TEST`` naming the mutant) against ``UNIT_TESTS[module]``. The
    module's own source must be unchanged since that run, or the mutants are not the module's any more.
    """
    root = workdir / module
    same_source(workdir, module, "--recheck")
    tests_dir = root / "mutants" / "tests"
    shutil.copytree(REPO / "tests", tests_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "MPLBACKEND": "Agg", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": "src"}
    # test files new or changed since that run go first: with -x a mutant they kill stops there
    before = root / "tests"
    files = sorted(UNIT_TESTS[module], key=lambda t: (before / t).exists()
                   and (before / t).read_bytes() == (REPO / "tests" / t).read_bytes())
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:nbval", "-m",
           "not slow and not cuda", *[f"tests/{t}" for t in files]]
    # the harness itself: the mutated copy is the one imported, and the tests pass with no mutant active
    where = subprocess.run([python, "-c", f"import medssl.{module} as m; print(m.__file__)"], cwd=root / "mutants",
                           env=env, capture_output=True, text=True)
    if not where.stdout.strip().startswith(str((root / "mutants").resolve())):
        raise SystemExit(f"--recheck: medssl.{module} imports from {where.stdout.strip() or where.stderr}, "
                         "not from the mutated copy")
    clean = subprocess.run(cmd, cwd=root / "mutants", env={**env, "MUTANT_UNDER_TEST": ""},
                           capture_output=True, text=True)
    if clean.returncode != 0:
        raise SystemExit(f"--recheck: {module}'s tests fail with no mutant active:\n{clean.stdout[-3000:]}")
    codes = read_results(workdir, [module])[module]
    todo = [n for n, c in sorted(codes.items())
            if (c in SURVIVED or c in NO_TESTS) and not equivalent_reason(n, diff_of(n), equivalents)]
    print(f"{module}: re-running {len(todo)} survivor(s) against {', '.join(UNIT_TESTS[module])}", flush=True)

    def one(name: str) -> tuple[str, int]:
        try:
            r = subprocess.run(cmd, cwd=root / "mutants", env={**env, "MUTANT_UNDER_TEST": name},
                               capture_output=True, text=True, timeout=RECHECK_TIMEOUT_S)
            return name, r.returncode
        except subprocess.TimeoutExpired:
            return name, TIMEOUT_CODE

    path = root / RECHECK
    done = json.loads(path.read_text()) if path.exists() else {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (name, code) in enumerate(pool.map(one, todo), 1):
            done[name] = code
            path.write_text(json.dumps(done, indent=1) + "\n")  # a stopped recheck keeps what it found
            print(f"  [{i}/{len(todo)}] {name}: {'killed' if code in KILLED or code in TIMEOUT else 'survived'}"
                  f" (exit {code})", flush=True)
    return done


def generate_mutants(root: Path, module: str, python: str, env: dict) -> list[str]:
    """Let mutmut write the module's mutants and its test coverage in ``root`` without testing any; their names.

    mutmut 3.8 has no generate-only command. ``mutmut run`` with a filter that matches no mutant generates the
    mutants, records which tests reach each function (``mutmut-stats.json``, reused by the next run), and then
    stops with "nothing matches"; that stop is expected here and checked for.
    """
    r = subprocess.run([python, "-m", "mutmut", "run", NO_MUTANT], cwd=root, env=env, capture_output=True, text=True)
    meta = root / "mutants" / "src" / "medssl" / f"{module}.py.meta"
    if "nothing matches" not in r.stdout + r.stderr or not meta.exists():
        raise SystemExit(f"mutmut did not generate the mutants of {module} (exit {r.returncode}):\n"
                         f"{(r.stdout + r.stderr)[-3000:]}")
    return sorted(json.loads(meta.read_text())["exit_code_by_key"])


def draw_sample(names: list[str], n: int, seed: int) -> list[str]:
    """``n`` of ``names`` drawn uniformly without replacement, the same for the same names, ``n`` and seed."""
    import random

    if n >= len(names):
        return sorted(names)
    return sorted(random.Random(seed).sample(sorted(names), n))


def wilson_interval(killed: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``killed / n`` (the kill ratio of a sample)."""
    if n == 0:
        return float("nan"), float("nan")
    p = killed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return max(0.0, centre - half), min(1.0, centre + half)


def show(workdir: Path, name: str, python: str) -> str:
    module = name.split(".")[1]  # medssl.<module>.x_<function>__mutmut_<n>
    r = subprocess.run([python, "-m", "mutmut", "show", name], cwd=workdir / module, capture_output=True, text=True)
    return (r.stdout or r.stderr).strip()


def score(results: dict[str, dict[str, int | None]], diff_of, equivalents: list[dict]) -> list[dict]:
    """Kill ratio per module; ``diff_of(name)`` gives a survivor's diff, to match it with ``equivalents``."""
    rows = []
    for m, codes in results.items():
        c = Counter()
        survivors, equivalent = [], []
        for name, code in sorted(codes.items()):
            if code in KILLED:
                c["killed"] += 1
            elif code in SURVIVED or code in NO_TESTS:
                if equivalent_reason(name, diff_of(name), equivalents):
                    equivalent.append(name)
                else:
                    c["survived" if code in SURVIVED else "no tests"] += 1
                    survivors.append(name)
            elif code in TIMEOUT:
                c["killed"] += 1  # the test run did not pass in time: counted as caught, and reported
                c["timeout"] += 1
            elif code is None:
                c["not checked"] += 1  # mutmut stopped before testing it: not counted, reported
            else:
                c["other"] += 1
                survivors.append(name)
        counted = c["killed"] + c["survived"] + c["no tests"] + c["other"]
        rows.append({"module": m, "mutants": len(codes), "killed": c["killed"], "timeout": c["timeout"],
                     "survived": c["survived"], "no_tests": c["no tests"], "equivalent": len(equivalent),
                     "not_checked": c["not checked"],
                     "kill_ratio": c["killed"] / counted if counted else float("nan"),
                     "survivors": survivors, "equivalents": equivalent})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", nargs="+", default=list(MODULES), choices=list(MODULES))
    p.add_argument("--rev", default=None, help="test this commit's files (default: the working tree)")
    p.add_argument("--max-children", type=int, default=2, help="mutants tested in parallel (default 2)")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, removed afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (to look at mutants with mutmut)")
    p.add_argument("--reuse", action="store_true", help="only re-read and re-score the results in --workdir")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run in --workdir: mutmut tests only the mutants it has no verdict for")
    p.add_argument("--recheck", action="store_true",
                   help="re-run only the survivors of the run in --workdir against the current tests")
    p.add_argument("--out", default=None, help="also write the scores and survivors to this JSON file")
    p.add_argument("--no-diffs", action="store_true", help="list survivors by name only")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="test a random sample of N mutants per module (the score is then an estimate)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample's draw (default 0)")
    args = p.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        p.error(f"--sample must be a positive number of mutants, got {args.sample}")
    python = sys.executable
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("mutmut is not installed: pip install 'mutmut>=3.8'", file=sys.stderr)
        return 2
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="medssl-mutation-")) / "work"
    t0 = time.perf_counter()
    if args.recheck and not args.workdir:
        p.error("--recheck needs the --workdir of an earlier run")
    equivalents = load_equivalents()
    diffs: dict[str, str] = {}

    def diff_of(name: str) -> str:
        if name not in diffs:
            diffs[name] = show(workdir, name, python)
        return diffs[name]

    if args.recheck:
        for m in args.modules:
            recheck(workdir, m, python, args.max_children, equivalents, diff_of)
    elif not args.reuse:
        # one thread: mutmut forks a test process per mutant, and torch's OpenMP pool does not survive a fork
        # (a child can hang in its first parallel op, which would count as a timeout)
        env = {**os.environ, "MPLBACKEND": "Agg", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for m in args.modules:
            resumed = args.resume and (workdir / m / "mutants").exists()
            if resumed:
                same_source(workdir, m, "--resume")
            else:
                prepare(workdir / m, m, args.rev)
            chosen: list[str] = []
            if args.sample is not None:
                sample_file = workdir / m / SAMPLE
                if resumed and sample_file.exists():
                    chosen = json.loads(sample_file.read_text())["mutants"]
                else:
                    names = generate_mutants(workdir / m, m, python, env)
                    chosen = draw_sample(names, args.sample, args.seed)
                    sample_file.write_text(json.dumps({"population": len(names), "seed": args.seed,
                                                       "mutants": chosen}, indent=1) + "\n")
                print(f"{m}: testing a random sample of {len(chosen)} mutants (seed {args.seed})", flush=True)
            print(f"mutmut run for {m} in {workdir / m} (tests: {', '.join(UNIT_TESTS[m])})", flush=True)
            t_m = time.perf_counter()
            r = subprocess.run([python, "-m", "mutmut", "run", "--max-children", str(args.max_children), *chosen],
                               cwd=workdir / m, env=env)
            if r.returncode != 0:
                print(f"mutmut run for {m} failed (exit code {r.returncode}): see its output above", file=sys.stderr)
                return 1
            print(f"{m}: {time.perf_counter() - t_m:.0f}s", flush=True)
    wall = time.perf_counter() - t0
    rows = score(read_results(workdir, args.modules), diff_of, equivalents)
    for r in rows:
        sample_file = workdir / r["module"] / SAMPLE
        if sample_file.exists():
            drawn = json.loads(sample_file.read_text())
            counted = r["killed"] + r["survived"] + r["no_tests"]
            r["sample"] = {"population": drawn["population"], "seed": drawn["seed"],
                           "kill_ratio_ci95": wilson_interval(r["killed"], counted)}
    print(f"\n{'module':<12} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'equiv.':>6} {'kill %':>7}")
    for r in rows:
        print(f"{r['module']:<12} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>8} {r['no_tests']:>8} "
              f"{r['equivalent']:>6} {100 * r['kill_ratio']:>6.1f}%")
    killed = sum(r["killed"] for r in rows)
    counted = sum(r["killed"] + r["survived"] + r["no_tests"] for r in rows)
    total = killed / counted if counted else float("nan")
    print(f"{'all':<12} {sum(r['mutants'] for r in rows):>7} {killed:>6} {sum(r['survived'] for r in rows):>8} "
          f"{sum(r['no_tests'] for r in rows):>8} {sum(r['equivalent'] for r in rows):>6} {100 * total:>6.1f}%")
    print(f"wall time {wall:.0f}s")
    for r in rows:
        if "sample" in r:
            lo, hi = r["sample"]["kill_ratio_ci95"]
            print(f"{r['module']}: a random sample of {r['mutants']} of its {r['sample']['population']} mutants "
                  f"(seed {r['sample']['seed']}); the kill ratio of all of them is in [{100 * lo:.1f} %, "
                  f"{100 * hi:.1f} %] with 95 % confidence (Wilson)")
    unchecked = sum(r["not_checked"] for r in rows)
    if unchecked:
        print(f"{unchecked} mutant(s) were never tested (mutmut stopped early?): the score above leaves them out")
    survivors = [s for r in rows for s in r["survivors"]]
    if survivors:
        print(f"\n{len(survivors)} survivor(s): each needs a test that kills it, or an entry in {EQUIVALENTS.name}")
        for name in survivors:
            print(f"\n--- {name}" if args.no_diffs else f"\n{diff_of(name)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"modules": rows, "kill_ratio": total, "wall_time_s": wall,
                                              "equivalents": equivalents}, indent=1) + "\n")
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
