"""What the weekly notebooks import as ``ch``: one namespace, so that they stay short.

``from medssl.course import notebook as ch`` gives the week context :class:`~medssl.course.week.WeekRun`,
the README builder and tables (:mod:`~medssl.course.readme`), the lesson figures
(:mod:`~medssl.course.lessons`), the Weeks 9-10 generators (:mod:`~medssl.course.writeup`), and the small
helpers defined here: the exercises' self-checks, reading a run's JSON, and choosing a variant on validation.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .environment import device_banner, drive_folder, environment, in_colab, smoke_from_env
from .lessons import (
    HIGH_CONFIDENCE,
    bar_figure,
    error_taxonomy_table,
    fraction_figure,
    gallery_captions,
    grouped_error_gallery,
    misclassified,
)
from .readme import Readme, markdown_table, metrics_rows, run_facts
from .week import WeekRun
from .week_jobs import config_defaults, same_settings
from .writeup import draft_skeleton, missing_pieces, reproducibility_checklist


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


__all__ = ["HIGH_CONFIDENCE", "Readme", "WeekRun", "bar_figure", "best_by_val_auroc", "config_defaults",
           "device_banner", "draft_skeleton", "drive_folder", "environment", "error_taxonomy_table",
           "fraction_figure", "gallery_captions", "grouped_error_gallery", "in_colab", "load_json", "markdown_table",
           "metrics_rows", "misclassified", "missing_pieces", "reproducibility_checklist", "run_facts",
           "same_settings", "self_check", "smoke_from_env"]
