"""Where a batch of runs executes: here, one after another, or as jobs through submitit.

``python -m medssl.course batch`` and ``python -m medssl.efficiency`` share these options::

    --executor inline|local|slurm    inline: in this process, as before (the default)
                                     local:  each job a subprocess of this machine (submitit's LocalExecutor)
                                     slurm:  each job a Slurm job (submitit's SlurmExecutor writes the sbatch script)
    --cluster-config cluster.toml    defaults for everything below; options on the command line win
    --partition gpu --account my-course --gpus 1 --cpus 4 --mem-gb 16 --time 120
    --parallelism 8                  at most 8 jobs at once (Slurm: the array's %8; local: 8 subprocesses)
    --slurm-setup "module load cuda/12.1" --slurm-setup "source ~/venvs/medssl/bin/activate"

A cluster TOML holds the same settings (top-level keys, names as in :class:`ClusterSettings`)::

    executor = "slurm"
    partition = "gpu"
    gpus = 1
    cpus = 4
    mem_gb = 16
    time = "2:00:00"       # per job: minutes, or H:MM:SS
    parallelism = 8
    setup = ["module load cuda/12.1", "source ~/venvs/medssl/bin/activate"]

submitit (https://github.com/facebookincubator/submitit) is optional: it is imported only when a job is
submitted, and asking for ``local`` or ``slurm`` without it says to ``pip install submitit``.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..errors import ConfigError

EXECUTORS = ("inline", "local", "slurm")
DEFAULT_TIME_MIN = 240          # per job; submitit's own default (5 min on Slurm, 2 min locally) kills real runs
DEFAULT_LOCAL_PARALLELISM = 2


@dataclass
class ClusterSettings:
    """Where and with what each job runs. ``None``: the executor's default."""

    executor: str = "inline"
    partition: str | None = None
    account: str | None = None
    gpus: int | None = None          # per job (local default: the GPUs this machine has, shared by its jobs)
    cpus: int | None = None          # per job; also the job's torch / OpenMP threads
    mem_gb: float | None = None      # per job
    time: int = DEFAULT_TIME_MIN     # minutes per job
    parallelism: int | None = None   # jobs at once (Slurm: per array; local: default 2)
    setup: list[str] = field(default_factory=list)   # shell lines the sbatch script runs first (Slurm only)

    def validate(self) -> ClusterSettings:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}.")
        for name in ("gpus", "cpus", "parallelism"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                      or (value == 0 and name != "gpus")):
                raise ConfigError(f"{name} must be a whole number >= {0 if name == 'gpus' else 1}, got {value!r}.")
        if self.mem_gb is not None and (isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float))
                                        or self.mem_gb <= 0):
            raise ConfigError(f"mem_gb must be a positive number of GB, got {self.mem_gb!r}.")
        self.time = parse_minutes(self.time)
        for name in ("partition", "account"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[\w.,-]+", value)):
                raise ConfigError(f"{name} must be a Slurm name (letters, digits, _ . , -), got {value!r}.")
        if isinstance(self.setup, str):
            self.setup = [self.setup]
        if not isinstance(self.setup, list) or not all(isinstance(s, str) for s in self.setup):
            raise ConfigError(f"setup must be a list of shell lines, got {self.setup!r}.")
        return self

    @property
    def jobs_at_once(self) -> int:
        return self.parallelism or (DEFAULT_LOCAL_PARALLELISM if self.executor == "local" else 256)


SETTING_NAMES = tuple(f.name for f in fields(ClusterSettings))


def parse_minutes(value) -> int:
    """A time limit in minutes: ``90``, ``"90"``, ``"1:30:00"`` (H:MM:SS) or ``"2-00:00:00"`` (D-HH:MM:SS).

    (Not ``"2:00"``: Slurm reads that as 2 minutes.)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d\d):(\d\d)", text)
    if text.isdigit() and int(text) > 0:
        return int(text)
    if m:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        total = days * 1440 + hours * 60 + minutes + (1 if seconds else 0)
        if total > 0:
            return total
    raise ConfigError(f"time must be minutes (e.g. 90) or H:MM:SS (e.g. 1:30:00), got {value!r}.")


def load_cluster_config(path: str | os.PathLike) -> dict:
    """The settings in a cluster TOML file, checked against :class:`ClusterSettings`'s names."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cluster config {path} not found.")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError("reading a cluster TOML on Python 3.10 needs tomli: pip install tomli "
                              "(or give the settings as command-line options).") from None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}).") from None
    unknown = [k for k in data if k not in SETTING_NAMES]
    if unknown:
        hints = [f"{k} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(k, SETTING_NAMES, 1))
                 else k for k in unknown]
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(hints)}. Known: {', '.join(SETTING_NAMES)}.")
    try:
        replace(ClusterSettings(), **data).validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """The ``--executor`` option and the cluster settings, on ``p`` (course batch, efficiency)."""
    g = p.add_argument_group("where the jobs run (submitit)")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="inline: here, one after another (default); local: subprocesses of this machine; "
                        "slurm: Slurm jobs")
    g.add_argument("--cluster-config", default=None, metavar="TOML",
                   help="defaults for the settings below (command-line options win)")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--account", default=None, help="Slurm account")
    g.add_argument("--gpus", type=int, default=None, help="GPUs per job")
    g.add_argument("--cpus", type=int, default=None, help="CPUs per job (also the job's torch threads)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per job in GB")
    g.add_argument("--time", default=None, help=f"time limit per job: minutes or H:MM:SS (default {DEFAULT_TIME_MIN})")
    g.add_argument("--parallelism", type=int, default=None,
                   help=f"jobs at once (Slurm: array parallelism; local: subprocesses, default "
                        f"{DEFAULT_LOCAL_PARALLELISM})")
    g.add_argument("--slurm-setup", action="append", default=None, metavar="LINE",
                   help="a shell line the sbatch script runs first, e.g. 'module load cuda' (repeatable)")


def settings_from_args(args: argparse.Namespace) -> ClusterSettings:
    """The TOML's settings (``--cluster-config``), then the command line's on top."""
    data = load_cluster_config(args.cluster_config) if args.cluster_config else {}
    cli = {"executor": args.executor, "partition": args.partition, "account": args.account, "gpus": args.gpus,
           "cpus": args.cpus, "mem_gb": args.mem_gb, "time": args.time, "parallelism": args.parallelism,
           "setup": args.slurm_setup}
    data.update({k: v for k, v in cli.items() if v is not None})
    return replace(ClusterSettings(), **data).validate()


def require_submitit():
    """submitit, or an error that says how to install it."""
    try:
        import submitit
    except ModuleNotFoundError:
        raise ConfigError("--executor local and --executor slurm run the jobs through submitit, which is not "
                          "installed: pip install submitit (or pip install -e \"starter[cluster]\").") from None
    return submitit


def check_executor(settings: ClusterSettings) -> None:
    """Fail before anything is written when the executor cannot run here."""
    if settings.executor == "inline":
        return
    require_submitit()
    import shutil

    if settings.executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ConfigError("--executor slurm needs Slurm's commands (sbatch, srun) on this machine: run from the "
                          "cluster's login node, or use --executor local.")


def slurm_mem(gb: float) -> str:
    return f"{int(gb)}GB" if float(gb).is_integer() else f"{int(gb * 1024)}MB"


def make_executor(settings: ClusterSettings, folder: str | os.PathLike, name: str = "medssl"):
    """A submitit executor for ``settings.executor`` (local or slurm) that keeps its files in ``folder``."""
    submitit = require_submitit()
    if settings.executor == "local":
        ex = submitit.LocalExecutor(folder=str(folder))
        gpus = settings.gpus
        if gpus is None:  # submitit hides every GPU from a local job that asks for none
            import torch

            gpus = torch.cuda.device_count()
        ex.update_parameters(timeout_min=settings.time, gpus_per_node=gpus)
        return ex
    if settings.executor != "slurm":
        raise ConfigError(f"no submitit executor for --executor {settings.executor}.")
    check_executor(settings)
    ex = submitit.SlurmExecutor(folder=str(folder))
    params = {"job_name": name, "time": settings.time, "partition": settings.partition,
              "account": settings.account, "gpus_per_node": settings.gpus or None,
              "cpus_per_task": settings.cpus, "mem": slurm_mem(settings.mem_gb) if settings.mem_gb else None,
              "setup": list(settings.setup) or None, "array_parallelism": settings.jobs_at_once}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def use_threads(cpus: int | None) -> None:
    """Inside a job: use ``cpus`` threads (torch here, OpenMP/MKL in the processes it starts, e.g. a kernel)."""
    if not cpus:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(cpus)
    import torch

    torch.set_num_threads(cpus)
