"""Contracts of ``medssl.recipes`` that the older recipe tests left open (found by mutation testing).

The settings' checks and the messages a user reads, the defaults (MixUp's seed, the schedule's
cosine share, patience and ``min_lr``, the ``standard`` TTA preset), edge cases (a one-step
schedule, a one-pixel shift, one image, a model without parameters) and the numerics of
``probs_to_logits``. Each test names the bug it is there to catch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from medssl.errors import ConfigError
from medssl.recipes import (
    IDENTITY,
    CosineThenPlateau,
    MixUp,
    TTATransform,
    one_hot,
    predict_tta,
    predict_tta_tensor,
    probs_to_logits,
    shift_pixels,
    soft_cross_entropy,
    tta_transforms,
)


# --------------------------------------------------------------------- one_hot
def test_one_hot_of_valid_labels():
    torch.testing.assert_close(one_hot(torch.tensor([0, 2, 1]), 3), torch.eye(3)[[0, 2, 1]])
    assert one_hot(torch.tensor([], dtype=torch.long), 3).shape == (0, 3)


@pytest.mark.parametrize("labels,seen", [([0, 3], "[0, 3]"), ([-1, 1], "[-1, 1]"), ([-2, 5], "[-2, 5]")])
def test_one_hot_refuses_labels_outside_the_classes_with_the_range_it_saw(labels, seen):
    """On the CPU the library's message, not torch's: a label equal to K, or below 0 alone, is out of range."""
    with pytest.raises(ConfigError) as err:
        one_hot(torch.tensor(labels), 3)
    assert str(err.value) == f"labels must lie in [0, 2], got range {seen}."


# ----------------------------------------------------------------------- MixUp
def test_soft_cross_entropy_takes_the_class_axis_explicitly():
    """(N, K) logits: softmax over the classes, with no implicit-dimension warning on every training step."""
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    targets = F.one_hot(torch.arange(6) % 4, 4).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = soft_cross_entropy(logits, targets)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.arange(6) % 4).item(), rel=1e-6)


@pytest.mark.parametrize("alpha,n_classes,message", [
    (-0.1, 2, "MixUp alpha must be >= 0 (0 = off, 0.1-0.4 is usual), got -0.1."),
    (float("nan"), 2, "MixUp alpha must be >= 0 (0 = off, 0.1-0.4 is usual), got nan."),
    (0.2, 1, "MixUp needs at least 2 classes, got 1."),
])
def test_mixup_settings_are_checked_with_a_message(alpha, n_classes, message):
    with pytest.raises(ConfigError) as err:
        MixUp(alpha, n_classes)
    assert str(err.value) == message


def test_mixup_starts_empty_and_is_seeded_with_0_by_default():
    mix = MixUp(0.2, 4)
    assert mix.last_lam is None and mix.last_perm is None          # nothing mixed yet
    x, y = torch.randn(8, 1, 4, 4), torch.arange(8) % 4
    mix(x, y)
    assert mix.last_lam == float(np.random.default_rng(0).beta(0.2, 0.2))
    assert torch.equal(mix.last_perm, torch.randperm(8, generator=torch.Generator().manual_seed(0)))


def test_alpha_zero_hands_back_the_batch_itself():
    """MixUp off costs nothing: the very same tensor (no copy, no arithmetic), one-hot targets."""
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    off = MixUp(0.0, 3)
    xo, t = off(x, y)
    assert xo is x and off.last_lam == 1.0
    assert torch.equal(t, F.one_hot(y, 3).float())


@pytest.mark.skipif(not torch.backends.cuda.is_built(), reason="fake CUDA tensors need a CUDA build of PyTorch")
def test_mixup_pairs_a_cuda_batch_with_a_permutation_on_the_gpu():
    """The pairing is moved to the batch's device once; indexing a GPU batch with a CPU index copies it every
    step. Run on fake CUDA tensors (see tests/test_fake_cuda.py), no GPU needed."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.randn(6, 3, 8, 8, device="cuda")
        y = torch.arange(6, device="cuda") % 2
        mix = MixUp(0.4, 2, seed=0)
        xm, t = mix(x, y)
        assert mix.last_perm.device.type == "cuda"
        assert xm.device.type == t.device.type == "cuda" and tuple(t.shape) == (6, 2)


# -------------------------------------------------------------------- schedule
def _opt(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def _lr(opt) -> float:
    return opt.param_groups[0]["lr"]


def test_schedule_defaults():
    s = CosineThenPlateau(_opt(), steps_per_epoch=4, epochs=10)
    assert s.switch_epoch == 5 and s.switch_step == 20
    assert s.describe() == ("cosine per step for 5 epoch(s), then ReduceLROnPlateau(val loss, factor=0.5, "
                            "patience=3, min_lr=1e-06)")


@pytest.mark.parametrize("kwargs,message", [
    (dict(cosine_frac=1.5), "--cosine-frac must be in [0, 1], got 1.5."),
    (dict(cosine_frac=-0.5), "--cosine-frac must be in [0, 1], got -0.5."),
    (dict(factor=0.0), "--plateau-factor must be in (0, 1), got 0.0."),
    (dict(factor=1.0), "--plateau-factor must be in (0, 1), got 1.0."),
    (dict(patience=-1), "--plateau-patience must be >= 0, got -1."),
])
def test_schedule_settings_are_checked_with_a_message(kwargs, message):
    with pytest.raises(ConfigError) as err:
        CosineThenPlateau(_opt(), 2, 2, **kwargs)
    assert str(err.value) == message


def test_plateau_only_with_zero_patience_cuts_after_every_stalled_epoch_down_to_min_lr():
    """``cosine_frac=0`` (plateau-only) and ``patience=0`` are valid; the cuts stop at ``min_lr``."""
    opt = _opt(0.1)
    s = CosineThenPlateau(opt, steps_per_epoch=2, epochs=8, cosine_frac=0.0, factor=0.5, patience=0, min_lr=0.02)
    assert s.phase == "plateau"
    lrs = []
    for _ in range(8):
        for _ in range(2):
            opt.step()
            s.step()
        s.epoch_end(1.0)                                  # never improves
        lrs.append(_lr(opt))
    # epoch 1 sets the best; every later epoch is one bad epoch > patience 0: a cut, until min_lr
    assert lrs == pytest.approx([0.1, 0.05, 0.025, 0.02, 0.02, 0.02, 0.02, 0.02])


def test_a_one_step_cosine_ends_at_zero():
    opt = _opt(0.1)
    s = CosineThenPlateau(opt, steps_per_epoch=1, epochs=1, cosine_frac=1.0)
    opt.step()
    s.step()
    assert _lr(opt) == pytest.approx(0.0, abs=1e-12)       # 0.1 * (1 + cos(pi)) / 2
    assert CosineThenPlateau(_opt(), 3, 4).total_steps == 12


# ------------------------------------------------------------------------- TTA
def test_a_one_pixel_shift_moves_the_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    down = TTATransform("d", dy=1)(x)
    assert torch.equal(down[..., 1:, :], x[..., :3, :]) and torch.equal(down[..., 0, :], x[..., 0, :])
    left = TTATransform("l", dx=-1)(x)
    assert torch.equal(left[..., :, :3], x[..., :, 1:]) and torch.equal(left[..., :, 3], x[..., :, 3])
    flipped = TTATransform("v", vflip=True)(x)
    assert torch.equal(flipped, x.flip(-2)) and not torch.equal(flipped, x)


def test_shift_pixels_is_about_a_fourteenth_of_the_side_and_at_least_one():
    assert [shift_pixels(s) for s in (7, 14, 20, 21, 28, 64, 128, 224)] == [1, 1, 1, 2, 2, 5, 9, 16]


def test_the_default_tta_preset_is_standard_at_28_pixels():
    assert [t.name for t in tta_transforms()] == ["identity", "hflip", "shift_up_2px", "shift_down_2px",
                                                  "shift_left_2px", "shift_right_2px"]
    with pytest.raises(ConfigError) as err:
        tta_transforms("everything")
    assert str(err.value) == "unknown TTA preset 'everything'; choose one of none, flips, standard."


class ChannelMeans(nn.Module):
    """A model without parameters: logits = per-channel means of the (normalised) image."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_a_model_without_parameters_runs_on_the_device_it_is_given():
    imgs = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    x = (torch.from_numpy(imgs).double() / 255 - 0.5) / 0.5
    want = torch.softmax(x.mean(dim=(2, 3)), 1).numpy()
    np.testing.assert_allclose(predict_tta(ChannelMeans(), imgs, [IDENTITY], device="cpu"), want, atol=1e-6)
    every = predict_tta_tensor(ChannelMeans(), imgs, [IDENTITY, TTATransform("h", hflip=True)],
                               device=torch.device("cpu"))
    assert every.dtype == torch.float64 and tuple(every.shape) == (2, 4, 3)
    np.testing.assert_allclose(every[1].numpy(), want, atol=1e-6)           # a flip keeps channel means


def test_tta_needs_a_transform_and_an_image_and_takes_one_image():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)).train()
    imgs = np.zeros((1, 3, 8, 8), np.uint8)
    with pytest.raises(ConfigError) as err:
        predict_tta(model, imgs, [])
    assert str(err.value) == "TTA needs at least one transform (use [IDENTITY] for the plain prediction)."
    with pytest.raises(ConfigError) as err:
        predict_tta(model, imgs[:0], [IDENTITY])
    assert str(err.value) == "predict_tta got no images."
    assert model.training                                  # train mode restored after the error
    p = predict_tta(model, imgs, [IDENTITY])
    assert p.shape == (1, 2) and model.training


def test_probs_to_logits_are_float32_log_probabilities():
    p = np.array([[0.0, 0.25, 0.75]])
    out = probs_to_logits(p)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.log([[1e-12, 0.25, 0.75]]).astype(np.float32))
    # a float32 probability rounded just above 1 is still a log-probability <= 0
    above_one = np.nextafter(np.float32(1.0), np.float32(2.0))
    assert probs_to_logits(np.array([[above_one, 0.0]], np.float32))[0, 0] == 0.0
    # half-precision input: the floor of 1e-12 is applied in float64 (it would be 0, log 0 = -inf, in float16)
    half = probs_to_logits(np.array([[0.0, 1.0]], np.float16))
    assert np.isfinite(half).all() and half[0, 0] == np.float32(np.log(1e-12))
