"""What the weekly notebooks share, so that they stay short.

A notebook starts a :class:`WeekRun` from its parameters cell::

    wk = WeekRun(week=1, dataset=DATASET_KEY, student=STUDENT, model=MODEL_NAME, epochs=EPOCHS,
                 batch_size=BATCH_SIZE, seed=SEED, label_fracs=LABEL_FRACS, results_root=RESULTS_ROOT,
                 smoke=SMOKE, overwrite=OVERWRITE)

and then trains (``wk.train``), writes its files (``wk.save_figure``,
``wk.publish_metrics``, ...) and ends with ``wk.finish()``, which runs the
submission checker on the folder it filled, and ``wk.hand_in()``, which zips
that folder for handing in. Every file name goes through
:mod:`medssl.manifest`, so a notebook can only write what its week declares.

In Colab (``DRIVE = None`` or ``True``), ``WeekRun`` mounts Google Drive and keeps
``results/``, ``runs/``, ``handin/`` and the MedMNIST files in
``MyDrive/medmnist-ssl/``, so a later week finds an earlier week's encoder and
runs after the runtime was reset. Elsewhere nothing changes.

Smoke mode (``SMOKE = True``, or ``MEDSSL_SMOKE=1`` / ``CI=true`` in the
environment) runs the same code on tiny settings -- 1 epoch, at most
:data:`SMOKE_TRAIN_IMAGES` training images, the ImageNet-style ResNet stem
(16x fewer activations at 28 px) -- so the whole course runs in minutes on a
CPU. Smoke numbers are marked as such everywhere and are never results.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ConfigError, OutputExistsError
from ..plots import label_fraction_axis
from ..utils import get_logger, relative_path, save_figure, write_json, write_text
from . import manifest as M
from .check import check_folder, check_group
from .collect import HANDIN_DIR, make_submission_zip
from .config import repo_root

SMOKE_TRAIN_IMAGES = 200
SMOKE_EPOCHS = 1
SMOKE_STEM = "imagenet"
SMOKE_RESULTS_ENV = "MEDSSL_RESULTS_ROOT"

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
SUMMARY_KEYS = ("acc", "auroc", "ece", "f1_macro", "sensitivity", "specificity")


# ================================================================== environment
def smoke_from_env() -> bool:
    """True when ``MEDSSL_SMOKE=1`` or ``CI=true``: how nbval runs the committed notebooks."""
    return os.environ.get("MEDSSL_SMOKE", "").strip() in ("1", "true", "True") or \
        os.environ.get("CI", "").strip().lower() == "true"


def environment() -> dict:
    """Versions and device, for READMEs and the reproducibility checklist."""
    import torch

    from ..utils import resolve_device

    dev = resolve_device("auto")
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    return {"python": platform.python_version(), "torch": torch.__version__, "medssl": __version__,
            "device": str(dev), "gpu": gpu, "platform": platform.platform(terse=True),
            "colab": in_colab()}


def device_banner() -> str:
    env = environment()
    if env["gpu"]:
        return f"GPU: {env['gpu']} (torch {env['torch']})"
    return (f"No GPU found: running on {env['device']} (torch {env['torch']}). Fine for smallcnn and smoke runs; "
            "in Colab use Runtime > Change runtime type > GPU for ResNet-18 and SSL.")


# ================================================================== Colab: Google Drive
DRIVE_FOLDER = "medmnist-ssl"            # MyDrive/<this> holds results/, runs/, handin/ and the MedMNIST files
DRIVE_MOUNT_ENV = "MEDSSL_DRIVE_MOUNT"   # where Drive is mounted (default: Colab's /content/drive)
COLAB_DRIVE_MOUNT = "/content/drive"
_DRIVE: dict[str, Path] = {}


def in_colab() -> bool:
    """True in a Google Colab kernel (which imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def drive_folder(drive: bool | None = None, folder: str = DRIVE_FOLDER) -> Path | None:
    """In Colab, mount Google Drive (once) and return ``MyDrive/<folder>``; None when Drive is off.

    ``drive=None`` means on in Colab and off elsewhere, where nothing changes. The folder keeps
    ``results/``, ``runs/`` and ``handin/``; ``$MEDMNIST_ROOT`` points at its ``medmnist/`` (unless it is set
    already), so the data are downloaded once and survive a runtime reset like everything else.
    """
    if drive is None:
        drive = in_colab()
    if not drive:
        return None
    if not in_colab():
        raise ConfigError("DRIVE = True needs Google Colab (it keeps your files on Google Drive); set DRIVE = None "
                          "or False here, where results/ and runs/ stay in the repository.")
    if folder not in _DRIVE:
        mount = Path(os.environ.get(DRIVE_MOUNT_ENV) or COLAB_DRIVE_MOUNT)
        if not (mount / "MyDrive").is_dir():
            from google.colab import drive as gdrive

            gdrive.mount(str(mount))
        if not (mount / "MyDrive").is_dir():
            raise ConfigError(f"Google Drive did not mount at {mount}: run this cell again and allow access, or set "
                              "DRIVE = False to keep files on this runtime only (they are lost when it resets).")
        base = mount / "MyDrive" / folder
        (base / "medmnist").mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MEDMNIST_ROOT", str(base / "medmnist"))
        _DRIVE[folder] = base
    return _DRIVE[folder]


# ================================================================== README builder
class Readme:
    """A README_week*.md pre-filled from the run, with marked places for the student's own words."""

    def __init__(self, title: str, intro: str | None = None):
        self.parts: list[str] = [f"# {title}", ""]
        if intro:
            self.parts += [intro, ""]

    def h(self, text: str, level: int = 2) -> Readme:
        self.parts += [f"{'#' * level} {text}", ""]
        return self

    def p(self, text: str) -> Readme:
        self.parts += [text.strip(), ""]
        return self

    def bullets(self, items: Iterable[str]) -> Readme:
        self.parts += [f"- {it}" for it in items] + [""]
        return self

    def table(self, rows: Sequence[Mapping] | str, columns: Sequence[str] | None = None, digits: int = 4) -> Readme:
        self.parts += [rows if isinstance(rows, str) else markdown_table(rows, columns, digits), ""]
        return self

    def figure(self, name: str, caption: str) -> Readme:
        self.parts += [f"![{caption}]({name})", f"*{caption}* (`{name}`)", ""]
        return self

    def student(self, prompt: str) -> Readme:
        """A place for the student's interpretation; the checker counts the ones left."""
        self.parts += [f"> ✍️ **{M.STUDENT_MARK}:** {prompt.strip()}", ""]
        return self

    def render(self) -> str:
        return "\n".join(self.parts).rstrip() + "\n"


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v).replace("|", "/")


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A GitHub markdown table of ``rows`` (dicts); floats rounded to ``digits``."""
    rows = list(rows)
    if not rows:
        return "_(no rows)_"
    cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c), digits) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def run_facts(results: Mapping[str, Mapping]) -> str:
    """Facts about training runs that are identical on every machine (for nbval-checked cells).

    Exact metrics of a 1-epoch smoke run differ in the last digits between
    CPUs, so the notebooks' regression checks print these instead; the metric
    values themselves are compared with a tolerance by the course smoke test.
    """
    from .check import check_value

    lines = []
    for name, r in results.items():
        bad = [rule.key for rule in M.METRIC_RULES if rule.key in r and check_value(rule, r[rule.key])]
        n = r.get("n_per_class") or []
        line = f"{name}: test n={sum(n)} per class {n}"
        if "n_train_labels" in r:
            line += f", {r['n_train_labels']} training images"
        if "n_trainable" in r:
            line += f", trainable parameters {r['n_trainable']:,} of {r['n_parameters']:,}"
        line += f", metrics valid: {not bad}" + (f" (bad: {', '.join(bad)})" if bad else "")
        lines.append(line)
    return "\n".join(lines)


def metrics_rows(results: Mapping[str, Mapping], keys: Sequence[str] = SUMMARY_KEYS, name: str = "model") -> list[dict]:
    """``{variant: metrics}`` -> table rows with the headline metrics."""
    return [{name: k, **{m: r.get(m) for m in keys}} for k, r in results.items()]


# ================================================================== self-checks
def self_check(name: str, student_fn: Callable, reference_fn: Callable, cases: Sequence[tuple],
               atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Compare the student's function with the library's on ``cases`` (argument tuples); print PASS/FAIL.

    Returns True only when every case matches. A function that returns None
    (the unfilled template) is reported as "not implemented yet", not as a crash.
    """
    for i, args in enumerate(cases, 1):
        try:
            got = student_fn(*args)
        except NotImplementedError:
            got = None
        except Exception as exc:  # show the student's error without stopping the notebook
            print(f"FAIL  {name}: case {i} raised {type(exc).__name__}: {exc}")
            return False
        if got is None:
            print(f"TODO  {name}: your function returned None -- fill in the 'your turn' cell and run it again.")
            return False
        want = reference_fn(*args)
        g = np.asarray(_to_numpy(got), dtype=float)
        w = np.asarray(_to_numpy(want), dtype=float)
        if g.shape != w.shape or not np.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True):
            print(f"FAIL  {name}: case {i}: yours = {np.round(g, 6).tolist()}, reference = {np.round(w, 6).tolist()}")
            return False
    print(f"PASS  {name}: matches the library on all {len(cases)} cases.")
    return True


def _to_numpy(x):
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return x


# ================================================================== reusing finished runs
# Settings added to every training config after runs had been saved, with the behaviour runs had before them.
NUMERICS_DEFAULTS = {"precision": "auto", "deterministic": False}


def config_defaults(config_class) -> dict:
    """The default value of every field of a config dataclass that has one (as plain JSON values)."""
    from dataclasses import MISSING, fields

    from ..utils import to_jsonable

    out = {}
    for f in fields(config_class):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return to_jsonable(out)


def same_settings(saved: Mapping | None, new: Mapping, defaults: Mapping | None = None) -> bool:
    """True when a saved run's settings equal ``new`` (both plain JSON values).

    A setting that did not exist when the run was saved (a key missing from
    ``saved``) counts as equal when the new value is that setting's default
    (from ``defaults``): the run was made with exactly that behaviour. So a run
    saved before ``precision`` / ``deterministic`` existed is still reused for
    ``precision="auto"``, ``deterministic=False``, but not for ``precision="fp32"``.
    Keys present on both sides must be equal; a key only in ``saved`` never matches.
    """
    if not isinstance(saved, Mapping):
        return False
    if set(saved) - set(new):
        return False
    defaults = defaults or {}
    for k, v in new.items():
        if k in saved:
            if saved[k] != v:
                return False
        elif k not in defaults or defaults[k] != v:
            return False
    return True


def _buildable_stem(kw: dict, arch_key: str) -> dict:
    """``kw`` with the stem ``"n/a"`` of a smallcnn checkpoint (it has no stem choice) replaced by ``"auto"``.

    Week 5 builds its supervised comparison with the encoder's recorded ``(arch, stem)``; a smallcnn
    encoder records the stem as ``"n/a"``, which ``build_model`` does not take back. For a ResNet
    ``"n/a"`` is kept, so the mismatch is reported rather than guessed.
    """
    if kw.get("stem") == "n/a" and kw.get(arch_key) == "smallcnn":
        return {**kw, "stem": "auto"}
    return kw


# ================================================================== the week context
class WeekRun:
    """Paths, settings and file writing for one week's notebook run."""

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

    # ------------------------------------------------------------ files
    def path(self, name: str) -> Path:
        """The path of a declared deliverable ``name`` (anything else is refused)."""
        if self.group:
            declared = {f.name for f in self.deliverable.files}
            if name not in declared:
                raise ConfigError(f"'{name}' is not a Week {self.week} deliverable ({', '.join(sorted(declared))}).")
            return self.root / name
        M.file_spec(self.week, name)
        return self.out / name

    def _note(self, path: Path) -> Path:
        self.written.append(path.name)
        return path

    def save_figure(self, name: str, fig) -> Path:
        return self._note(save_figure(fig, self.path(name)))

    def portable(self, obj):
        """``obj`` with every absolute path inside the course root rewritten relative to it (for shared files)."""
        if isinstance(obj, Mapping):
            return {k: self.portable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.portable(v) for v in obj]
        if isinstance(obj, (str, os.PathLike)) and os.path.isabs(obj):
            return relative_path(obj, self.root) or str(obj)
        return obj

    def save_json(self, name: str, obj) -> Path:
        """Write a results JSON; paths inside the course root are stored relative to it."""
        return self._note(write_json(self.path(name), self.portable(obj)))

    def save_text(self, name: str, text: str) -> Path:
        return self._note(write_text(self.path(name), text))

    def save_csv(self, name: str, rows: Sequence[Mapping] | object) -> Path:
        import pandas as pd

        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        return self._note(write_text(self.path(name), df.to_csv(index=False)))

    def copy_file(self, src: str | os.PathLike, name: str) -> Path:
        dst = self.path(name)
        src = Path(src)
        if not src.exists():
            raise ConfigError(f"{self.rel(src)} was not produced; re-run the training cell above.")
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        return self._note(dst)

    def course_info(self, **more) -> dict:
        return {"week": self.week, "student": self.student, "smoke": self.smoke,
                "notebook": self.deliverable.notebook, "generated": self.started, **more}

    def publish_metrics(self, name: str, result: Mapping, **course) -> Path:
        """Write a metrics JSON into the results folder, with a ``course`` block saying where it came from."""
        obj = dict(result)
        obj["course"] = self.course_info(**course)
        return self.save_json(name, obj)

    def show(self, name: str, width: int = 520) -> None:
        """Display a PNG this run wrote."""
        from IPython.display import Image, display

        display(Image(filename=str(self.path(name)), width=width))

    def readme(self, title: str | None = None) -> Readme:
        title = title or f"Week {self.week} — {self.deliverable.title}"
        who = f"{self.dataset}, {self.student}" if self.dataset else "group"
        r = Readme(f"{title} ({who})")
        r.p(f"Generated by `notebooks/{self.deliverable.notebook}` on {self.started[:10]}. Tables, numbers and "
            "figures come from the run; every ✍️ place is yours to write -- replace the marker line with your own "
            "words (`python -m medssl.course check` lists the ones left).")
        if self.smoke:
            r.p("> ⚠️ **SMOKE RUN** (1 epoch, a few hundred images, for testing the pipeline). "
                "These numbers are not results; re-run with `SMOKE = False` before interpreting anything.")
        return r

    def settings_table(self, extra: Mapping | None = None) -> str:
        rows = [{"setting": k, "value": json.dumps(v) if isinstance(v, (list, dict)) else v}
                for k, v in {**self.settings, **(extra or {})}.items()]
        return markdown_table(rows, ["setting", "value"])

    # ------------------------------------------------------------ data and training
    def load_splits(self, size: int = 28):
        from ..data import load_splits

        return load_splits(self.dataset, size=size)

    def smoke_fraction(self, n_train: int, frac: float = 1.0) -> float:
        """In smoke mode, the fraction of ``n_train`` images that keeps at most SMOKE_TRAIN_IMAGES of them."""
        if not self.smoke:
            return frac
        return min(frac, max(SMOKE_TRAIN_IMAGES / max(n_train, 1), 1e-3))

    def train_config(self, **overrides):
        from ..train import TrainConfig

        model = overrides.get("model", self.model or "smallcnn")
        kw = dict(dataset=self.dataset, model=model, epochs=self.epochs, batch_size=self.batch_size,
                  seed=self.seed, stem="auto" if model == "smallcnn" else self.stem, progress=not self.smoke)
        if self.smoke and "label_frac" not in overrides:  # an explicit label fraction is the experiment: kept
            kw["label_frac"] = self.smoke_fraction(self.spec.n_samples["train"])
        kw.update(self.numerics())
        kw.update(overrides)
        return TrainConfig(**_buildable_stem(kw, "model"))

    def train(self, name: str, **overrides) -> dict:
        """Train (or reuse) a supervised run in ``runs/week<N>/<dataset>/<student>/<name>``; returns test metrics.

        A finished run with exactly the same settings is reused instead of
        retrained (a setting added to the library since the run was saved counts
        as the same when the new value is its default: :func:`same_settings`);
        a run with other settings is replaced only with OVERWRITE.
        """
        from ..train import run

        cfg = self.train_config(**overrides)
        out = self.runs / name
        done = out / "test_metrics.json"
        if done.exists():
            old = json.loads(done.read_text())
            if same_settings(old.get("config"), json.loads(json.dumps(cfg.to_dict())), config_defaults(type(cfg))):
                print(f"[{name}] reusing the finished run in {self.rel(out)}/ (same settings)")
                return old
            if not self.overwrite:
                raise OutputExistsError(
                    f"{self.rel(out)} holds a run with other settings. Set OVERWRITE = True to retrain it.")
        res = run(cfg, out, overwrite=True)
        tag = "  [SMOKE]" if self.smoke else ""
        print(f"[{name}] {cfg.model} ({cfg.finetune}, aug={cfg.aug}) {cfg.epochs} epoch(s), "
              f"{res['n_train_labels']} training images: test acc={res['acc']:.3f} auroc={res['auroc']:.3f} "
              f"ece={res['ece']:.3f}{tag}")
        return res

    def predictions(self, name: str, week: int | None = None) -> dict:
        """``predictions.npz`` of a run, plus softmax probabilities ``val_probs`` / ``test_probs``."""
        from ..calibration import softmax

        path = self.run_dir(name, week) / "predictions.npz"
        if not path.exists():
            raise ConfigError(f"{self.rel(path)} is missing; run the training cell for '{name}' first.")
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
        out["val_probs"], out["test_probs"] = softmax(out["val_logits"]), softmax(out["test_logits"])
        return out

    def job(self, name: str, key: Mapping, fn: Callable[[Path], object], defaults: Mapping | None = None) -> Path:
        """Run ``fn(out)`` once into ``runs/.../<name>``; reuse the folder when ``key`` (all settings) is unchanged.

        Library jobs (pretraining, probes, analyses) write their own files; the
        notebook reads them back from the returned folder, so a re-run with the
        same settings costs nothing and a changed setting needs OVERWRITE.
        ``defaults`` (e.g. :func:`config_defaults` of the job's config class):
        a key missing from a saved job counts as unchanged when its new value is
        that default (see :func:`same_settings`); ``precision="auto"`` and
        ``deterministic=False`` (:data:`NUMERICS_DEFAULTS`) always count so.
        """
        from ..utils import to_jsonable

        out = self.runs / name
        marker = out / "course_job.json"
        key = to_jsonable(dict(key))
        if marker.exists():
            try:
                old = json.loads(marker.read_text()).get("key")
            except (OSError, ValueError):
                old = None
            if same_settings(old, key, {**NUMERICS_DEFAULTS, **(defaults or {})}):
                print(f"[{name}] reusing the finished job in {self.rel(out)}/ (same settings)")
                return out
        if out.exists() and any(out.iterdir()):
            if not self.overwrite:
                raise OutputExistsError(f"{self.rel(out)} holds a job with other settings (or an unfinished one). "
                                        "Set OVERWRITE = True to redo it.")
            shutil.rmtree(out)
        fn(out)
        write_json(marker, {"key": key, "finished": _dt.datetime.now().isoformat(timespec="seconds")})
        return out

    def pretrain(self, name: str = "ssl", **overrides) -> dict:
        """SSL pretraining (:func:`medssl.pretrain.run`) as a reusable job; returns ``ssl_config.json``."""
        from ..pretrain import SSLConfig
        from ..pretrain import run as pretrain_run

        backbone = overrides.get("backbone", self.model or "resnet18")
        kw = dict(dataset=self.dataset, backbone=backbone, stem="auto" if backbone == "smallcnn" else self.stem,
                  epochs=self.epochs, batch_size=self.batch_size, seed=self.seed, progress=not self.smoke)
        kw.update(self.numerics())
        kw.update(overrides)
        cfg = SSLConfig(**_buildable_stem(kw, "backbone"))
        out = self.job(name, cfg.to_dict(), lambda o: pretrain_run(cfg, o, overwrite=True), config_defaults(SSLConfig))
        return load_json(out / "ssl_config.json")

    def downstream(self, name: str, encoder: str | os.PathLike, fractions: Sequence[float], finetune: bool = False,
                   compare_inits: bool = False, **overrides) -> Path:
        """Linear probe (+ fine-tuning / init comparison) of an SSL encoder (:func:`medssl.probe.run`)."""
        from ..probe import DownstreamConfig
        from ..probe import run as probe_run

        kw = dict(dataset=self.dataset, encoder=str(encoder), fractions=list(fractions), seed=self.seed,
                  epochs=self.epochs, progress=not self.smoke)
        if self.smoke:
            kw["min_steps"] = 0
        kw.update(self.numerics())
        kw.update(overrides)
        cfg = DownstreamConfig(**kw)
        return self.job(name, {**cfg.to_dict(), "finetune": finetune, "compare_inits": compare_inits},
                        lambda o: probe_run(cfg, o, overwrite=True, do_finetune=finetune, compare_inits=compare_inits),
                        config_defaults(DownstreamConfig))

    def _how_to_run(self, week: int) -> str:
        if self.drive:
            return (f"Run the Week {week} notebook first, in Colab with DRIVE on and the same DATASET_KEY "
                    f"({self.dataset}) and STUDENT ({self.student}): it keeps its files in {self.root}/.")
        return (f"Run Week {week} first for the same dataset and student:\n    python -m medssl.course run "
                f"--week {week} --dataset {self.dataset} --student {self.student}" + (" --smoke" if self.smoke else "")
                + (f" --results-root {self.results_root}" if self.results_root != repo_root() / "results" else ""))

    def previous_run(self, week: int, relpath: str, what: str) -> Path:
        """A file in an earlier week's ``runs/`` folder, with the command to make it when it is missing."""
        path = self.root / "runs" / f"week{week}" / self.dataset / self.student / relpath
        if not path.exists():
            raise ConfigError(
                f"Week {self.week} needs Week {week}'s {what}: {self.rel(path)} is missing (runs/ is not in git, so "
                f"a fresh clone has to recompute it). {self._how_to_run(week)}")
        return path

    def run_dir(self, name: str, week: int | None = None) -> Path:
        """``runs/week<N>/<dataset>/<student>/<name>`` of this or another week."""
        w = self.week if week is None else week
        return self.root / "runs" / f"week{w}" / self.dataset / self.student / name

    def previous(self, week: int, name: str | None = None, what: str = "its results") -> Path:
        """A file or folder of an earlier week's results (``name`` inside it), with a clear message if missing."""
        folder = M.results_dir(self.results_root, week, self.dataset, self.student)
        path = folder / name if name else folder
        if not path.exists():
            raise ConfigError(
                f"Week {self.week} needs Week {week}'s {what}: {self.rel(path)} is missing. {self._how_to_run(week)}")
        return path

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
        todo = report.of("to add", "to write")
        if todo:
            print("\nBefore you hand in: add the files marked 'to add' and write the places marked 'to write'.")
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
        todo = report.of("to add", "to write")
        if todo:
            print(f"still {len(todo)} item(s) to add or write (listed by the check above): do them and run this cell "
                  "again; the new zip gets the next free name.")
        if in_colab() if download is None else download:
            if not in_colab():
                raise ConfigError("download=True works in Colab only; the zip is at the path above.")
            from google.colab import files

            files.download(str(path))
        return path


# ================================================================== galleries
def misclassified(labels: np.ndarray, probs: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices of the ``k`` most confidently misclassified samples (highest top-label probability)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=float)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong].max(1), kind="stable")
    return wrong[order[:k]]


def gallery_captions(idx: Sequence[int], labels: np.ndarray, probs: np.ndarray, spec) -> list[str]:
    """``true / predicted / P(positive)`` under each image."""
    from ..calibration import positive_probability

    pos = spec.positive_class
    out = []
    for i in idx:
        line = f"#{i} true: {spec.labels[int(labels[i])]}\npred: {spec.labels[int(probs[i].argmax())]}"
        if pos is not None and probs.shape[1] == 2:
            line += f"\nP({spec.labels[pos]})={positive_probability(probs[i:i + 1], pos)[0]:.2f}"
        out.append(line)
    return out


# ================================================================== error taxonomy (Week 7 P4 / B5)
ERROR_GROUPS = ("TP", "TN", "FP", "FN")


def outcome_groups(scores: np.ndarray, y: np.ndarray, threshold: float) -> np.ndarray:
    """``TP`` / ``TN`` / ``FP`` / ``FN`` per case, calling ``score >= threshold`` positive (``y``: 1 = positive)."""
    pred, y = np.asarray(scores) >= threshold, np.asarray(y).astype(bool)
    return np.where(pred, np.where(y, "TP", "FP"), np.where(y, "FN", "TN"))


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (uint8, (N, C, H, W)), on a 0-1 scale: ``brightness`` (mean), ``contrast`` (standard deviation)
    and ``dark_area`` (fraction of pixels darker than the image's mean minus one standard deviation: a rough
    size of a dark region such as a hypoechoic lesion or an opacity-free lung field)."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1) / 255.0
    mean, std = x.mean(1), x.std(1)
    return {"brightness": mean, "contrast": std, "dark_area": (x < (mean - std)[:, None]).mean(1)}


def error_taxonomy_table(images: np.ndarray, scores: np.ndarray, y: np.ndarray, threshold: float,
                         confident_margin: float = 0.25) -> list[dict]:
    """Image statistics of correct calls vs false positives vs false negatives (mean and std per group).

    ``high-confidence`` counts the group's cases whose score is more than ``confident_margin`` away from
    the threshold: errors the model was sure of.
    """
    groups = outcome_groups(scores, y, threshold)
    stats = image_statistics(images)
    scores = np.asarray(scores, dtype=np.float64)
    rows = []
    for g in ERROR_GROUPS:
        m = groups == g
        row: dict = {"group": g, "n": int(m.sum()),
                     "high-confidence": int((m & (np.abs(scores - threshold) > confident_margin)).sum())}
        for k, v in stats.items():
            row[f"{k} mean"] = float(v[m].mean()) if m.any() else float("nan")
            row[f"{k} std"] = float(v[m].std()) if m.any() else float("nan")
        rows.append(row)
    return rows


def grouped_error_gallery(images: np.ndarray, scores: np.ndarray, y: np.ndarray, threshold: float, k: int = 5,
                          title: str | None = None):
    """Rows FP, FN (most confident first) and, for contrast, the most confident TP and TN; captions give
    P(positive), brightness and contrast."""
    from ..plots import labelled_rows_grid

    groups = outcome_groups(scores, y, threshold)
    stats = image_statistics(images)
    scores = np.asarray(scores, dtype=np.float64)
    rows = {}
    for g, desc in (("FP", "false positives"), ("FN", "false negatives"), ("TP", "true positives"),
                    ("TN", "true negatives")):
        idx = np.flatnonzero(groups == g)
        idx = idx[np.argsort(-np.abs(scores[idx] - threshold), kind="stable")][:k]
        caps = [f"p={scores[i]:.2f} b={stats['brightness'][i]:.2f}\nc={stats['contrast'][i]:.2f} #{i}" for i in idx]
        rows[f"{g}: {desc}"] = (np.asarray(images)[idx], caps)
    return labelled_rows_grid(rows, ncols=k, title=title)


# ================================================================== Weeks 5-6 figures
def fraction_figure(rows: Sequence[Mapping], metric: str, reference: Mapping[str, float] | None = None,
                    title: str | None = None):
    """``metric`` against % of labels, one line per ``method``; ``reference`` adds dashed horizontal lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((float(r["fraction"]) * 100, r[metric]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method)
    for i, (name, value) in enumerate((reference or {}).items()):
        ax.axhline(value, ls="--", lw=1, color=f"C{i + 3}", label=name)
    label_fraction_axis(ax, {float(r["fraction"]) * 100 for r in rows}, metric, title, legend_size=8)
    fig.tight_layout()
    return fig


def bar_figure(values: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = ("acc", "auroc", "ece"),
               title: str | None = None):
    """Grouped bars: one group per metric, one bar per entry of ``values`` (``{name: {metric: value}}``)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(metrics))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(x + (i - (len(values) - 1) / 2) * width, [vals.get(m, np.nan) for m in metrics], width, label=name)
    ax.set_xticks(x, [f"test {m}" for m in metrics])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# ================================================================== Weeks 9-10: write-up and reproducibility
def _metric_files(results_root: Path, include_smoke: bool) -> list[tuple[Path, dict]]:
    """(path, data) of every metrics-like JSON (metrics files and ssl_config.json) in the submissions."""
    from .check import find_submissions, parse_location

    out = []
    for folder in find_submissions(results_root):
        week = parse_location(folder)[0]
        for path in sorted(folder.glob("*.json")):
            try:
                spec = M.file_spec(week, path.name)
            except ConfigError:
                continue
            if spec.keys not in (M.METRIC_RULES, M.SSL_CONFIG_RULES):
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            smoke = bool((data.get("course") or {}).get("smoke")) or bool((data.get("data") or {}).get("synthetic"))
            if smoke and not include_smoke:
                continue
            out.append((path, data))
    return out


def missing_pieces(results_root: str | os.PathLike, datasets: Sequence[str] = M.DATASETS,
                   include_smoke: bool = False) -> str:
    """A checklist of what the write-up still lacks: weeks without results, failing folders, text left to write."""
    from .check import check_tree, find_submissions, parse_location

    results_root = Path(results_root)
    have: dict[tuple[int, str], list[str]] = {}
    for folder in find_submissions(results_root) if results_root.is_dir() else []:
        w, d, s = parse_location(folder)
        have.setdefault((w, d), []).append(s)
    lines = ["# Missing pieces (generated)", "",
             "Regenerate with the Week 9 notebook. Tick items off by making them true, not by editing this file.", "",
             "## Results per week and dataset", "", "| week | " + " | ".join(datasets) + " |",
             "|---|" + "---|" * len(datasets)]
    todo = []
    for w in range(1, 9):
        cells = []
        for d in datasets:
            names = have.get((w, d), [])
            cells.append(", ".join(sorted(names)) if names else "**missing**")
            if not names:
                todo.append(f"Week {w} has no results for {d}.")
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    reports = [r for r in (check_tree(results_root) if results_root.is_dir() else []) if r.week <= 8]
    for r in reports:
        rel = "/".join(Path(r.folder).parts[-3:])
        if not r.passed():
            todo.append(f"`{rel}` fails the checker ({len(r.of('missing', 'malformed'))} problem(s)).")
        for p in r.of("to add"):
            todo.append(f"`{rel}`: add {p.file}.")
        n_write = sum(int(p.message.split()[0]) for p in r.of("to write") if p.message.split()[0].isdigit())
        if n_write:
            todo.append(f"`{rel}`: {n_write} interpretation place(s) still to write.")
    smoke = [p for p, d in _metric_files(results_root, True) if (d.get("course") or {}).get("smoke")]
    if smoke and not include_smoke:
        todo.append(f"{len(smoke)} metrics file(s) come from smoke runs; re-run those weeks with SMOKE = False.")
    lines += ["", "## To do", ""] + ([f"- [ ] {t}" for t in todo] or ["- [x] nothing missing in results/"])
    lines += ["- [ ] Export `reports/final_writeup/draft_v1.md` as `draft_v1.pdf`.", ""]
    return "\n".join(lines)


def draft_skeleton(summary_md: str, label_efficiency_md: str | None, figures: Mapping[str, str],
                   n_students: Mapping[str, int]) -> str:
    """The paper-style skeleton of the write-up, with the class-wide tables and figures already in place."""
    who = ", ".join(f"{d}: {n} student(s)" for d, n in sorted(n_students.items())) or "no results yet"
    r = Readme("Self-supervised pretraining on small medical images: label efficiency and calibration "
               "on BreastMNIST and PneumoniaMNIST (draft v1)")
    r.p(f"*Generated skeleton ({who}). Tables and figures are filled from `results/`; every ✍️ place is for you. "
        "Aim for 4-6 pages.*")
    r.h("1. Introduction")
    r.student("Motivation: labels are expensive in medical imaging; can contrastive SSL save labels? Why care about "
              "calibration and operating points, and why compare an ultrasound and an X-ray dataset?")
    r.h("2. Methods")
    r.bullets(["Data: MedMNIST v2 BreastMNIST (546/78/156, positive = malignant) and PneumoniaMNIST "
               "(4708/524/624, positive = pneumonia), 28×28 greyscale.",
               "Models: smallcnn and ResNet-18 (3×3 stem for 28 px), supervised baselines (Weeks 1-3).",
               "SSL: SimCLR-lite (NT-Xent) on the unlabelled training split (Week 4); linear probe and fine-tuning "
               "with 5% and 10% of the labels (Weeks 5-6).",
               "Evaluation: accuracy, AUROC, ECE (15 bins, on P(positive)), thresholds chosen on validation "
               "(Week 7), mild perturbations (Week 8)."])
    r.student("Anything your group did differently (epochs, augmentations, seeds); say whether numbers are single "
              "runs or means over seeds.")
    r.h("3. Results")
    r.p("Test metrics, mean ± std over students:")
    r.table(summary_md)
    if label_efficiency_md:
        r.table(label_efficiency_md)
    for name, caption in figures.items():
        r.figure(f"../../{name}", caption)
    r.student("Describe the three or four findings the tables support, with numbers.")
    r.h("4. Discussion")
    r.student("When does SSL improve label efficiency? How does it affect calibration and thresholds? How do the "
              "effects differ between Breast and Pneumonia? Limits: dataset size, 28 px, single seeds.")
    r.h("5. Ethics and limitations")
    r.student("Summarise the Week 8 notes: benchmark vs clinical reality, which errors are more costly, deployment.")
    r.h("References")
    r.student("The references collected in reports/references/.")
    return r.render()


def reproducibility_checklist(root: str | os.PathLike, results_root: str | os.PathLike,
                              include_smoke: bool = False) -> str:
    """``results/week10/reproducibility_checklist.md``: what was actually run, with which settings, and checks."""
    from ..registry import get_spec
    from .check import check_tree, parse_location

    root, results_root = Path(root), Path(results_root)
    files = _metric_files(results_root, include_smoke)
    rows, seeds_ok, md5_ok, md5_seen, walls, devices, torch_v = [], 0, 0, set(), {}, set(), set()
    for path, data in files:
        week, dataset, student = parse_location(path.parent)
        cfg = data.get("config") or data.get("train_config") or {}
        seed = data.get("seed", cfg.get("seed"))
        seeds_ok += seed is not None and bool(cfg)
        md5 = (data.get("data") or {}).get("md5")
        if md5:
            md5_seen.add((dataset, md5))
            try:
                md5_ok += md5 == get_spec(dataset).md5.get(int(cfg.get("size", 28)))
            except Exception:  # unknown dataset key in a student folder
                pass
        wall = data.get("wall_time_s") or data.get("seconds")
        if isinstance(wall, (int, float)):
            walls[(dataset, week)] = walls.get((dataset, week), 0.0) + float(wall)
        if data.get("device"):
            devices.add(str(data["device"]))
        if (data.get("versions") or {}).get("torch"):
            torch_v.add(data["versions"]["torch"])
        rows.append({"week": week, "dataset": dataset, "student": student, "file": path.name,
                     "model": (data.get("model") or {}).get("arch") if isinstance(data.get("model"), dict)
                     else cfg.get("model", cfg.get("backbone")),
                     "epochs": cfg.get("epochs"), "seed": seed,
                     "label_frac": data.get("label_frac", data.get("fraction")), "device": data.get("device"),
                     "wall s": wall, "smoke": (data.get("course") or {}).get("smoke", False)})
    reports = [r for r in (check_tree(results_root) if results_root.is_dir() else []) if r.week <= 8]
    n_pass = sum(r.passed() for r in reports)
    readme = root / "README.md"
    readme_ok = readme.exists() and "medssl.course run" in readme.read_text(errors="ignore")
    folders = sorted({(parse_location(p.parent)) for p, _ in files})
    env = environment()

    def box(ok: bool) -> str:
        return "[x]" if ok else "[ ]"

    n = len(files)
    lines = ["# Reproducibility checklist (generated)", "",
             f"Generated by `notebooks/Week10_Reproducibility.ipynb` from {n} result file(s) in "
             f"{len(reports)} results folder(s){' (smoke runs included)' if include_smoke else ''}. "
             "Every tick below is computed from the files, not typed in.", "",
             "## Checks", "",
             f"- {box(bool(reports) and n_pass == len(reports))} Every results folder passes "
             f"`python -m medssl.course check results` ({n_pass}/{len(reports)}).",
             f"- {box(n > 0 and seeds_ok == n)} Every result file records its seed and full configuration "
             f"({seeds_ok}/{n}).",
             f"- {box(bool(md5_seen) and md5_ok == len([1 for _, d in files if (d.get('data') or {}).get('md5')]))} "
             f"Data files match medmnist's MD5 ({', '.join(sorted(f'{d}: {m[:8]}…' for d, m in md5_seen)) or 'none'}).",
             f"- {box(readme_ok)} The top-level README explains how to run a week with one command "
             "(`python -m medssl.course run ...`).",
             f"- {box(len(torch_v) <= 1)} One torch version across results ({', '.join(sorted(torch_v)) or '?'}); "
             f"devices used: {', '.join(sorted(devices)) or '?'}.",
             "- [ ] Numbers are labelled as single runs or mean ± std over seeds in the write-up (check by hand).",
             "", "## Compute used (sum of recorded wall times, seconds)", ""]
    by_ds: dict[str, float] = {}
    for (d, _w), t in sorted(walls.items()):
        by_ds[d] = by_ds.get(d, 0.0) + t
    lines.append(markdown_table([{"dataset": d, **{f"week {w}": walls.get((d, w)) for w in range(1, 9)},
                                  "total": t} for d, t in by_ds.items()], digits=0) if by_ds else "_nothing yet_")
    lines += ["", "A Colab GPU run of the key plots should fit in one hour; totals above are from the devices listed.",
              "", "## How to reproduce every result", "", "```bash", "pip install -r requirements.txt",
              "export MEDMNIST_ROOT=/path/to/medmnist   # optional: folder with the .npz files"]
    for w, d, s in folders:
        lines.append(f"python -m medssl.course run --week {w} --dataset {d} --student {s}")
    lines += ["python -m medssl.course check results", "python -m medssl.course aggregate", "```", "",
              "## What was run", "", markdown_table(rows, digits=1) if rows else "_nothing yet_", "",
              "## This environment", "", markdown_table([{"item": k, "value": v} for k, v in env.items()]), ""]
    return "\n".join(lines)


# ================================================================== reference summaries
def reference_stub_path(root: str | os.PathLike, task_id: str, shortname: str) -> Path:
    """``reports/references/<task_id>_<shortname>.md`` below the course ``root``."""
    short = "".join(c if (c.isalnum() or c in "-.") else "-" for c in str(shortname).strip()).strip("-.")
    if not short:
        raise ConfigError("a reference summary needs a short name (e.g. your name or 'guo2017').")
    return Path(root) / "reports" / "references" / f"{M.task(task_id).id}_{short}.md"


def write_reference_stub(root: str | os.PathLike, task_id: str, student: str, shortname: str | None = None) -> Path:
    """Write the reference-summary stub of an extra task a student owns, unless it exists already.

    The stub carries ``TODO(student)`` marks, so ``course check`` lists it as *to write*
    until the Lead has filled it in. An existing file (written or not) is never touched.
    """
    task = M.task(task_id)
    path = reference_stub_path(root, task.id, shortname or student)
    if path.exists():
        return path
    mark = M.STUDENT_MARK
    text = "\n".join([
        f"# {task.id} — {mark}: short title of the reference", "",
        f"**Reference:** {mark}: authors, \"title\", venue, year, link.",
        f"**Task:** {task.id} ({task.focus}, Week {task.week}: {task.title}) · **Lead:** {student} · "
        f"**Reviewer:** {mark}", "",
        "## Summary (8-12 lines)", "",
        f"- **Key idea:** {mark}",
        f"- **Protocol or metric it recommends:** {mark}",
        f"- **How we use it in our MedMNIST setup:** {mark}",
        f"- **What it does not cover / caveats:** {mark}", "",
        "## Reviewer sanity check (3-5 lines)", "",
        f"{mark}: did the numbers reproduce with the same seed and command? Does the interpretation follow?", ""])
    return write_text(path, text)


# ================================================================== the task board
def task_board_markdown() -> str:
    """``reports/task_board_week5_7.md``: every extra task from the manifest with Owner 1 / Owner 2 columns."""
    short = {"pneumoniamnist": "pneumo", "breastmnist": "breast"}
    rows = M.task_board_rows()
    lines = ["# Task board: extra tasks, Weeks 5-8", "",
             "Everyone does the core of every week on their primary dataset (no sign-up needed). On top of that, "
             "sign up for **1-2 extra tasks** below by writing your name in a free Owner column and opening an issue "
             "titled `Week5 extra: <task_id> – <dataset> – <your_name>` that links your results folder.", "",
             "- **Owner 1 (Lead)** produces the artifacts and the short write-up, and adds >= 1 reference summary "
             "in `reports/references/<task_id>_<shortname>.md` (see `reports/references/TEMPLATE.md`).",
             "- **Owner 2 (Reviewer/Runner)** re-runs or sanity-checks the results and reviews the interpretation "
             "(3-5 lines in the reference file).",
             "- If one team is much larger, its members take at least one task of the other dataset as helpers.",
             "- Each task is a switchable section of its week's notebook: `EXTRA_TASKS = [\"P1\"]` (or run "
             "`python -m medssl.course run --week 6 --dataset pneumoniamnist --student <you> -p EXTRA_TASKS "
             "'[\"P1\"]'`). Its files land in `results/week<N>/<dataset>/<your_name>/` with the task id as prefix.",
             ""]
    for title, weeks in (("Weeks 5-7", (5, 6, 7)), ("Week 8 (team tasks: each dataset team completes all three)",
                                                   (8,))):
        lines += [f"## {title}", "", "| Task | Week | Dataset | Description | Deliverables | Owner 1 | Owner 2 |",
                  "|------|------|---------|-------------|--------------|---------|---------|"]
        for r in rows:
            if r["week"] in weeks:
                lines.append(f"| {r['task']} | {r['week']} | {short.get(r['dataset'], r['dataset'])} | {r['title']} | "
                             f"{r['deliverables']} | | |")
        lines.append("")
    lines += ["_Generated from `medssl/manifest.py` (`python -c \"from medssl import course_helpers as ch; "
              "print(ch.task_board_markdown())\"`); keep the task list in sync by regenerating, then fill in "
              "names._", ""]
    return "\n".join(lines)


# ================================================================== run summaries
def load_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def best_by_val_auroc(results: Mapping[str, Mapping]) -> str:
    """The variant with the highest validation AUROC; test metrics are never used to choose.

    Exact ties are broken without looking at the order the variants are listed in
    (Week 3 lists them in training order, Week 6 reads its metrics files in name
    order, and both must name the same baseline): the lower validation loss
    wins, then the name (alphabetically first). Only validation numbers are used.
    """
    if not results:
        raise ConfigError("best_by_val_auroc needs at least one result.")

    def number(v, missing: float) -> float:
        return missing if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def rank(name: str) -> tuple:
        vm = results[name].get("val_metrics") or {}
        loss = vm.get("loss", vm.get("nll"))
        return (-number(vm.get("auroc"), -math.inf), number(loss, math.inf), str(name))

    return min(results, key=rank)


__all__ = ["Readme", "WeekRun", "bar_figure", "best_by_val_auroc", "config_defaults", "device_banner",
           "draft_skeleton", "drive_folder", "environment", "error_taxonomy_table", "fraction_figure",
           "gallery_captions", "grouped_error_gallery", "in_colab", "load_json", "markdown_table", "metrics_rows",
           "misclassified", "missing_pieces", "reproducibility_checklist", "run_facts", "same_settings",
           "self_check", "smoke_from_env"]
