"""Small synthetic file sets for training tests (same generator as the library's, fewer images)."""

from __future__ import annotations

from pathlib import Path

from medssl.data import synthetic_arrays, write_npz
from medssl.registry import get_spec


def tiny_synthetic(root: Path, key: str = "synthetic8", sizes=(28,), n=(64, 32, 32)) -> Path:
    """Write ``key``'s npz files into ``root`` with only the first ``n`` = (train, val, test) images per split."""
    spec = get_spec(key)
    for size in sizes:
        full = synthetic_arrays(spec, size)
        arrays = {}
        for split, k in zip(("train", "val", "test"), n):
            arrays[f"{split}_images"] = full[f"{split}_images"][:k]
            arrays[f"{split}_labels"] = full[f"{split}_labels"][:k]
        write_npz(Path(root) / spec.filename(size), arrays)
    return Path(root)
