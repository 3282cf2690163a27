"""Device, precision and speed switches, in one place; on CPU and Apple MPS every one is a no-op.

Precision (the one policy every training loop follows):

* :func:`amp_dtype` -- which autocast dtype training uses on a device:
  bfloat16 on CUDA GPUs of compute capability >= 8.0 (A100, L4, H100, RTX 30xx/40xx),
  float16 on older CUDA GPUs (T4 7.5, V100 7.0), and none (plain float32) on
  CPU and MPS or whenever ``precision="fp32"``;
* :func:`autocast` -- the matching autocast context for one training step;
* :func:`grad_scaler` -- the ``torch.amp.GradScaler`` that float16 needs (a
  disabled one, which changes nothing, for bf16 and fp32);
* :func:`training_math` -- with ``precision="fp32"`` on CUDA, TF32 off as well;
* :func:`fp32_eval` -- evaluation (everything saved or scored: logits,
  features, TTA, metrics) always runs in true float32, never under autocast or TF32.

Reproducibility: :func:`set_deterministic` (``--deterministic``).
Memory: :func:`free_memory`, :func:`to_device`.

Speed: :func:`channels_last` (NHWC layout for tensor-core convolutions),
:func:`fused_ok` (single-kernel optimizer steps) and :func:`maybe_compile`.

CPU stays a first-class target: students without a GPU, and CI, run exactly the
same code with these switched off, and get the same numbers as before they existed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from .errors import ConfigError

PRECISIONS = ("auto", "fp32")
# cuBLAS needs a fixed workspace for deterministic results (see the CUDA docs on reproducibility).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"
DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}


# ------------------------------------------------------------------ precision
def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError` saying what is allowed."""
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return precision


def amp_dtype(device: torch.device | str, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for *training* on ``device``, or ``None`` for plain float32.

    * ``precision="fp32"``, CPU and MPS: ``None`` (no autocast);
    * CUDA, compute capability >= 8.0 (Ampere and newer): ``torch.bfloat16`` -- native bf16
      tensor cores and fp32's exponent range, so no loss scaling is needed;
    * older CUDA GPUs (Colab's T4 is 7.5, V100 7.0): ``torch.float16`` -- they have fp16
      tensor cores but no bf16 ones (bf16 convolutions there fall back to slow kernels,
      and raise on torch < 2.3); fp16 needs :func:`grad_scaler`.

    Evaluation never uses this: see :func:`fp32_eval`.
    """
    check_precision(precision)
    device = torch.device(device)
    if precision == "fp32" or device.type != "cuda":
        return None
    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def amp_name(dtype: torch.dtype | None) -> str:
    """``"bf16"``, ``"fp16"`` or ``"fp32"`` (no autocast) for what :func:`amp_dtype` returned."""
    return DTYPE_NAMES[dtype]


def autocast(device: torch.device | str, precision: str = "auto"):
    """Autocast to :func:`amp_dtype` for one training step; a disabled context where that is ``None``.

    The disabled context on CUDA also switches off an autocast region the caller opened.
    """
    device = torch.device(device)
    dtype = amp_dtype(device, precision)
    if dtype is None:
        return torch.autocast("cuda" if device.type == "cuda" else "cpu", enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def grad_scaler(device: torch.device | str, precision: str = "auto") -> torch.amp.GradScaler:
    """A ``GradScaler`` that is enabled only when training autocasts to float16.

    float16 has a narrow exponent range: small gradients underflow to zero unless
    the loss is scaled up before ``backward`` (and the gradients scaled back
    before the step; steps with inf/NaN gradients are skipped). bf16 and fp32
    get a disabled scaler, whose ``scale(loss)`` is ``loss`` and whose
    ``step(opt)`` is ``opt.step()``, so one training loop serves every device::

        scaler.scale(loss).backward(); scaler.step(optimizer); scaler.update()
    """
    device = torch.device(device)
    enabled = amp_dtype(device, precision) == torch.float16
    if not hasattr(torch.amp, "GradScaler"):              # torch < 2.3: only the CUDA class exists
        return torch.cuda.amp.GradScaler(enabled=enabled)
    return torch.amp.GradScaler("cuda" if device.type == "cuda" else "cpu", enabled=enabled)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   scheduler=None) -> None:
    """One training step after the forward pass: backward through ``scaler``, the optimizer step, the schedule.

    With a disabled scaler (bf16 and fp32) this is ``loss.backward(); optimizer.step()``; with fp16 the loss
    is scaled and a step with inf/NaN gradients is skipped (see :func:`grad_scaler`).
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    if scheduler is not None:
        scheduler.step()


@contextmanager
def _tf32(device: torch.device | str, allowed: bool) -> Iterator[None]:
    """Set cuDNN's and cuBLAS's TF32 switches on CUDA for the block, then restore them (no-op elsewhere)."""
    if torch.device(device).type != "cuda":
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def training_math(device: torch.device | str, precision: str = "auto"):
    """Context for a training loop: with ``precision="fp32"`` on CUDA, TF32 is off too (true IEEE float32).

    With ``"auto"`` PyTorch's defaults stay (TF32 convolutions on Ampere and newer;
    most of the work runs under :func:`autocast` anyway).
    """
    check_precision(precision)
    return _tf32(device, allowed=False) if precision == "fp32" else nullcontext()


@contextmanager
def fp32_eval(device: torch.device | str) -> Iterator[None]:
    """Evaluation in true float32: no autocast, and on CUDA no TF32 in convolutions or matmuls.

    Everything the library saves or scores (logits, probe and embedding
    features, TTA probabilities, robustness metrics) is computed inside this,
    so a model gives the same numbers in Weeks 6, 7 and 8, whichever GPU
    trained it, and agrees with a float32 recomputation on CPU.
    """
    device = torch.device(device)
    if device.type != "cuda":
        with torch.autocast("cpu", enabled=False):    # also ends a CPU autocast region the caller opened
            yield
        return
    with _tf32(device, allowed=False), torch.autocast("cuda", enabled=False):
        yield


def describe(device: torch.device | str, precision: str = "auto", deterministic: bool = False) -> dict:
    """What a run actually used, to save next to its results (``"numerics"`` in the JSON files)."""
    device = torch.device(device)
    dtype = amp_dtype(device, precision)
    out = {"precision": precision, "amp_dtype": amp_name(dtype), "grad_scaler": dtype == torch.float16,
           "eval_dtype": "fp32", "deterministic": bool(deterministic), "device": str(device)}
    if device.type == "cuda":
        out["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        out["tf32_in_training"] = precision != "fp32" and bool(torch.backends.cudnn.allow_tf32)
    return out


def add_precision_args(p: argparse.ArgumentParser) -> None:
    """``--precision {auto,fp32}`` and ``--deterministic``, for every training command."""
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = bf16 autocast on CUDA >= 8.0 (A100/H100), fp16 + GradScaler on older CUDA (T4/V100), "
                        "fp32 on CPU/MPS; fp32 = no autocast and no TF32 anywhere. Evaluation is always fp32")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS kernels and no autotuning on CUDA (slower; see the README "
                        "on reproducibility)")


# ------------------------------------------------------------------ determinism
def set_deterministic(enabled: bool, device: torch.device | str | None = None) -> None:
    """Switch PyTorch's deterministic mode on or off for the run that is starting.

    On: ``cudnn.deterministic = True``, ``cudnn.benchmark = False``,
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` and
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an operation
    without a deterministic kernel prints a warning instead of stopping the run).
    Off: deterministic algorithms off, and ``cudnn.benchmark`` on when ``device``
    is CUDA (cuDNN times the candidate kernels and keeps the fastest; which one
    wins can differ between runs, so results do too).

    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when the process first uses it, so in
    a notebook switch this on before any other GPU work.
    """
    if enabled:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC_WORKSPACE
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.benchmark = device is not None and torch.device(device).type == "cuda"


# ------------------------------------------------------------------ memory and placement
def free_memory(device: torch.device | str) -> int | None:
    """Free memory on a CUDA device in bytes (``torch.cuda.mem_get_info``); ``None`` elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def to_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move ``model`` to ``device`` in one conversion; on CUDA also into channels_last layout."""
    device = torch.device(device)
    if device.type == "cuda":
        return model.to(device=device, memory_format=torch.channels_last)
    return model.to(device)


# ------------------------------------------------------------------ speed
def channels_last(obj):
    """Put a module or a 4-D tensor that lives on CUDA in channels_last layout; anything else is returned as is."""
    if isinstance(obj, nn.Module):
        p = next(obj.parameters(), None)
        if p is not None and p.is_cuda:
            obj.to(memory_format=torch.channels_last)
        return obj
    if isinstance(obj, torch.Tensor) and obj.is_cuda and obj.ndim == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    return obj


def fused_ok(params: Iterable[torch.Tensor]) -> bool:
    """A fused AdamW/SGD step needs every parameter on CUDA in a floating dtype."""
    params = list(params)
    return bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled`` (shares parameters with ``model``)."""
    return torch.compile(model) if enabled else model
