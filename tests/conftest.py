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

from medssl.data import data_root, ensure_file
from medssl.errors import MedSSLError


def real_file_available(key: str, size: int = 28) -> bool:
    """True when the verified official npz for ``key`` is in the data root (no download tried)."""
    try:
        ensure_file(key, size=size, download=False)
        return True
    except MedSSLError:
        return False


def requires_real(key: str, size: int = 28):
    return pytest.mark.skipif(not real_file_available(key, size),
                              reason=f"{key} ({size}px) not in {data_root()}; set MEDMNIST_ROOT to run real-data tests")


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
