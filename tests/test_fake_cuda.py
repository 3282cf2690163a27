"""The library's CUDA code paths, run on a machine without a GPU.

Under ``torch._subclasses.fake_tensor.FakeTensorMode`` a tensor can live on a
fake ``cuda`` device: every operator computes the output's shape, dtype and
device but no values, and an operator that mixes a CUDA tensor with a
(non-scalar) CPU tensor raises, exactly where a real GPU would. These tests
drive the library's own device code with ``device="cuda"``: ``train.run``,
``pretrain.run`` (SimCLR and MoCo), the prediction pass, TTA, the
host-memory fallback of ``TensorSplit`` and checkpoint saving, for smallcnn and
ResNet-18, under the three precision policies (fp16 + GradScaler on a T4,
bf16 on an H100, and ``--precision fp32``).

What is patched, and why (nothing in the library is):

* ``resolve_device`` in the run modules returns ``cuda`` (``torch.cuda.is_available``
  cannot be faked for the whole test: FakeTensorMode would then initialise a
  real CUDA context); ``resolve_device("auto")`` itself is shown to pick CUDA.
* ``torch.cuda.get_device_capability``, ``mem_get_info`` and ``is_bf16_supported``
  describe a T4 or an H100; autocast and GradScaler are told AMP is available.
* Models are *built* outside fake mode (a module whose parameters are already
  fake cannot be moved with ``Module.to``); the library then moves them.
* ``Tensor.backward`` is replaced by a walk over the autograd graph that gives
  every leaf it reaches a zero gradient of its own shape, dtype and device: the
  autograd engine itself needs a real CUDA device. Everything around it runs:
  GradScaler scaling, unscaling and its inf check, the fused optimizer step,
  schedulers, the loss bookkeeping.
* ``make_generator`` returns ``None`` for CUDA (``torch.Generator("cuda")``
  needs a real device); augmentation then draws from the global generator.

What these tests cannot cover: the numbers themselves; the backward kernels;
code that reads values on the host (``.item()``, ``int()``, numpy). A training
epoch therefore runs to its end and stops at its single host read, the
``LossTracker.finish`` call; the tests check that it got there after every
step (so no step reads a GPU value), and everything after it in a run (the
validation metrics, which are computed in numpy) is covered by the prediction
and TTA tests up to the numpy conversion. Fused SGD has no fake-tensor kernel,
so the runs use the default AdamW. The readable ``--loader dataset`` path is not
run: its per-image torchvision transforms draw random numbers and read them on
the host, on the CPU, before the batch goes to the GPU. A CPU generator used for
a CUDA random op is not caught by fake tensors.
"""

from __future__ import annotations

import json
import logging
import traceback
import warnings

import numpy as np
import pytest
import torch
import torch.cuda.amp.common as amp_common
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    FakeTensor,
    FakeTensorMode,
    unset_fake_temporarily,
)
from torch.optim.optimizer import register_optimizer_step_post_hook

from medssl import accel, data, pretrain, train, utils
from medssl.data import TensorSplit, load_split
from medssl.models import build_model
from medssl.recipes import predict_tta_tensor, tta_transforms

pytestmark = [
    pytest.mark.filterwarnings("ignore:Accessing the data pointer of FakeTensor:UserWarning"),
    # fake CUDA tensors need a PyTorch built with CUDA (PyPI's default Linux wheel); a GPU is not needed
    pytest.mark.skipif(not torch.backends.cuda.is_built(),
                       reason="this PyTorch is a CPU-only build; fake CUDA tensors need the default (CUDA) wheel"),
]

CUDA = torch.device("cuda")
GPUS = {"t4": (7, 5), "h100": (9, 0)}


def _fake_backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Stand-in for the autograd engine: a zero gradient for every leaf the graph reaches."""
    seen, todo = set(), [self.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)          # AccumulateGrad nodes hold the leaf tensor
        if leaf is not None:
            g = torch.zeros_like(leaf)
            leaf.grad = g if leaf.grad is None else leaf.grad + g
        todo.extend(fn for fn, _ in node.next_functions)


def _built_for_real(fn):
    def build(*args, **kwargs):
        with unset_fake_temporarily():
            return fn(*args, **kwargs)
    return build


class FakeCuda:
    """The patched world of one test: ``mode`` is the FakeTensorMode, ``steps`` the optimizer steps taken."""

    def __init__(self, mode: FakeTensorMode):
        self.mode = mode
        self.steps = 0
        self.bad_state: list[str] = []

    def check_optimizer(self, opt, args, kwargs) -> None:
        """Optimizer step hook: every parameter and every state tensor must stay on the GPU."""
        self.steps += 1
        for group in opt.param_groups:
            for p in group["params"]:
                if p.device.type != "cuda":
                    self.bad_state.append(f"parameter on {p.device}")
                for k, v in opt.state.get(p, {}).items():
                    if isinstance(v, torch.Tensor) and k != "step" and v.device.type != "cuda":
                        self.bad_state.append(f"optimizer state {k} on {v.device}")


@pytest.fixture
def fake_cuda(monkeypatch, request):
    gpu = getattr(request, "param", "h100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: GPUS[gpu])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (80 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(amp_common, "amp_definitely_not_available", lambda: False)
    with monkeypatch.context() as m:                      # resolve_device's own choice, with a GPU "visible"
        m.setattr(torch.cuda, "is_available", lambda: True)
        assert utils.resolve_device("auto") == CUDA
    for mod in (train, pretrain):
        monkeypatch.setattr(mod, "resolve_device", lambda device="auto": CUDA)
        monkeypatch.setattr(mod, "make_generator",
                            lambda seed, device="cpu": None if torch.device(device).type == "cuda"
                            else torch.Generator().manual_seed(seed))
        monkeypatch.setattr(mod, "build_model", _built_for_real(mod.build_model))
    monkeypatch.setattr(pretrain, "build_ssl_model", _built_for_real(pretrain.build_ssl_model))
    monkeypatch.setattr(torch.Tensor, "backward", _fake_backward)
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    world = FakeCuda(FakeTensorMode(allow_non_fake_inputs=True))
    hook = register_optimizer_step_post_hook(world.check_optimizer)
    try:
        yield world
    finally:
        hook.remove()
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = flags


def _stops_at_the_epoch_end(call) -> list[str]:
    """Run ``call``; it must stop with a DataDependentOutputException in ``LossTracker.finish``.

    Returns the library frames of the traceback (for the assertion message).
    """
    with pytest.raises(DataDependentOutputException) as info:
        call()
    frames = [f for f in traceback.extract_tb(info.value.__traceback__) if "medssl" in f.filename]
    assert frames and frames[-1].name == "finish", (
        "the epoch stopped at a host read before its end (a per-step sync?): "
        + " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(frames)))
    return [f.name for f in frames]


def _synthetic_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    load_split("synthetic", "train", root=root)           # writes the synthetic npz (real, outside fake mode)
    return root


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("fake_cuda,precision,amp", [("t4", "auto", "fp16"), ("h100", "auto", "bf16"),
                                                     ("h100", "fp32", "fp32")], indirect=["fake_cuda"])
@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
def test_supervised_training_steps_on_cuda(fake_cuda, tmp_path, arch, precision, amp):
    root = _synthetic_root(tmp_path)
    cfg = train.TrainConfig(dataset="synthetic", model=arch, epochs=1, batch_size=100, label_frac=0.5,
                            root=str(root), progress=False, precision=precision)
    assert accel.amp_name(accel.amp_dtype(CUDA, precision)) == amp
    scalers = []
    real_scaler = accel.grad_scaler

    def spy(device, precision="auto"):
        scalers.append(real_scaler(device, precision))
        return scalers[-1]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(accel, "grad_scaler", spy)
        with fake_cuda.mode:
            frames = _stops_at_the_epoch_end(lambda: train.run(cfg, tmp_path / "run"))
    assert frames[:3] == ["run", "fit", "train_one_epoch"]
    assert fake_cuda.steps == 2 and not fake_cuda.bad_state          # 200 labelled images / batch 100
    assert scalers and scalers[0].is_enabled() == (amp == "fp16")
    if amp == "fp16":
        assert scalers[0]._scale.device.type == "cuda"                 # the loss scale lives on the GPU
    numerics = json.loads((tmp_path / "run" / "config.json").read_text())["numerics"]   # written before training
    assert numerics["amp_dtype"] == amp and numerics["grad_scaler"] == (amp == "fp16")
    assert numerics["compute_capability"] == ".".join(map(str, GPUS["t4" if amp == "fp16" else "h100"]))


@pytest.mark.parametrize("fake_cuda", ["t4"], indirect=True)
def test_supervised_recipe_options_on_cuda(fake_cuda, tmp_path):
    """MixUp and cosine-then-plateau keep every step on the GPU, without syncs."""
    root = _synthetic_root(tmp_path)
    cfg = train.TrainConfig(dataset="synthetic", model="smallcnn", epochs=1, batch_size=100, root=str(root),
                            progress=False, mixup=0.2, scheduler="cosine-plateau")
    with fake_cuda.mode:
        _stops_at_the_epoch_end(lambda: train.run(cfg, tmp_path / "run"))
    assert fake_cuda.steps == 4 and not fake_cuda.bad_state


@pytest.mark.parametrize("fake_cuda", ["t4", "h100"], indirect=True)
@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_ssl_steps_on_cuda(fake_cuda, tmp_path, method, arch):
    root = _synthetic_root(tmp_path)
    cfg = pretrain.SSLConfig(dataset="synthetic", method=method, backbone=arch, epochs=1, batch_size=100,
                             root=str(root), progress=False, queue_size=400 if method == "moco" else None)
    with fake_cuda.mode:
        frames = _stops_at_the_epoch_end(lambda: pretrain.run(cfg, tmp_path / "ssl"))
    assert frames[:2] == ["run", "ssl_train_epoch"]
    # 400 unlabelled images / batch 100; MoCo's queue (400) is longer than the 200 keys of a step,
    # so every step goes through the pointer arithmetic of MoCo.enqueue
    assert fake_cuda.steps == 4 and not fake_cuda.bad_state


def test_moco_queue_update_stays_on_the_gpu(fake_cuda):
    """The queue pointer is advanced on the device (reading it used to sync every step)."""
    from medssl.ssl import MoCo

    c = build_model("smallcnn", 2, 1)
    m = MoCo(c.encoder, c.feature_dim, proj_dim=8, queue_size=16)
    with fake_cuda.mode:
        accel.to_device(m, CUDA)
        x = torch.rand(6, 1, 28, 28, device=CUDA)
        loss = m(x, x)
        assert loss.device.type == "cuda" and m.queue.device.type == "cuda" and m.queue_ptr.device.type == "cuda"
        assert isinstance(m.queue_ptr, FakeTensor)


# ------------------------------------------------------------------ evaluation
@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
def test_prediction_pass_on_cuda_is_fp32_and_returns_to_the_cpu(fake_cuda, arch):
    model = build_model(arch, 2, 1)
    head_dtypes = []
    model.head.register_forward_hook(lambda mod, inp, out: head_dtypes.append(out.dtype))
    images = np.zeros((10, 1, 28, 28), dtype=np.uint8)
    with fake_cuda.mode:
        accel.to_device(model, CUDA)
        with torch.autocast("cuda", dtype=torch.bfloat16):            # a caller's autocast must not leak in
            logits = train.predict_tensor(model, images, batch_size=4)
            feats = train.predict_tensor(model, images, batch_size=4, features=True)
    assert logits.device.type == "cpu" and logits.dtype == torch.float32 and tuple(logits.shape) == (10, 2)
    assert feats.device.type == "cpu" and tuple(feats.shape) == (10, model.feature_dim)
    assert head_dtypes == [torch.float32] * 3                          # 3 batches of at most 4, all fp32
    assert model.training                                              # train mode restored


@pytest.mark.parametrize("arch", ["smallcnn", "resnet18"])
def test_tta_on_cuda_is_fp32_and_returns_to_the_cpu(fake_cuda, arch):
    model = build_model(arch, 8, 3)
    head_dtypes = []
    model.head.register_forward_hook(lambda mod, inp, out: head_dtypes.append(out.dtype))
    transforms = tta_transforms("standard", "microscopy", 28)
    images = np.zeros((5, 3, 28, 28), dtype=np.uint8)
    with fake_cuda.mode:
        accel.to_device(model, CUDA)
        with torch.autocast("cuda", dtype=torch.float16):
            probs = predict_tta_tensor(model, images, transforms, batch_size=4)
    assert probs.device.type == "cpu" and probs.dtype == torch.float64
    assert tuple(probs.shape) == (len(transforms), 5, 8)
    assert head_dtypes == [torch.float32] * (2 * len(transforms))


# ------------------------------------------------------------------ data and checkpoints
def test_split_that_does_not_fit_stays_on_the_host(fake_cuda, tmp_path, monkeypatch):
    root = _synthetic_root(tmp_path)
    split = load_split("synthetic", "train", root=root)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = utils.get_logger()
    log.addHandler(handler)
    try:
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (split.images.nbytes, 2**34))
        with fake_cuda.mode:
            ts = TensorSplit(split, CUDA)
            batches = list(ts.batches(128, shuffle=True, generator=torch.Generator().manual_seed(0)))
            monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**34, 2**34))
            resident = TensorSplit(split, CUDA)
    finally:
        log.removeHandler(handler)
    assert not ts.resident and ts.x.device.type == "cpu" and ts.y.device.type == "cpu"
    assert len(batches) == 4 and all(x.device.type == y.device.type == "cuda" for x, y in batches)
    assert [len(y) for _, y in batches] == [128, 128, 128, 16]
    assert resident.resident and resident.x.device.type == "cuda"
    notes = [r.getMessage() for r in records]
    assert len(notes) == 1 and "host memory" in notes[0] and "pinned" in notes[0]
    assert data.split_fits(10, "cpu")                                   # no check (and no limit) off CUDA


def test_checkpoints_from_the_gpu_are_saved_as_cpu_tensors(fake_cuda, tmp_path, monkeypatch):
    from medssl.models import save_encoder

    saved = []
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: saved.append(obj))
    model = build_model("resnet18", 2, 1)
    with fake_cuda.mode:
        accel.to_device(model, CUDA)
        opt = torch.optim.AdamW(model.parameters())
        assert next(model.parameters()).device.type == "cuda"
        utils.save_torch({"model_state": model.state_dict(), "meta": model.meta, "opt": opt.state_dict(),
                          "nested": [{"t": torch.ones(2, device=CUDA)}]}, tmp_path / "best.pt")
        save_encoder(model, tmp_path / "ssl_encoder.pt")
    tensors = []

    def collect(obj):
        if isinstance(obj, torch.Tensor):
            tensors.append(obj)
        elif isinstance(obj, dict):
            for v in obj.values():
                collect(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                collect(v)

    collect(saved)
    assert len(saved) == 2 and len(tensors) > 100
    assert all(t.device.type == "cpu" for t in tensors)
    assert hasattr(saved[0]["model_state"], "_metadata")               # load_state_dict still sees the versions


def test_fake_mode_catches_a_tensor_on_the_wrong_device(fake_cuda):
    """The harness itself: mixing a CUDA tensor with a CPU one raises, as on a real GPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fake_cuda.mode:
            a = torch.ones(4, 3, device=CUDA)
            with pytest.raises(RuntimeError, match="device"):
                torch.nn.functional.cross_entropy(a, torch.zeros(4, dtype=torch.long))


def test_contrastive_losses_compute_similarities_in_float32_under_cuda_autocast(fake_cuda):
    """Similarities / tau overflow or round badly in bf16/fp16: the losses switch CUDA autocast off for them."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from medssl.ssl import info_nce_loss, nt_xent_loss

    class MatmulDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.bmm, torch.ops.aten.addmm):
                self.dtypes.append(out.dtype)
            return out

    with fake_cuda.mode:
        z1, z2 = torch.randn(8, 16, device=CUDA), torch.randn(8, 16, device=CUDA)
        queue = torch.randn(32, 16, device=CUDA)
        for loss_fn, args in ((nt_xent_loss, (z1, z2)), (info_nce_loss, (z1, z2, queue))):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                inside = MatmulDtypes()
                with inside:
                    loss = loss_fn(*args)
                plain = MatmulDtypes()
                with plain:                       # the test can see autocast: a bare matmul is bf16
                    z1 @ z2.t()
            assert plain.dtypes == [torch.bfloat16]
            assert inside.dtypes and set(inside.dtypes) == {torch.float32}, (loss_fn.__name__, inside.dtypes)
            assert loss.dtype == torch.float32
