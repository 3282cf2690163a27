"""What the weekly notebooks share, so that they stay short.

A notebook starts a :class:`WeekRun` from its parameters cell::

    wk = WeekRun(week=1, dataset=DATASET_KEY, student=STUDENT, model=MODEL_NAME, epochs=EPOCHS,
                 batch_size=BATCH_SIZE, seed=SEED, label_fracs=LABEL_FRACS, results_root=RESULTS_ROOT,
                 smoke=SMOKE, overwrite=OVERWRITE)

and then trains (``wk.train``), writes its files (``wk.save_figure``,
``wk.publish_metrics``, ...) and ends with ``wk.finish()``, which runs the
submission checker on the folder it filled. Every file name goes through
:mod:`medssl.manifest`, so a notebook can only write what its week declares.

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
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from . import __version__
from . import manifest as M
from .course import check_folder, check_group, repo_root
from .errors import ConfigError, OutputExistsError
from .utils import get_logger, save_figure, write_json, write_text

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

    from .utils import resolve_device

    dev = resolve_device("auto")
    gpu = torch.cuda.get_device_name(0) if dev.type == "cuda" else None
    return {"python": platform.python_version(), "torch": torch.__version__, "medssl": __version__,
            "device": str(dev), "gpu": gpu, "platform": platform.platform(terse=True),
            "colab": "google.colab" in __import__("sys").modules}


def device_banner() -> str:
    env = environment()
    if env["gpu"]:
        return f"GPU: {env['gpu']} (torch {env['torch']})"
    return (f"No GPU found: running on {env['device']} (torch {env['torch']}). Fine for smallcnn and smoke runs; "
            "in Colab use Runtime > Change runtime type > GPU for ResNet-18 and SSL.")


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


# ================================================================== the week context
class WeekRun:
    """Paths, settings and file writing for one week's notebook run."""

    def __init__(self, week: int, dataset: str | None = None, student: str | None = None,
                 model: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                 seed: int = 42, label_fracs: Sequence[float] | None = None,
                 results_root: str | os.PathLike | None = None, smoke: bool | None = None,
                 overwrite: bool | None = None, tasks: str | Sequence[str] | None = "auto", **extra):
        from .registry import get_spec

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
        self.extra = dict(extra)
        self.stem = SMOKE_STEM if self.smoke else "auto"
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
        if self.student == "your_name" and not self.smoke:
            get_logger().warning("STUDENT is still 'your_name': set it to your name in the parameters cell.")

    # ------------------------------------------------------------ setup
    def _resolve_results_root(self, results_root) -> Path:
        if results_root:
            p = Path(results_root).expanduser()
            return (p if p.is_absolute() else repo_root() / p).resolve()
        if self.smoke:
            env = os.environ.get(SMOKE_RESULTS_ENV)
            return Path(env).resolve() if env else Path(tempfile.gettempdir()) / "medssl-smoke" / "results"
        return repo_root() / "results"

    def _prepare_out(self) -> None:
        if self.group:
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
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(p)

    @property
    def settings(self) -> dict:
        """Every parameter of this run (written next to the results)."""
        return {"week": self.week, "dataset": self.dataset, "student": self.student, "model": self.model,
                "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed,
                "label_fracs": self.label_fracs, "smoke": self.smoke, "stem": self.stem,
                "tasks": [t.id for t in self.tasks], **self.extra}

    def describe(self) -> str:
        """Stable text for the notebook: what this week writes and where (paths relative to the course root)."""
        lines = [f"Week {self.week}: {self.deliverable.title}"]
        if not self.group:
            lines.append(f"dataset: {self.dataset} ({self.spec.describe_positive()})")
            lines.append(f"results folder: {self.rel(self.out)}/")
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

    def save_json(self, name: str, obj) -> Path:
        return self._note(write_json(self.path(name), obj))

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
        from .data import load_splits

        return load_splits(self.dataset, size=size)

    def smoke_fraction(self, n_train: int, frac: float = 1.0) -> float:
        """In smoke mode, shrink a label fraction so that at most SMOKE_TRAIN_IMAGES images are used."""
        if not self.smoke:
            return frac
        return min(frac, max(SMOKE_TRAIN_IMAGES / max(n_train, 1), 1e-3))

    def train_config(self, **overrides):
        from .train import TrainConfig

        model = overrides.get("model", self.model or "smallcnn")
        kw = dict(dataset=self.dataset, model=model, epochs=self.epochs, batch_size=self.batch_size,
                  seed=self.seed, stem="auto" if model == "smallcnn" else self.stem, progress=not self.smoke)
        kw.update(overrides)
        if self.smoke:
            n_train = self.spec.n_samples["train"]
            kw["label_frac"] = self.smoke_fraction(n_train, kw.get("label_frac", 1.0))
        return TrainConfig(**kw)

    def train(self, name: str, **overrides) -> dict:
        """Train (or reuse) a supervised run in ``runs/week<N>/<dataset>/<student>/<name>``; returns test metrics.

        A finished run with exactly the same settings is reused instead of
        retrained; a run with other settings is replaced only with OVERWRITE.
        """
        from .train import run

        cfg = self.train_config(**overrides)
        out = self.runs / name
        done = out / "test_metrics.json"
        if done.exists():
            old = json.loads(done.read_text())
            if old.get("config") == json.loads(json.dumps(cfg.to_dict())):
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
        from .calibration import softmax

        path = self.run_dir(name, week) / "predictions.npz"
        if not path.exists():
            raise ConfigError(f"{self.rel(path)} is missing; run the training cell for '{name}' first.")
        with np.load(path) as z:
            out = {k: z[k] for k in z.files}
        out["val_probs"], out["test_probs"] = softmax(out["val_logits"]), softmax(out["test_logits"])
        return out

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
                f"Week {self.week} needs Week {week}'s {what}: {self.rel(path)} is missing. Run Week {week} first "
                f"for the same dataset and student:\n    python -m medssl.course run --week {week} "
                f"--dataset {self.dataset} --student {self.student}" + (" --smoke" if self.smoke else "")
                + (f" --results-root {self.results_root}" if self.results_root != repo_root() / "results" else ""))
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
    from .calibration import positive_probability

    pos = spec.positive_class
    out = []
    for i in idx:
        line = f"#{i} true: {spec.labels[int(labels[i])]}\npred: {spec.labels[int(probs[i].argmax())]}"
        if pos is not None and probs.shape[1] == 2:
            line += f"\nP({spec.labels[pos]})={positive_probability(probs[i:i + 1], pos)[0]:.2f}"
        out.append(line)
    return out


# ================================================================== run summaries
def load_json(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def best_by_val_auroc(results: Mapping[str, Mapping]) -> str:
    """The variant with the highest validation AUROC (ties: the first); test metrics are never used to choose."""
    def score(r):
        v = (r.get("val_metrics") or {}).get("auroc")
        return -math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v
    return max(results, key=lambda k: score(results[k]))


__all__ = ["Readme", "WeekRun", "best_by_val_auroc", "device_banner", "environment", "markdown_table",
           "metrics_rows", "self_check", "smoke_from_env"]
