"""Small shared helpers: seeding, devices, atomic file writes, output folders."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, OutputExistsError

log = logging.getLogger("medssl")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not to the one there was at creation.

    Jupyter, papermill and pytest swap ``sys.stderr``; a handler holding the first one would write into a
    closed stream later ("--- Logging error ---") and the message would be lost.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def get_logger() -> logging.Logger:
    """The library logger, with a plain handler the first time it is asked for."""
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[medssl] %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def relative_path(path: str | os.PathLike, root: str | os.PathLike) -> str | None:
    """``path`` relative to ``root`` (POSIX separators) when it lies inside it, else None."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None


def display_path(path: str | os.PathLike) -> str:
    """A path for messages that does not depend on where the repository or a temp folder lives.

    From the ``results`` / ``runs`` folder on when the path has one (``results/week7/breastmnist/alice``),
    else relative to the working directory when it is below it, else the path as given.
    """
    p = Path(path)
    parts = p.parts
    for anchor in ("results", "runs"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return str(Path(*parts[i:]))
    below_cwd = relative_path(p, Path.cwd())
    return str(Path(below_cwd)) if below_cwd is not None else str(p)


# --------------------------------------------------------------------------- seeds
def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) in one call."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


# -------------------------------------------------------------------------- device
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) picks CUDA, then Apple MPS, then CPU; an explicit choice is checked."""
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is visible. "
            "Use --device auto (or cpu); in Colab pick Runtime > Change runtime type > GPU."
        )
    return torch.device(device)


# ------------------------------------------------------------------- progress bars
def progress_allowed(requested: bool = True) -> bool:
    """Whether to show a progress bar: ``requested``, unless ``TQDM_DISABLE`` is set in the environment.

    tqdm reads ``TQDM_DISABLE`` only as the default of ``disable``; an explicit
    ``disable=False`` wins over it. Batch runs (papermill, CI) set the variable
    and must get no bars, whatever a notebook or CLI asked for.
    """
    return requested and os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("1", "true", "yes")


def progress_bar(iterable=None, enabled: bool = True, **kwargs):
    """The library's one way to make a tqdm bar: shown when :func:`progress_allowed` says so."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_allowed(enabled), dynamic_ncols=True, **kwargs)


# ------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only on success.

    A crash halfway through writing never leaves a truncated file behind, and a
    reader never sees a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def to_jsonable(obj: Any) -> Any:
    """Round-trip through JSON so numpy/torch values become plain Python."""
    return json.loads(json.dumps(obj, default=_json_default))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file + rename), numpy/torch values converted."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one JSON line and flush it, so a crashed run keeps its log."""
    with open(path, "a") as fh:
        fh.write(json.dumps(obj, default=_json_default) + "\n")
        fh.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (through dicts, lists and tuples) moved to the CPU.

    Tensors already on the CPU are kept as they are (no copy), and a state
    dict's ``_metadata`` survives, so ``load_state_dict`` sees what it saved.
    """
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.detach().cpu()
    if isinstance(obj, dict):
        meta = getattr(obj, "_metadata", None)
        out = OrderedDict() if isinstance(obj, OrderedDict) or meta is not None else {}
        for k, v in obj.items():
            out[k] = to_cpu(v)
        if meta is not None:
            out._metadata = meta
        return out
    if type(obj) in (list, tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` atomically, with every tensor on the CPU.

    A checkpoint made on a GPU then loads with a plain ``torch.load`` on a
    machine without one (no ``map_location`` needed).
    """
    obj = to_cpu(obj)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


# ------------------------------------------------------------------ output folders
RUN_MARKERS = ("best.pt", "test_metrics.json", "val_log.jsonl", "ssl_encoder.pt", "ssl_config.json")


def prepare_out_dir(out: str | os.PathLike, overwrite: bool = False,
                    markers: tuple[str, ...] = RUN_MARKERS) -> Path:
    """Create ``out``; refuse to reuse a folder that already holds a run.

    With ``overwrite=True`` the old run's files are removed first, so the
    folder never mixes files from two runs.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is a file, not a folder. Choose another --out.")
    found = [m for m in markers if (out / m).exists()]
    if found and not overwrite:
        raise OutputExistsError(
            f"{out} already holds a previous run ({', '.join(found)}). "
            "Pick a new --out folder, or pass --overwrite to replace that run."
        )
    if found and overwrite:
        for child in out.iterdir():
            if child.is_file():
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of the values that are not None or NaN, e.g. one metric over
    seeds; the std is NaN for a single value, and both are NaN for none."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def check_fraction(frac: float, name: str = "label fraction") -> float:
    try:
        frac = float(frac)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1], got {frac!r}.") from None
    if not (0.0 < frac <= 1.0):
        hint = f" Did you mean {frac / 100:g}?" if 1.0 < frac <= 100.0 else ""
        raise ConfigError(f"{name} must be in (0, 1] (e.g. 0.1 for 10% of the labels), got {frac:g}.{hint}")
    return frac
