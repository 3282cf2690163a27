"""nbval runs of the weekly notebooks' instructor edition (``pytest --nbval-lax ... notebooks/``).

nbval runs ``notebooks/solutions/Week*.ipynb``, the instructor edition: exercises
filled in, outputs of a smoke-mode build kept, every self-check PASS. The student
edition (``notebooks/Week*.ipynb``) has no outputs to compare and is not
collected here; ``tests/test_editions.py`` runs it on the library's fallback.

The committed notebooks are executed as they are, so their parameters cells
must switch to smoke mode by themselves: ``MEDSSL_SMOKE=1`` does that. Their
results go to a fresh temporary folder (``MEDSSL_RESULTS_ROOT``), shared by all
weeks of the session so that Week 5 finds Week 4's encoder. Only the cells
tagged ``nbval-check-output`` are compared with the committed outputs (after
``nbval_sanitize.cfg``); every other cell just has to run without error.

The notebooks need the real BreastMNIST file (their default dataset): without it
in ``$MEDMNIST_ROOT`` (or medmnist's cache) every notebook is skipped. A file that is
there but corrupt (MD5) or unreadable fails every notebook with the library's message.
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

NBVAL_NOTEBOOKS = "solutions/Week*.ipynb"  # the instructor edition; others opt in by matching this pattern


def pytest_ignore_collect(collection_path: Path, config):
    if collection_path.suffix == ".ipynb" and not collection_path.match(NBVAL_NOTEBOOKS):
        return True
    return None


_BROKEN_DATA: list[str] = []  # the library's message when breastmnist.npz is there but unusable


def _breast_problem() -> tuple[str, str] | None:
    """``None`` when the verified breastmnist.npz is in the data root, else ``(action, reason)``.

    Only an absent file skips the notebooks (``"skip"``). A file that is there but fails its MD5
    check or cannot be read is ``"fail"`` with the library's own message: a broken data root must
    fail the run, not look like a machine without the data.
    """
    from medssl.data import data_root, ensure_file
    from medssl.errors import DatasetNotAvailableError

    try:
        ensure_file("breastmnist", download=False)
    except DatasetNotAvailableError:
        return "skip", (f"breastmnist.npz not in {data_root()}: the notebooks run on real data; "
                        "set MEDMNIST_ROOT to run them")
    except Exception as exc:  # corrupt (MD5), unreadable, ...: report it, never skip
        return "fail", f"{type(exc).__name__}: {exc}"
    return None


def pytest_collection_modifyitems(config, items):
    problem = _breast_problem()
    if problem is None:
        return
    action, reason = problem
    if action == "fail":
        _BROKEN_DATA[:] = [reason]
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Fail each notebook at once (before a kernel starts) when the data file is there but broken."""
    if _BROKEN_DATA and str(item.fspath).endswith(".ipynb"):
        pytest.fail(f"the notebooks' data file is unusable: {_BROKEN_DATA[0]}", pytrace=False)
