"""Shared fixtures.

Real data: tests that need a real MedMNIST file look in the library's data root
(``$MEDMNIST_ROOT``, else medmnist's cache) and are skipped when it is absent.
Everything else runs on the synthetic sets (same npz layout), so the suite
passes on a fresh machine without any download.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

from pathlib import Path

import pytest
from datahelpers import real_file_available


@pytest.fixture
def synth_root(tmp_path: Path) -> Path:
    """A fresh data root in a temp folder (synthetic files are generated into it on demand)."""
    root = tmp_path / "medmnist"
    root.mkdir()
    return root


@pytest.fixture
def binary_data(synth_root: Path) -> tuple[str, Path | None]:
    """``(key, root)`` of a binary dataset: real BreastMNIST when present, else the synthetic set."""
    if real_file_available("breastmnist"):
        return "breastmnist", None
    return "synthetic", synth_root
