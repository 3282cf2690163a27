"""Helpers shared by the test modules (a plain module: ``conftest`` names are ambiguous with nbval's)."""

from __future__ import annotations

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
