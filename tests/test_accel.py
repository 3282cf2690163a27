"""The CUDA speed switches are exact no-ops on CPU (CPU stays a first-class target)."""

from __future__ import annotations

import pytest
import torch

from medssl import accel
from medssl.models import build_model


def test_switches_leave_cpu_objects_alone():
    model = build_model("smallcnn", 2, 1)
    x = torch.randn(4, 1, 28, 28)
    assert accel.channels_last(model) is model
    assert accel.channels_last(x) is x and x.is_contiguous()
    assert not accel.fused_ok(model.parameters())
    assert not accel.fused_ok([])
    with accel.autocast("cpu"):
        assert model(x).dtype == torch.float32
    assert accel.maybe_compile(model, False) is model


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_switches_on_cuda():
    model = build_model("smallcnn", 2, 1).cuda()
    accel.channels_last(model)
    x = accel.channels_last(torch.randn(4, 1, 28, 28, device="cuda"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert accel.fused_ok(model.parameters())
    with accel.autocast("cuda"):
        assert model(x).dtype == torch.bfloat16
