"""nbval runs of the weekly notebooks (``pytest --nbval-lax ... notebooks/``).

The committed notebooks are executed as they are, so their parameters cells
must switch to smoke mode by themselves: ``MEDSSL_SMOKE=1`` does that. Their
results go to a fresh temporary folder (``MEDSSL_RESULTS_ROOT``), shared by all
weeks of the session so that Week 5 finds Week 4's encoder. Only the cells
marked ``# NBVAL_CHECK_OUTPUT`` are compared with the committed outputs (after
``nbval_sanitize.cfg``); every other cell just has to run without error.

The notebooks need the real BreastMNIST file (their default dataset): without it
in ``$MEDMNIST_ROOT`` (or medmnist's cache) every notebook is skipped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ["MEDSSL_SMOKE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MEDSSL_RESULTS_ROOT", str(Path(tempfile.mkdtemp(prefix="medssl-nbval-")) / "results"))

NBVAL_NOTEBOOKS = "Week*.ipynb"  # the course notebooks; others opt in by matching this pattern


def pytest_ignore_collect(collection_path: Path, config):
    if collection_path.suffix == ".ipynb" and not collection_path.match(NBVAL_NOTEBOOKS):
        return True
    return None


def _breast_available() -> bool:
    try:
        from medssl.data import ensure_file

        ensure_file("breastmnist", download=False)
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if _breast_available():
        return
    from medssl.data import data_root

    skip = pytest.mark.skip(reason=f"breastmnist.npz not in {data_root()}: the notebooks run on real data; "
                                   "set MEDMNIST_ROOT to run them")
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(skip)
