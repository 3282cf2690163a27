"""Training and jobs of a week, reused when they already ran: :class:`WeekJobs`, part of
:class:`~medssl.course.week.WeekRun`.

A finished run or job is reused when its settings are unchanged (:func:`same_settings`), so re-running a
notebook costs nothing; other settings need OVERWRITE. Earlier weeks' runs are found in ``runs/``, with the
command that makes them when they are missing.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np

from ..errors import ConfigError, OutputExistsError
from ..utils import to_jsonable, write_json
from . import manifest as M
from .config import repo_root
from .environment import SMOKE_TRAIN_IMAGES

# Settings added to every training config after runs had been saved, with the behaviour runs had before them.
NUMERICS_DEFAULTS = {"precision": "auto", "deterministic": False}


def config_defaults(config_class) -> dict:
    """The default value of every field of a config dataclass that has one (as plain JSON values)."""
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


class WeekJobs:
    """Training, library jobs and earlier weeks' runs for :class:`~medssl.course.week.WeekRun` (uses its
    ``dataset``, ``model``, ``epochs``, ``runs``, ``overwrite``, ... set up by ``WeekRun.__init__``)."""

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
        return json.loads((out / "ssl_config.json").read_text())

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
