"""Speed switches for CUDA, in one place; every one is a no-op on CPU and Apple MPS.

* :func:`autocast` -- bf16 mixed precision on CUDA (full precision elsewhere);
* :func:`channels_last` -- NHWC memory layout for models and image batches on CUDA,
  which is what tensor-core convolutions want;
* :func:`fused_ok` -- whether a fused (single-kernel) optimizer step can be used;
* :func:`maybe_compile` -- ``torch.compile`` when asked for.

CPU stays a first-class target: students without a GPU, and CI, run exactly the
same code with these switched off.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def autocast(device: torch.device | str):
    """bf16 autocast on CUDA; a disabled context elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


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
