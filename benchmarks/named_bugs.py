"""Do the tests catch the 16 named bugs of the audit (issue 14)? Each one is put back and the tests are run.

The audit broke the library on purpose, one small change at a time, and 16 of its changes went unnoticed by the
tests of the time. Each change is written down here as an exact source edit (old text -> new text in one file of
``starter/src/medssl``), written the way the bug would naturally be written, with the test files that should catch it
(the module's own unit tests, plus the selection-invariance test where the bug is a choice made on the test split).

For each change the script copies the repository's tracked files (``git ls-files``, as they are in the working tree,
plus untracked, not ignored files under ``tests/`` and the library) to a temporary folder, applies that ONE edit
there (the repository itself is never edited), checks that the old text occurred exactly once (otherwise the change
is reported as *stale: the code moved* and the run fails), checks that the scratch copy's module is the one Python
imports, and runs::

    python -m pytest -x -q -rfE -p no:cacheprovider -p no:nbval -o addopts= -m "not slow and not cuda" <tests>

with ``PYTHONPATH=<scratch>/starter/src`` in the scratch folder (``-o addopts=`` drops the repository's nbval options,
which ``-p no:nbval`` would otherwise turn into errors). The first ``FAILED`` (or ``ERROR``) line pytest prints names
the test that caught the change. The same tests are first run once on the unchanged copy, and must pass.

It prints a table (change, file, first failing test or NOT CAUGHT) and exits 1 if the unchanged copy fails, or if
any change is not caught, is stale, or breaks the import. ``--only N`` runs change N alone (repeatable), ``--out``
also writes the results as JSON. Not run in CI: on a loaded 2-core machine the whole run takes tens of minutes.

    python benchmarks/named_bugs.py                          # all 16, plus the unchanged run
    python benchmarks/named_bugs.py --only 9 --only 10       # two of them
    python benchmarks/named_bugs.py --out named_bugs.json    # also as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIB = "starter/src/medssl"
SEL = "tests/test_selection_invariance.py::"
PYTEST = ["-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "no:nbval", "-o", "addopts=",
          "-m", "not slow and not cuda"]
TIMEOUT_S = 3600
MOCO_LOSS = ("            loss = 0.5 * (info_nce_loss(q1, k2, queue, self.tau) + "
             "info_nce_loss(q2, k1, queue, self.tau))\n")


@dataclass(frozen=True)
class Change:
    n: int
    group: str
    name: str
    file: str          # relative to the library folder
    old: str
    new: str
    why: str           # the bug in one line
    tests: tuple[str, ...]


CHANGES = (
    # ---------------------------------------------------------- model selection on test instead of validation
    Change(1, "selection", "probe C chosen on test", "probe.py",
           'features["train"][idx], train.labels[idx], features["val"],\n'
           '                                      splits["val"].labels, spec, c_grid, seed, max_iter)',
           'features["train"][idx], train.labels[idx], features["test"],\n'
           '                                      splits["test"].labels, spec, c_grid, seed, max_iter)',
           "linear_probe hands the test features and labels to fit_logistic_probe, which picks C on them",
           ("tests/test_probe.py", SEL + "test_probe_c_and_finetune_epoch_ignore_the_test_split")),
    Change(2, "selection", "fine-tune best epoch chosen on test", "probe.py",
           'fit(model, train.subset(idx), splits["val"], spec, tcfg, device,',
           'fit(model, train.subset(idx), splits["test"], spec, tcfg, device,',
           "finetune validates every epoch on the test split, so the kept epoch is the best one on test",
           ("tests/test_probe.py", SEL + "test_probe_c_and_finetune_epoch_ignore_the_test_split")),
    Change(3, "selection", "train.run best epoch chosen on test", "train.py",
           'fit(model, train, splits["val"], spec, cfg, device, log_path, save_best,',
           'fit(model, train, splits["test"], spec, cfg, device, log_path, save_best,',
           "train.run validates (best.pt, early stopping) on the test split",
           ("tests/test_train_cli.py",
            SEL + "test_train_run_best_and_early_stopping_epochs_ignore_the_test_split")),
    Change(4, "selection", "report temperature fitted on test", "calibration.py",
           "ts = TemperatureScaler().fit(val_logits, val_labels)\n    p_before",
           "ts = TemperatureScaler().fit(test_logits, test_labels)\n    p_before",
           "temperature_scaling_report fits T on the test logits it then judges",
           ("tests/test_temperature_report.py", "tests/test_calibration.py",
            SEL + "test_temperature_and_operating_points_ignore_the_test_split")),
    Change(5, "selection", "operating-point thresholds chosen on test", "decisions.py",
           "choose_thresholds(val_scores, val_y, positive_class=positive_class,",
           "choose_thresholds(test_scores, test_y, positive_class=positive_class,",
           "operating_points chooses its thresholds on the test scores it then measures them on",
           ("tests/test_decisions.py", "tests/test_decisions_contracts.py",
            SEL + "test_temperature_and_operating_points_ignore_the_test_split")),
    Change(6, "selection", "robustness temperature fitted on test", "robustness.py",
           "ts = TemperatureScaler().fit(val_logits, val.labels)",
           "ts = TemperatureScaler().fit(clean_logits, labels)",
           "evaluate_shifts fits the temperature on the clean test logits instead of the clean validation ones",
           ("tests/test_robustness.py",
            SEL + "test_robustness_temperature_and_youden_threshold_ignore_the_test_split")),
    Change(7, "selection", "robustness Youden threshold chosen on test", "robustness.py",
           "vs, vy = binary_scores(softmax(val_logits), val.labels, spec)",
           "vs, vy = binary_scores(softmax(clean_logits), labels, spec)",
           "evaluate_shifts picks the Youden threshold on the clean test scores",
           ("tests/test_robustness.py",
            SEL + "test_robustness_temperature_and_youden_threshold_ignore_the_test_split")),
    # ---------------------------------------------------------- MoCo
    Change(8, "moco", "positive key from the same view", "ssl.py",
           "info_nce_loss(q1, k2, queue, self.tau) + info_nce_loss(q2, k1, queue, self.tau)",
           "info_nce_loss(q1, k1, queue, self.tau) + info_nce_loss(q2, k2, queue, self.tau)",
           "each query is paired with the key of its own view, not the other view's",
           ("tests/test_moco_reference.py", "tests/test_ssl_contracts.py", "tests/test_ssl.py")),
    Change(9, "moco", "keys from the query encoder", "ssl.py",
           "return F.normalize(self.key_head(self.key_encoder(x)).float(), dim=1)",
           "return F.normalize(self.head(self.encoder(x)).float(), dim=1)",
           "_keys runs the query encoder and head (under no_grad); the momentum encoder is never used",
           ("tests/test_moco_reference.py", "tests/test_ssl_contracts.py", "tests/test_ssl.py")),
    Change(10, "moco", "enqueue before the loss", "ssl.py",
           "            k2, k1 = k.chunk(2, dim=0)\n"
           + MOCO_LOSS +
           "            if update:\n"
           "                self.enqueue(torch.cat([k1, k2], dim=0))\n",
           "            k2, k1 = k.chunk(2, dim=0)\n"
           "            if update:\n"
           "                self.enqueue(torch.cat([k1, k2], dim=0))\n"
           "                queue = self.queue.clone()\n"
           + MOCO_LOSS,
           "the batch's keys go into the queue first, so each positive key is also among the negatives",
           ("tests/test_moco_reference.py", "tests/test_ssl_contracts.py", "tests/test_ssl.py")),
    Change(11, "moco", "queue not used as negatives", "ssl.py",
           "l_neg = q @ queue.detach().t()                          # (B, K)",
           "l_neg = q @ k.detach().t()                              # (B, K)",
           "info_nce_loss takes its negatives from the batch's keys; the queue is ignored",
           ("tests/test_moco_reference.py", "tests/test_ssl_contracts.py", "tests/test_ssl.py")),
    # ---------------------------------------------------------- other
    Change(12, "other", "PPV and NPV swapped", "metrics.py",
           '"ppv": tp / (tp + fp) if tp + fp else float("nan"),\n'
           '            "npv": tn / (tn + fn) if tn + fn else float("nan"),',
           '"ppv": tn / (tn + fn) if tn + fn else float("nan"),\n'
           '            "npv": tp / (tp + fp) if tp + fp else float("nan"),',
           "classification_metrics reports the negative predictive value as PPV and vice versa",
           ("tests/test_known_answers.py", "tests/test_metrics_contracts.py", "tests/test_metrics.py")),
    Change(13, "other", "TTA averages log-probabilities", "recipes.py",
           "return probs if return_all else probs.mean(axis=0)",
           "return probs if return_all else torch.softmax(torch.from_numpy(np.log(probs)).mean(0), dim=1).numpy()",
           "predict_tta averages the views' log-probabilities (a renormalised geometric mean), not the probabilities",
           ("tests/test_recipes.py", "tests/test_known_answers.py")),
    Change(14, "other", "Youden tie rule reversed", "decisions.py",
           'return float(scan["threshold"][np.argmax(scan["tpr"] - scan["fpr"])])',
           'j = scan["tpr"] - scan["fpr"]\n    return float(scan["threshold"][np.flatnonzero(j == j.max())[-1]])',
           "youden_threshold takes the most lenient of the tied thresholds instead of the strictest",
           ("tests/test_ties.py", "tests/test_decisions.py")),
    Change(15, "other", "ECE bins closed on the other side", "calibration.py",
           'idx = np.searchsorted(edges[1:-1], conf, side="left")',
           'idx = np.searchsorted(edges[1:-1], conf, side="right")',
           "reliability_bins uses [lo, hi) bins, so a confidence on an edge goes to the bin above",
           ("tests/test_ties.py", "tests/test_calibration.py", "tests/test_known_answers.py",
            "tests/test_calibration_contracts.py")),
    Change(16, "other", "blur sigma not scaled with image size", "robustness.py",
           "sigma = s * x.shape[-1] / 28.0",
           "sigma = s",
           "gaussian_blur uses the 28-px sigma at every size, so a 64-px image is blurred half as much",
           ("tests/test_robustness.py", "tests/test_known_answers.py")),
)


# ------------------------------------------------------------------ scratch copies
def repo_files() -> list[str]:
    """The tracked files, plus untracked (not ignored) files under tests/ and the library: new tests count."""
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=REPO, capture_output=True, text=True, check=True)
        return [r for r in out.stdout.split("\0") if r]
    return sorted(set(ls()) | set(ls("--others", "--exclude-standard", "tests", LIB)))


def copy_repo(dst: Path, files: list[str]) -> None:
    for rel in files:
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def apply(change: Change, scratch: Path) -> int:
    """Apply ``change`` in ``scratch``; returns how often the old text occurred (the edit is made only if once)."""
    path = scratch / LIB / change.file
    text = path.read_text()
    count = text.count(change.old)
    if count == 1:
        path.write_text(text.replace(change.old, change.new))
    return count


def env_for(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(scratch / "starter" / "src")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def imported_from(scratch: Path, module: str) -> str:
    """Where ``medssl.<module>`` is imported from in the scratch folder ('' with the error if it does not import)."""
    code = f"import importlib; print(importlib.import_module('medssl.{module}').__file__)"
    r = subprocess.run([sys.executable, "-c", code], cwd=scratch, env=env_for(scratch), capture_output=True,
                       text=True)
    return r.stdout.strip() if r.returncode == 0 else "ERROR: " + (r.stderr.strip().splitlines() or ["?"])[-1]


FAILED = re.compile(r"^(FAILED|ERROR) (tests/\S+?)(?: - .*)?$")


def run_tests(scratch: Path, tests: tuple[str, ...], retry: bool = True) -> dict:
    """One pytest run; a run killed by a signal from outside (rc < 0, e.g. SIGTERM) is run once more."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, *PYTEST, *tests], cwd=scratch, env=env_for(scratch), capture_output=True,
                           text=True, timeout=TIMEOUT_S)
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = None, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    if rc is not None and rc < 0 and retry:
        print(f"  pytest was killed by signal {-rc} after {time.perf_counter() - t0:.0f} s; running it again",
              flush=True)
        return run_tests(scratch, tests, retry=False)
    first = next((f"{m[1]} {m[2]}" if m[1] == "ERROR" else m[2]
                  for m in map(FAILED.match, out.splitlines()) if m), None)
    summary = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "")
    return {"rc": rc, "first_failure": first, "summary": summary, "seconds": round(time.perf_counter() - t0, 1),
            "tail": out[-3000:]}


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=int, action="append", metavar="N", help="run change N only (repeatable)")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    p.add_argument("--skip-baseline", action="store_true", help="do not run the tests on the unchanged copy first")
    p.add_argument("--list", action="store_true", help="print the changes and their tests, run nothing")
    a = p.parse_args(argv)
    known = {c.n for c in CHANGES}
    if a.only and not set(a.only) <= known:
        p.error(f"--only takes 1..{len(CHANGES)}, got {sorted(set(a.only) - known)}")
    todo = [c for c in CHANGES if not a.only or c.n in a.only]
    if a.list:
        for c in todo:
            print(f"{c.n:2d}. [{c.file}] {c.name}: {c.why}\n    tests: {' '.join(c.tests)}")
        return 0

    files = repo_files()
    t_start = time.perf_counter()
    record: dict = {"python": sys.version.split()[0], "commit": git_commit(), "baseline": None, "changes": []}
    with tempfile.TemporaryDirectory(prefix="named_bugs_") as tmp:
        pristine = Path(tmp) / "pristine"
        copy_repo(pristine, files)
        where = imported_from(pristine, "metrics")
        if not where.startswith(str(pristine / LIB)):
            print(f"the scratch copy's medssl is not the one imported ({where}); is medssl installed non-editable "
                  "over PYTHONPATH?", file=sys.stderr)
            return 1
        ok = True
        if not a.skip_baseline:
            tests = tuple(dict.fromkeys(t for c in todo for t in c.tests))
            print(f"unchanged copy: {len(tests)} test targets ...", flush=True)
            base = run_tests(pristine, tests)
            record["baseline"] = {"tests": list(tests), **base}
            print(f"  rc={base['rc']} ({base['seconds']:.0f} s): {base['summary']}", flush=True)
            if base["rc"] != 0:
                print(base["tail"], file=sys.stderr)
                print("the tests fail on the unchanged code: fix that first.", file=sys.stderr)
                ok = False
        for c in todo:
            scratch = Path(tmp) / f"change{c.n:02d}"
            shutil.copytree(pristine, scratch)
            row = {**asdict(c), "tests": list(c.tests)}
            count = apply(c, scratch)
            module = c.file.removesuffix(".py")
            if count != 1:
                row.update(status="STALE", result=f"STALE: the code moved (old text found {count} times)")
                print(f"\n!!! change {c.n} ({c.name}): old text found {count} times in {c.file}: STALE, the code "
                      "moved; update the edit in CHANGES.\n", file=sys.stderr, flush=True)
            elif not (where := imported_from(scratch, module)).startswith(str(scratch / LIB)):
                row.update(status="BROKEN", result=f"not imported from the scratch copy: {where}")
            else:
                res = run_tests(scratch, c.tests)
                row.update(res)
                if res["rc"] == 1 and res["first_failure"]:
                    row.update(status="caught", result=res["first_failure"])
                elif res["rc"] == 0:
                    row.update(status="NOT CAUGHT", result="NOT CAUGHT")
                else:
                    row.update(status="NOT CAUGHT",
                               result=f"NOT CAUGHT (pytest rc={res['rc']}: {res['summary'][:80]})")
            print(f"{c.n:2d}. {c.name} [{c.file}]: {row['result']} ({row.get('seconds', 0):.0f} s)", flush=True)
            shutil.rmtree(scratch)
            record["changes"].append(row)
    record["wall_s"] = round(time.perf_counter() - t_start, 1)

    print("\n| # | change | file | first failing test |\n|---:|---|---|---|")
    for r in record["changes"]:
        print(f"| {r['n']} | {r['name']} | `{r['file']}` | {fmt(r)} |")
    bad = [r["n"] for r in record["changes"] if r["status"] != "caught"]
    print(f"\n{len(record['changes']) - len(bad)} / {len(record['changes'])} caught; wall time {record['wall_s']:.0f} s"
          + (f"; NOT caught or stale: {bad}" if bad else ""))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0 if ok and not bad else 1


def fmt(row: dict) -> str:
    return f"`{row['result']}`" if row["status"] == "caught" else f"**{row['result']}**"


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    return r.stdout.strip() + (" (with local changes)" if dirty else "")


if __name__ == "__main__":
    sys.exit(main())
