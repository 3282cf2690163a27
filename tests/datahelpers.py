"""Helpers shared by the test modules (a plain module: ``conftest`` names are ambiguous with nbval's)."""

from __future__ import annotations

import pytest

from medssl.data import data_root, ensure_file
from medssl.errors import DatasetNotAvailableError


def real_file_available(key: str, size: int = 28) -> bool:
    """True when the verified official npz for ``key`` is in the data root (no download tried).

    False only when the file is absent. A file that is there but fails its MD5 check
    (:class:`~medssl.errors.CorruptDatasetError`) or cannot be read raises the library's
    error: a broken data root fails the suite loudly instead of skipping every real-data test.
    """
    try:
        ensure_file(key, size=size, download=False)
        return True
    except DatasetNotAvailableError:
        return False


def requires_real(key: str, size: int = 28):
    return pytest.mark.skipif(not real_file_available(key, size),
                              reason=f"{key} ({size}px) not in {data_root()}; set MEDMNIST_ROOT to run real-data tests")
