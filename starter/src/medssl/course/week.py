"""The week context a notebook starts from its parameters cell: :class:`WeekRun`.

::

    wk = WeekRun(week=1, dataset=DATASET_KEY, student=STUDENT, model=MODEL_NAME, epochs=EPOCHS,
                 batch_size=BATCH_SIZE, seed=SEED, label_fracs=LABEL_FRACS, results_root=RESULTS_ROOT,
                 smoke=SMOKE, overwrite=OVERWRITE)

It then trains (``wk.train``, :mod:`~medssl.course.week_jobs`), writes its files (``wk.save_figure``,
``wk.publish_metrics``, ..., :mod:`~medssl.course.week_files`) and ends with ``wk.finish()``, which runs the
submission checker on the folder it filled, and ``wk.hand_in()``, which zips that folder for handing in.
Every file name goes through :mod:`medssl.course.manifest`, so a notebook can only write what its week declares.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, OutputExistsError
from ..utils import get_logger, relative_path
from . import manifest as M
from .check import TO_DO, check_folder, check_group
from .collect import HANDIN_DIR, make_submission_zip
from .config import repo_root
from .environment import SMOKE_EPOCHS, SMOKE_RESULTS_ENV, SMOKE_STEM, drive_folder, in_colab, smoke_from_env
from .tasks import write_reference_stub
from .week_files import WeekFiles
from .week_jobs import WeekJobs

# Per-week defaults used when a parameter is left as None (real runs; smoke mode overrides epochs).
WEEK_DEFAULTS: dict[int, dict] = {
    1: dict(model="smallcnn", epochs=5),
    2: dict(model="smallcnn", epochs=5),
    3: dict(model="resnet18", epochs=10),
    4: dict(model="resnet18", epochs=30, batch_size=128),
    5: dict(model="resnet18", epochs=30),
    6: dict(model="resnet18", epochs=30),
    7: dict(model="resnet18", epochs=30),
    8: dict(model="resnet18", epochs=30),
    9: dict(),
    10: dict(),
}
DEFAULT_LABEL_FRACS = (0.05, 0.1)


class WeekRun(WeekFiles, WeekJobs):
    """Paths and settings of one week's notebook run, its check and its hand-in.

    Writing files comes from :class:`WeekFiles`, training and jobs from :class:`WeekJobs`.
    """

    def __init__(self, week: int, dataset: str | None = None, student: str | None = None,
                 model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                 seed: int = 42, label_fracs: Sequence[float] | None = None,
                 results_root: str | os.PathLike | None = None, smoke: bool | None = None,
                 overwrite: bool | None = None, tasks: str | Sequence[str] | None = "auto",
                 drive: bool | None = False, precision: str | None = None, deterministic: bool = False, **extra):
        from ..registry import get_spec

        self.week = M.check_week(week)
        self.deliverable = M.core(self.week)
        self.group = self.deliverable.location == "group"
        self.smoke = smoke_from_env() if smoke is None else bool(smoke)
        self.student = student or ("smoke" if self.smoke else "your_name")
        self.dataset = dataset
        self.spec = get_spec(dataset) if dataset else None
        defaults = WEEK_DEFAULTS[self.week]
        self.model = model or defaults.get("model")
        self.epochs = SMOKE_EPOCHS if (self.smoke and epochs is None) else (epochs or defaults.get("epochs"))
        self.batch_size = batch_size or defaults.get("batch_size", 64)
        self.seed = int(seed)
        self.label_fracs = [float(f) for f in (label_fracs or DEFAULT_LABEL_FRACS)]
        self.overwrite = self.smoke if overwrite is None else bool(overwrite)
        self.precision = precision or "auto"     # training precision (medssl.accel); evaluation is always fp32
        self.deterministic = bool(deterministic)
        self.extra = dict(extra)
        self.stem = SMOKE_STEM if self.smoke else "auto"
        self.drive = drive_folder(drive)  # Colab: MyDrive/medmnist-ssl (results/ and runs/ survive a reset)
        self.results_root = self._resolve_results_root(results_root)
        self.root = self.results_root.parent
        self.tasks = M.resolve_tasks(self.week, dataset or "", tasks) if (dataset and not self.group) else []
        if self.group:
            self.out = self.root
        else:
            if not dataset:
                raise ConfigError(f"Week {self.week} needs DATASET_KEY (breastmnist or pneumoniamnist).")
            self.out = M.results_dir(self.results_root, self.week, dataset, self.student)
        self.runs = self.root / "runs" / f"week{self.week}" / (dataset or "group") / self.student
        self.written: list[str] = []
        self.started = _dt.datetime.now().isoformat(timespec="seconds")
        self._prepare_out()
        if self.tasks and not self.smoke and self.student != "your_name":
            for t in self.tasks:
                path = write_reference_stub(self.root, t.id, self.student)
                print(f"[{t.id}] reference summary to write: {self.rel(path)}")
        if self.student == "your_name" and not self.smoke:
            get_logger().warning("STUDENT is still 'your_name': set it to your name in the parameters cell.")

    # ------------------------------------------------------------ setup
    def _resolve_results_root(self, results_root) -> Path:
        if results_root:
            p = Path(results_root).expanduser()
            return (p if p.is_absolute() else (self.drive or repo_root()) / p).resolve()
        if self.drive:
            return self.drive / "results"
        if self.smoke:
            env = os.environ.get(SMOKE_RESULTS_ENV)
            return Path(env).resolve() if env else Path(tempfile.gettempdir()) / "medssl-smoke" / "results"
        return repo_root() / "results"

    def _prepare_out(self) -> None:
        if self.group:  # generated group files (a draft students edit!) are replaced only with OVERWRITE
            existing = [f.name for f in self.deliverable.files if f.status != M.BY_HAND and not f.is_pattern
                        and (self.root / f.name).exists()]
            if existing and not self.overwrite:
                raise OutputExistsError(
                    f"{', '.join(existing)} already exist. Set OVERWRITE = True to regenerate them (copy any text you "
                    "wrote into them somewhere safe first).")
            return
        known = {n for d in (self.deliverable, *M.extra_tasks(self.week)) for f in d.files
                 if f.status != M.BY_HAND for n in f.names}
        existing = sorted(p.name for p in self.out.glob("*") if p.name in known) if self.out.is_dir() else []
        if existing and not self.overwrite:
            raise OutputExistsError(
                f"{self.rel(self.out)} already holds Week {self.week} results ({', '.join(existing[:4])}"
                f"{', ...' if len(existing) > 4 else ''}). Set OVERWRITE = True in the parameters cell to replace "
                "them, or use another STUDENT / RESULTS_ROOT.")
        for name in existing:  # never mix files of two runs; hand-made files (screenshots) are kept
            (self.out / name).unlink()
        self.out.mkdir(parents=True, exist_ok=True)

    def rel(self, path: str | os.PathLike) -> str:
        """A path relative to the course root (stable across machines, used in printed output)."""
        return relative_path(path, self.root) or str(path)

    @property
    def settings(self) -> dict:
        """Every parameter of this run (written next to the results)."""
        out = {"week": self.week, "dataset": self.dataset, "student": self.student, "model": self.model,
               "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed, "smoke": self.smoke,
               "stem": self.stem}
        if self.week in (5, 6):
            out["label_fracs"] = self.label_fracs
        if self.tasks:
            out["tasks"] = [t.id for t in self.tasks]
        return {**out, **self.numerics(), **self.extra}

    def numerics(self) -> dict:
        """``precision`` / ``deterministic`` for the library's configs, when they differ from the defaults."""
        out: dict = {}
        if self.precision != "auto":
            out["precision"] = self.precision
        if self.deterministic:
            out["deterministic"] = True
        return out

    def describe(self) -> str:
        """Stable text for the notebook: what this week writes and where (paths relative to the course root)."""
        lines = [f"Week {self.week}: {self.deliverable.title}"]
        if not self.group:
            lines.append(f"dataset: {self.dataset} ({self.spec.describe_positive()})")
            lines.append(f"results folder: {self.rel(self.out)}/")
        if self.drive:
            lines.append(f"kept on Google Drive in {self.root}/ (results/, runs/, handin/, medmnist/)")
        lines.append(f"smoke mode: {self.smoke}")
        lines.append("")
        lines.append(M.describe(self.week, self.dataset, [t.id for t in self.tasks]) if not self.group
                     else M.describe(self.week))
        return "\n".join(lines)

    # ------------------------------------------------------------ the end
    def finish(self) -> object:
        """Check the folder this run filled; print what is fine and what is left; fail loudly if incomplete."""
        if self.group:
            report = check_group(self.root, self.week)
        else:
            report = check_folder(self.out, self.week, self.dataset, self.student,
                                  tasks=[t.id for t in self.tasks] or None)
        label = self.rel(self.out) if not self.group else f"Week {self.week} (group files)"
        print(report.format(label=label))
        if not report.passed():
            raise ConfigError(f"the Week {self.week} folder is incomplete: see the list above.")
        if report.of("to add", "to write"):
            print("\nBefore you hand in: add the files marked 'to add' and write the places marked 'to write'.")
        if report.of("exercise"):
            print("Exercises whose self-check did not pass are listed as 'exercise': the week used the library's "
                  "version for them. Fix them and re-run their cells if you can.")
        return report

    def hand_in(self, download: bool | None = None) -> Path | None:
        """Zip the checked results folder into ``handin/`` next to ``results/``; in Colab, download it.

        The zip holds ``week<N>/<dataset>/<student>/...``, the layout ``python -m medssl.course collect``
        takes in. An earlier zip is never replaced: a new hand-in gets the next free name (``..._2.zip``).
        ``download=None`` downloads in Colab only. Weeks 9-10 are group work and have no per-student zip.
        """
        if self.group:
            print(f"Week {self.week} is group work: hand it in through your group's repository (commit the files "
                  "listed above and push), not as a zip.")
            return None
        report = check_folder(self.out, self.week, self.dataset, self.student,
                              tasks=[t.id for t in self.tasks] or None)
        if not report.passed():
            print(report.format(label=self.rel(self.out)))
            raise ConfigError(f"the Week {self.week} folder does not pass the check (see above): nothing was zipped.")
        path = make_submission_zip(self.out, self.week, self.dataset, self.student, self.root / HANDIN_DIR)
        import zipfile

        with zipfile.ZipFile(path) as zf:
            n = len(zf.infolist())
        print(f"hand-in zip: {self.rel(path)} ({n} files, {path.stat().st_size / 1024:.0f} KB)")
        todo = report.of(*TO_DO)
        if todo:
            print(f"still {len(todo)} item(s) to add, write or fix (listed by the check above): do them and run "
                  "this cell again; the new zip gets the next free name.")
        if in_colab() if download is None else download:
            if not in_colab():
                raise ConfigError("download=True works in Colab only; the zip is at the path above.")
            from google.colab import files

            files.download(str(path))
        return path
