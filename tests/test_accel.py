"""Precision policy, fp32 evaluation, determinism and device switches (medssl.accel).

CPU tests run everywhere (GPUs are described by mocking ``torch.cuda``); the
tests marked ``cuda`` need a real GPU and are skipped without one. The CUDA
code paths without a GPU are in ``test_fake_cuda.py``.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import torch
import torch.cuda.amp.common as amp_common

from medssl import accel
from medssl.calibration import calibration_metrics, softmax
from medssl.data import TensorSplit, load_split, load_splits
from medssl.errors import ConfigError
from medssl.models import build_model
from medssl.train import LossTracker, TrainConfig, load_classifier, predict_logits, run, train_one_epoch

GPUS = {"T4": (7, 5), "V100": (7, 0), "A100": (8, 0), "H100": (9, 0)}
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def gpu(monkeypatch):
    """``gpu("T4")`` makes torch.cuda describe that GPU (capability; AMP available); no CUDA call is made."""
    def describe(name: str) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: GPUS[name])
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
        monkeypatch.setattr(amp_common, "amp_definitely_not_available", lambda: False)
    return describe


@pytest.fixture
def global_flags():
    """Restore PyTorch's global determinism / TF32 switches and CUBLAS_WORKSPACE_CONFIG after a test."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved[2:6]
    if saved[6] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[6]


# ------------------------------------------------------------------ the precision policy
@pytest.mark.parametrize("name,expected", [("T4", torch.float16), ("V100", torch.float16),
                                           ("A100", torch.bfloat16), ("H100", torch.bfloat16)])
def test_amp_dtype_follows_the_gpu(gpu, name, expected):
    gpu(name)
    assert accel.amp_dtype("cuda") is expected
    assert accel.amp_dtype(torch.device("cuda", 0), "auto") is expected
    assert accel.amp_dtype("cuda", "fp32") is None                 # --precision fp32: no autocast anywhere
    scaler = accel.grad_scaler("cuda")
    assert scaler.is_enabled() == (expected is torch.float16)      # loss scaling exactly where fp16 is used
    assert not accel.grad_scaler("cuda", "fp32").is_enabled()
    ctx = accel.autocast("cuda")
    assert ctx.device == "cuda" and ctx.fast_dtype is expected and ctx._enabled
    assert not accel.autocast("cuda", "fp32")._enabled
    d = accel.describe("cuda", "auto")
    assert d["amp_dtype"] == accel.amp_name(expected) and d["grad_scaler"] == (expected is torch.float16)
    assert d["compute_capability"] == ".".join(map(str, GPUS[name])) and d["eval_dtype"] == "fp32"


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_cpu_and_mps_train_in_fp32(device, monkeypatch):
    def no_cuda(*a, **k):
        raise AssertionError("the CPU/MPS policy must not ask CUDA anything")
    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    for precision in ("auto", "fp32"):
        assert accel.amp_dtype(device, precision) is None
        assert not accel.grad_scaler(device, precision).is_enabled()
        assert not accel.autocast(device, precision)._enabled
    assert accel.describe(device) == {"precision": "auto", "amp_dtype": "fp32", "grad_scaler": False,
                                      "eval_dtype": "fp32", "deterministic": False, "device": device}


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32"):
        accel.amp_dtype("cpu", "bf16")
    with pytest.raises(ConfigError, match="--precision"):
        TrainConfig("synthetic", precision="fp16").validate()


def test_switches_leave_cpu_objects_alone():
    model = build_model("smallcnn", 2, 1)
    x = torch.randn(4, 1, 28, 28)
    assert accel.channels_last(model) is model
    assert accel.channels_last(x) is x and x.is_contiguous()
    assert accel.to_device(model, "cpu") is model
    assert not accel.fused_ok(model.parameters())
    assert not accel.fused_ok([])
    with accel.autocast("cpu"):
        assert model(x).dtype == torch.float32
    assert accel.maybe_compile(model, False) is model
    assert accel.free_memory("cpu") is None


def test_tf32_is_off_for_fp32_training_and_for_evaluation(global_flags):
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    with accel.training_math("cuda", "fp32"):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32      # restored
    with accel.training_math("cuda", "auto"):
        assert torch.backends.cudnn.allow_tf32                  # auto keeps PyTorch's defaults
    with accel.fp32_eval("cuda"):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32
    with accel.fp32_eval("cpu"), accel.training_math("cpu", "fp32"):
        assert torch.backends.cudnn.allow_tf32                  # nothing to switch on a CPU


# ------------------------------------------------------------------ determinism
def test_set_deterministic_switches_everything_on_and_back_off(global_flags):
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    accel.set_deterministic(True, "cuda")
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    accel.set_deterministic(False, "cuda")
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark    # autotuning on CUDA
    accel.set_deterministic(False, "cpu")
    assert not torch.backends.cudnn.benchmark


def test_every_run_applies_its_determinism_setting(synth_root, tmp_path, global_flags, monkeypatch):
    seen = []
    real = accel.set_deterministic

    def spy(enabled, device=None):
        seen.append((enabled, str(device)))
        real(enabled, device)
    monkeypatch.setattr(accel, "set_deterministic", spy)
    cfg = TrainConfig("synthetic", epochs=1, root=str(synth_root), progress=False, device="cpu",
                      deterministic=True, label_frac=0.25)
    res = run(cfg, tmp_path / "run")
    assert seen == [(True, "cpu")]
    assert res["numerics"] == {"precision": "auto", "amp_dtype": "fp32", "grad_scaler": False, "eval_dtype": "fp32",
                               "deterministic": True, "device": "cpu"}
    assert res["config"]["precision"] == "auto" and res["config"]["deterministic"] is True
    assert json.loads((tmp_path / "run" / "config.json").read_text())["numerics"] == res["numerics"]


# ------------------------------------------------------------------ config fields and CLI flags
def test_configs_and_commands_take_precision_and_deterministic(tmp_path):
    from medssl import efficiency, paradigms, pretrain, probe, train

    for cls, kw in ((train.TrainConfig, {}), (pretrain.SSLConfig, {}), (probe.DownstreamConfig, {}),
                    (efficiency.GridConfig, {}), (paradigms.Seed000Config, {}), (paradigms.RecipeConfig, {}),
                    (paradigms.SurveyConfig, {"datasets": ["synthetic"]})):
        args = kw or {"dataset": "synthetic"}
        assert cls(**args).precision == "auto" and cls(**args).deterministic is False, cls.__name__
        c = cls(**args, precision="fp32", deterministic=True)
        assert c.precision == "fp32" and c.deterministic, cls.__name__
    # what is set on the outer config reaches the training runs it starts
    d = probe.DownstreamConfig("synthetic", backbone="smallcnn", precision="fp32", deterministic=True)
    t = probe.finetune_config("scratch", d, 0.1, 0, 10, "smallcnn")
    assert t.precision == "fp32" and t.deterministic
    s0 = paradigms.Seed000Config("synthetic", precision="fp32", deterministic=True)
    assert s0.train_config("synthetic", tmp_path, 1.0).precision == "fp32"
    assert paradigms.RecipeConfig("synthetic", precision="fp32").train_config("synthetic", 0, False, 1.0).precision \
        == "fp32"
    flags = ["--precision", "fp32", "--deterministic"]
    common = ["--dataset", "synthetic", "--out", str(tmp_path / "x")]
    for mod in (train, pretrain, probe, efficiency):
        cfg = mod.config_from_args(mod.build_parser().parse_args(common + flags))
        assert cfg.precision == "fp32" and cfg.deterministic is True, mod.__name__
        cfg = mod.config_from_args(mod.build_parser().parse_args(common))
        assert cfg.precision == "auto" and cfg.deterministic is False, mod.__name__
        with pytest.raises(SystemExit):
            mod.build_parser().parse_args(common + ["--precision", "bf16"])
    a = paradigms.build_parser().parse_args(["recipe"] + common + flags)
    assert a.precision == "fp32" and a.deterministic


# ------------------------------------------------------------------ training loop bookkeeping
def test_loss_tracker_is_the_same_float64_sum_as_item_and_flags_the_first_bad_step():
    losses = [torch.tensor(v, dtype=torch.float32) for v in (0.7, 0.123456789, 2.5)]
    sizes = [64, 64, 17]
    t = LossTracker("cpu")
    for loss, n in zip(losses, sizes):
        t.add(loss, n)
    expected = 0.0
    for loss, n in zip(losses, sizes):
        expected += loss.item() * n
    assert t.finish() == (expected / sum(sizes), None)           # bit-identical to the old per-step .item()
    t.add(torch.tensor(float("nan")), 8)
    t.add(torch.tensor(float("inf")), 8)
    mean, bad = t.finish()
    assert bad[0] == 4 and np.isnan(bad[1])                      # the first non-finite step, not the last


def _tiny_batches(n_batches=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 2, (16,), generator=g))
            for _ in range(n_batches)]


def _params_after(scaler, batches, seed=0):
    torch.manual_seed(seed)
    model = build_model("smallcnn", 2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_one_epoch(model, batches, len(batches), opt, device=torch.device("cpu"), progress=False, scaler=scaler)
    return [p.detach().clone() for p in model.parameters()], opt


@pytest.mark.skipif(not hasattr(torch.amp, "GradScaler"), reason="a CPU GradScaler needs torch >= 2.3")
def test_training_loop_goes_through_the_grad_scaler():
    """The fp16 path: scale -> backward -> unscale/inf check -> step -> update, every step (on CPU, no autocast)."""
    batches = _tiny_batches()
    plain, _ = _params_after(None, batches)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaled, _ = _params_after(scaler, batches)
    # scaling by a power of two and back is exact: the same steps as without a scaler
    assert all(torch.equal(a, b) for a, b in zip(plain, scaled))
    assert scaler.get_scale() == 2.0**10                         # no overflow, growth only after 2000 steps
    # a step whose gradients overflow is skipped and the scale backs off
    overflow = torch.amp.GradScaler("cpu", init_scale=float("inf"))
    torch.manual_seed(0)
    start = [p.detach().clone() for p in build_model("smallcnn", 2, 1).parameters()]
    after, opt = _params_after(overflow, batches[:1])
    assert all(torch.equal(a, b) for a, b in zip(start, after)) and not opt.state


def test_nan_loss_stops_the_epoch_with_the_step_that_failed():
    batches = _tiny_batches(4)
    x, y = batches[2]
    batches[2] = (x * float("nan"), y)
    model = build_model("smallcnn", 2, 1)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(ConfigError, match=r"training loss became nan at step 3 \(train\); lower --lr"):
        train_one_epoch(model, batches, 4, opt, device=torch.device("cpu"), progress=False)


# ------------------------------------------------------------------ everything saved or scored is fp32
def fp32_reference(model, images, features=False):
    """An independent float32 forward pass: a copy of the model, eval mode, no autocast, no library code."""
    m = copy.deepcopy(model).float().eval().cpu()
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        x = (torch.from_numpy(np.asarray(images)).float() / 255.0 - 0.5) / 0.5
        out = m.encoder(x) if features else m(x)
    return out.numpy()


def test_predictions_and_features_ignore_a_callers_autocast(synth_root):
    from medssl.probe import extract_features

    torch.manual_seed(0)
    model = build_model("smallcnn", 2, 1)
    splits = load_splits("synthetic", root=synth_root)
    images = splits["test"].images
    plain = predict_logits(model, images)
    with torch.autocast("cpu", dtype=torch.bfloat16):             # e.g. a notebook cell left in autocast
        under = predict_logits(model, images)
        feats = extract_features(model, {"test": splits["test"]})["test"]
    assert np.array_equal(plain, under) and under.dtype == np.float32
    np.testing.assert_allclose(under, fp32_reference(model, images), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats, fp32_reference(model, images, features=True), rtol=1e-5, atol=1e-6)


def test_saved_outputs_are_fp32_even_when_training_is_reduced_precision(synth_root, tmp_path, monkeypatch):
    """Train under bf16 autocast (what a GPU does), then check that every saved or scored number is fp32.

    predictions.npz (val/test logits, TTA probabilities), Week 7's recomputation from
    best.pt and Week 8's clean row must all equal an independent fp32 recomputation.
    """
    from medssl import decisions, robustness
    from medssl.recipes import tta_transforms

    used = []

    def bf16_training(device, precision="auto"):
        used.append(torch.device(device).type)
        return torch.autocast("cpu", dtype=torch.bfloat16)
    monkeypatch.setattr(accel, "autocast", bf16_training)
    cfg = TrainConfig("synthetic", epochs=1, root=str(synth_root), progress=False, device="cpu", tta="standard")
    run(cfg, tmp_path / "run")
    assert used and set(used) == {"cpu"}                          # training did run under the bf16 policy
    saved = np.load(tmp_path / "run" / "predictions.npz")
    model, _ = load_classifier(tmp_path / "run" / "best.pt")
    splits = load_splits("synthetic", root=synth_root)
    for split in ("val", "test"):
        ref = fp32_reference(model, splits[split].images)
        np.testing.assert_allclose(saved[f"{split}_logits"], ref, rtol=1e-5, atol=1e-5)
        # a bf16 forward pass is visibly different: the tolerance above would catch evaluation under autocast
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(torch.from_numpy(splits[split].images).float().div(255).sub(0.5).div(0.5)).float().numpy()
        assert np.abs(low - ref).max() > 1e-4
    # flips and edge-replicated shifts only move pixels, so they can be applied to the uint8 images first
    transforms = tta_transforms("standard", "ultrasound", 28)
    pixels = torch.from_numpy(splits["test"].images).float()
    ref_tta = np.mean([softmax(fp32_reference(model, t(pixels).to(torch.uint8).numpy())) for t in transforms], axis=0)
    np.testing.assert_allclose(saved["test_probs_tta"], ref_tta, rtol=1e-5, atol=1e-6)
    w7 = decisions.load_predictions(tmp_path / "run" / "best.pt", device="cpu")
    np.testing.assert_allclose(w7.test_logits, saved["test_logits"], rtol=1e-6, atol=1e-6)
    w8 = robustness.evaluate_run_shifts(tmp_path / "run", None, perturbations=["gaussian_blur"],
                                        severities={"gaussian_blur": {"mild": 0.5}}, device="cpu")
    clean = w8["table"].iloc[0]
    m6 = calibration_metrics(softmax(saved["test_logits"]), saved["test_labels"], 0, 15)
    for k in ("acc", "auroc", "ece"):
        assert clean[k] == pytest.approx(m6[k], abs=1e-9), k      # Weeks 6 and 8 agree on the same model


def test_plain_torch_load_of_a_checkpoint_gives_cpu_tensors(synth_root, tmp_path):
    cfg = TrainConfig("synthetic", epochs=1, root=str(synth_root), progress=False, label_frac=0.25)
    run(cfg, tmp_path / "run")
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=False)     # no map_location
    tensors = [v for v in ck["model_state"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


# ------------------------------------------------------------------ Week 7/8 use the caller's device
def test_week7_and_week8_recompute_on_the_auto_device_by_default(monkeypatch, tmp_path):
    """evaluate_run_shifts and decisions' recomputation from best.pt used to be pinned to the CPU."""
    from medssl import decisions, robustness, train
    from medssl.utils import resolve_device

    asked = []

    def fake_load_run(run, dataset=None, root=None, device="cpu", splits=("val", "test")):
        asked.append(device)
        raise RuntimeError("stop here")
    monkeypatch.setattr(train, "load_run", fake_load_run)
    (tmp_path / "best.pt").write_bytes(b"")
    for call in (lambda: robustness.evaluate_run_shifts(tmp_path, None),
                 lambda: decisions.load_predictions(tmp_path / "best.pt"),
                 lambda: robustness.evaluate_run_shifts(tmp_path, None, device="cpu")):
        with pytest.raises(RuntimeError, match="stop here"):
            call()
    assert asked == [resolve_device("auto"), resolve_device("auto"), torch.device("cpu")]


# ------------------------------------------------------------------ on a real GPU
@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_switches_on_cuda():
    model = accel.to_device(build_model("smallcnn", 2, 1), "cuda")
    assert next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    x = accel.channels_last(torch.randn(4, 1, 28, 28, device="cuda"))
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert accel.fused_ok(model.parameters())
    expected = accel.amp_dtype("cuda")
    assert expected is (torch.bfloat16 if torch.cuda.get_device_capability()[0] >= 8 else torch.float16)
    with accel.autocast("cuda"):
        assert model(x).dtype == expected
    with accel.autocast("cuda"), accel.fp32_eval("cuda"):
        assert model(x).dtype == torch.float32


@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_run_on_cuda_saves_fp32_predictions_and_a_cpu_checkpoint(synth_root, tmp_path):
    cfg = TrainConfig("synthetic", epochs=2, root=str(synth_root), progress=False, device="cuda")
    res = run(cfg, tmp_path / "run")
    assert res["device"] == "cuda" and res["numerics"]["amp_dtype"] == accel.amp_name(accel.amp_dtype("cuda"))
    ck = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert all(t.device.type == "cpu" for t in ck["model_state"].values())
    saved = np.load(tmp_path / "run" / "predictions.npz")
    test = load_split("synthetic", "test", root=synth_root)
    gpu_model, _ = load_classifier(tmp_path / "run" / "best.pt", "cuda")
    np.testing.assert_allclose(predict_logits(gpu_model, test.images), saved["test_logits"], rtol=1e-5, atol=1e-5)
    cpu_model, _ = load_classifier(tmp_path / "run" / "best.pt", "cpu")
    np.testing.assert_allclose(fp32_reference(cpu_model, test.images), saved["test_logits"], rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_fp16_path_with_grad_scaler_on_a_real_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))   # as on a T4
    batches = [(x.cuda(), y.cuda()) for x, y in _tiny_batches(3)]
    losses = {}
    for precision in ("auto", "fp32"):                   # auto on a T4 = float16 with the grad scaler
        torch.manual_seed(0)
        model = accel.to_device(build_model("smallcnn", 2, 1), "cuda")
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        scaler = accel.grad_scaler("cuda", precision)
        assert scaler.is_enabled() is (precision == "auto")
        losses[precision] = train_one_epoch(model, batches, 3, opt, device=torch.device("cuda"), progress=False,
                                            scaler=scaler, precision=precision)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # the reported loss is the unscaled one (a scaled loss would be ~65536x), and fp16 tracks fp32 closely
    assert abs(losses["auto"] - losses["fp32"]) < 0.05, losses


@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_deterministic_runs_repeat_exactly(synth_root, tmp_path):
    outs = []
    for name in ("a", "b"):
        cfg = TrainConfig("synthetic", epochs=2, root=str(synth_root), progress=False, device="cuda",
                          deterministic=True)
        outs.append(run(cfg, tmp_path / name))
    for k in ("acc", "auroc", "ece", "loss", "best_epoch"):
        assert outs[0][k] == outs[1][k], k
    a, b = np.load(tmp_path / "a" / "predictions.npz"), np.load(tmp_path / "b" / "predictions.npz")
    assert np.array_equal(a["test_logits"], b["test_logits"])


@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_split_staged_through_pinned_memory_gives_the_same_batches(synth_root, monkeypatch):
    data = load_split("synthetic", "train", root=synth_root)
    resident = TensorSplit(data, "cuda")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 1024))
    staged = TensorSplit(data, "cuda")
    assert resident.resident and not staged.resident and staged.x.device.type == "cpu"
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    for (x1, y1), (x2, y2) in zip(resident.batches(64, True, g1), staged.batches(64, True, g2)):
        assert x2.device.type == "cuda" and torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.cuda
@needs_gpu
@pytest.mark.usefixtures("global_flags")
def test_ssl_on_cuda(synth_root, tmp_path):
    from medssl.pretrain import SSLConfig
    from medssl.pretrain import run as pretrain_run

    for method in ("simclr", "moco"):
        cfg = SSLConfig("synthetic", method=method, backbone="smallcnn", epochs=1, batch_size=128,
                        root=str(synth_root), progress=False, device="cuda")
        rec = pretrain_run(cfg, tmp_path / method)
        assert rec["status"] == "done" and np.isfinite(rec["final_loss"])
        for name in ("ssl_encoder.pt", "ssl_proj_head.pt"):               # a plain torch.load, no map_location
            sd = torch.load(tmp_path / method / name, weights_only=False)["state_dict"]
            assert all(v.device.type == "cpu" for v in sd.values()), name
