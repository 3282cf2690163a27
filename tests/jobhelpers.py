"""Helpers for the tests of jobs run through submitit (a plain module, like ``datahelpers``).

* :class:`FakeExecutor`: stands in for a submitit executor inside this process, to test the bookkeeping
  (prerequisites, parallelism) without starting processes;
* :func:`fake_slurm`: ``sbatch`` and ``srun`` stand-ins on ``PATH``, so that submitit's own ``SlurmExecutor``
  writes and "submits" its sbatch scripts; each script is kept for the test to read;
* :func:`run_as_slurm_task`: runs a submitted job the way a Slurm node would (submitit's ``process_job`` with
  the Slurm environment variables), in this process.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

SBATCH = """#!/bin/sh
# stands in for Slurm's sbatch: keeps a copy of the script and answers as sbatch does
n=$(( $(cat "{dir}/last_id" 2>/dev/null || echo 1000) + 1 ))
echo "$n" > "{dir}/last_id"
cp "$1" "{dir}/sbatch_$n.sh"
echo "Submitted batch job $n"
"""


class FakeJob:
    """Runs its function the first time someone asks whether it is done."""

    def __init__(self, executor: FakeExecutor, fn, args: tuple, n: int):
        self.executor, self.fn, self.args, self.job_id = executor, fn, args, str(n)
        self.paths = SimpleNamespace(stderr=executor.folder / f"{n}_0_log.err")
        self.ran = False

    def done(self) -> bool:
        if not self.ran:
            self.ran = True
            try:
                self.fn(*self.args)
            except Exception as exc:
                self.paths.stderr.write_text(f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}\n")
            self.executor.live.remove(self)
            self.executor.events.append(("finish", Path(self.args[0]).stem))
        return True

    def cancel(self) -> None:
        pass


class FakeExecutor:
    def __init__(self, folder):
        self.folder = Path(folder)
        self.live: list[FakeJob] = []
        self.submitted: list[str] = []    # job keys, in submission order
        self.events: list[tuple[str, str]] = []   # ("submit" | "finish", key), in order
        self.max_live = 0

    def submit(self, fn, *args):
        job = FakeJob(self, fn, args, len(self.submitted) + 1)
        self.submitted.append(Path(args[0]).stem)    # run_tracked(state_file, ...): the key names the file
        self.events.append(("submit", self.submitted[-1]))
        self.live.append(job)
        self.max_live = max(self.max_live, len(self.live))
        return job


def fake_slurm(monkeypatch, tmp_path: Path) -> Path:
    """Put ``sbatch`` and ``srun`` stand-ins first on PATH; returns the folder that collects the scripts."""
    bin_dir, scripts = tmp_path / "fake-slurm-bin", tmp_path / "sbatch-scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    (bin_dir / "sbatch").write_text(SBATCH.format(dir=scripts))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


def sbatch_scripts(folder: Path) -> dict[str, str]:
    """Job id -> the sbatch script submitted under it."""
    return {p.stem.split("_")[1]: p.read_text() for p in sorted(folder.glob("sbatch_*.sh"))}


def run_as_slurm_task(monkeypatch, log_dir: Path, job_id: str) -> None:
    """Run submitted job ``job_id`` (``<array>_<task>`` or a plain id) here, as srun would on a node."""
    from submitit.core import submission

    array, _, task = job_id.partition("_")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("SLURM_JOB_ID", array)
    if task:
        monkeypatch.setenv("SLURM_ARRAY_JOB_ID", array)
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
    monkeypatch.setenv("SUBMITIT_FOLDER", str(log_dir))    # process_job sets it; the monkeypatch takes it back
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    try:
        submission.process_job(log_dir)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
