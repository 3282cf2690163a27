"""MixUp, the cosine-then-plateau schedule, test-time augmentation, stem weight transfer and the train options."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tiny_data import tiny_synthetic

from medssl.calibration import softmax
from medssl.errors import ConfigError
from medssl.models import _adapt_first_conv, build_model
from medssl.recipes import (
    IDENTITY,
    CosineThenPlateau,
    MixUp,
    TTATransform,
    mix_targets,
    predict_tta,
    probs_to_logits,
    shift_pixels,
    soft_cross_entropy,
    tta_transforms,
)
from medssl.train import TrainConfig, cosine_schedule, predict_logits
from medssl.utils import resolve_device

K = 8


# ------------------------------------------------------------------ MixUp
def test_mixup_mixes_images_and_labels_with_the_same_lambda_and_pairing():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 8)
    y = torch.arange(16) % K
    mix = MixUp(0.2, K, seed=5)
    xm, t = mix(x, y)
    lam, perm = mix.last_lam, mix.last_perm
    assert 0.0 <= lam <= 1.0 and sorted(perm.tolist()) == list(range(16))
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm])
    expected = lam * F.one_hot(y, K).float() + (1 - lam) * F.one_hot(y[perm], K).float()
    assert torch.allclose(t, expected)
    assert torch.allclose(t.sum(1), torch.ones(16))
    # each row puts lam on its own label and 1 - lam on its partner's
    i = int(torch.nonzero(y != y[perm])[0])
    assert t[i, y[i]].item() == pytest.approx(lam) and t[i, y[perm[i]]].item() == pytest.approx(1 - lam)


def test_mixup_is_seeded_and_alpha_zero_is_off():
    x, y = torch.randn(8, 1, 4, 4), torch.arange(8) % 2
    a, b = MixUp(0.4, 2, seed=1), MixUp(0.4, 2, seed=1)
    for _ in range(3):
        xa, ta = a(x, y)
        xb, tb = b(x, y)
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
    off = MixUp(0.0, 2, seed=1)
    x0, t0 = off(x, y)
    assert torch.equal(x0, x) and torch.equal(t0, F.one_hot(y, 2).float())
    with pytest.raises(ConfigError):
        MixUp(-0.1, 2)


def test_small_alpha_keeps_most_batches_nearly_clean():
    """lambda ~ Beta(alpha, alpha): a Kolmogorov-Smirnov test against scipy's Beta(0.2, 0.2).

    Beta(0.2, 0.2) piles up near 0 and 1 (most batches nearly clean); Beta(0.4, 0.4), Beta(2, 2), the uniform
    and Beta(0.2, 1) are all rejected at 400 draws.
    """
    from scipy import stats

    lams = np.array([MixUp(0.2, 2, seed=s).sample_lam() for s in range(400)])
    assert stats.kstest(lams, stats.beta(0.2, 0.2).cdf).pvalue > 0.01
    for wrong in (stats.beta(0.4, 0.4), stats.beta(2, 2), stats.uniform(), stats.beta(0.2, 1.0)):
        assert stats.kstest(lams, wrong.cdf).pvalue < 1e-3
    assert np.mean(np.minimum(lams, 1 - lams) < 0.1) == pytest.approx(2 * stats.beta(0.2, 0.2).cdf(0.1), abs=0.07)


def test_soft_cross_entropy_equals_the_mixed_hard_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(10, K), torch.arange(10) % K
    perm, lam = torch.randperm(10), 0.3
    loss = soft_cross_entropy(logits, mix_targets(y, perm, lam, K))
    ref = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert soft_cross_entropy(logits, F.one_hot(y, K).float()).item() == pytest.approx(
        F.cross_entropy(logits, y).item(), rel=1e-6)


# ---------------------------------------------------------------- schedule
def _opt(lr=0.1):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_cosine_then_plateau_follows_the_cosine_then_cuts_on_stalled_val_loss():
    steps, epochs = 4, 10
    opt = _opt()
    s = CosineThenPlateau(opt, steps, epochs, cosine_frac=0.5, factor=0.5, patience=1)
    lrs = []
    for _ in range(epochs):
        for _ in range(steps):
            opt.step()
            s.step()
        s.epoch_end(1.0)                         # the validation loss never improves
        lrs.append(opt.param_groups[0]["lr"])
    at_switch = 0.1 * 0.5 * (1 + math.cos(math.pi * 20 / 40))
    assert lrs[4] == pytest.approx(at_switch)    # after 5 cosine epochs: the whole-run cosine at step 20
    assert s.phase == "plateau"
    # plateau: the first val loss sets the best; a cut once more than `patience` epochs in a row did not improve
    assert lrs[5] == pytest.approx(at_switch)
    assert lrs[6] == pytest.approx(at_switch * 0.5)
    assert lrs[7] == pytest.approx(at_switch * 0.5)
    assert lrs[8] == pytest.approx(at_switch * 0.25)


def test_cosine_frac_one_is_the_plain_cosine():
    o1, o2 = _opt(), _opt()
    a = CosineThenPlateau(o1, 3, 4, cosine_frac=1.0)
    b = cosine_schedule(o2, 12)
    for _ in range(12):
        o1.step()
        o2.step()
        a.step()
        b.step()
        a.epoch_end(0.0)
        assert o1.param_groups[0]["lr"] == pytest.approx(o2.param_groups[0]["lr"])


def test_schedule_rejects_bad_settings():
    with pytest.raises(ConfigError):
        CosineThenPlateau(_opt(), 2, 2, cosine_frac=1.5)
    with pytest.raises(ConfigError):
        CosineThenPlateau(_opt(), 2, 2, factor=1.0)


# --------------------------------------------------------------------- TTA
STANDARD_MICROSCOPY = ["identity", "hflip", "vflip", "shift_up_2px", "shift_down_2px", "shift_left_2px",
                       "shift_right_2px"]


def hand_view(x: np.ndarray, name: str, s: int = 2) -> np.ndarray:
    """A TTA view by index arithmetic: flips reverse an axis; a shift repeats the edge pixels it uncovers."""
    h, w = x.shape[-2:]
    if name == "identity":
        return x
    if name in ("hflip", "vflip"):
        return x[..., ::-1] if name == "hflip" else x[..., ::-1, :]
    dy, dx = {"up": (-s, 0), "down": (s, 0), "left": (0, -s), "right": (0, s)}[name.split("_")[1]]
    rows, cols = np.clip(np.arange(h) - dy, 0, h - 1), np.clip(np.arange(w) - dx, 0, w - 1)
    return x[..., rows[:, None], cols[None, :]]


def plain_tta(model: nn.Module, images: np.ndarray, names: list[str], s: int = 2) -> np.ndarray:
    """(views, N, K) softmax probabilities: a float64 copy of the model on hand-made views, no library code."""
    m = copy.deepcopy(model).double().eval()
    x = (np.asarray(images, dtype=np.float64) / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        return np.stack([torch.softmax(m(torch.from_numpy(np.ascontiguousarray(hand_view(x, n, s)))), 1).numpy()
                         for n in names])


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("smallcnn", K, 3).eval()


def test_tta_identity_is_the_plain_prediction(small_model):
    imgs = np.random.default_rng(0).integers(0, 256, (10, 3, 28, 28), dtype=np.uint8)
    p = predict_tta(small_model, imgs, [IDENTITY], batch_size=4)
    assert p.shape == (10, K)
    assert np.allclose(p, softmax(predict_logits(small_model, imgs)), atol=1e-6)
    assert np.allclose(softmax(probs_to_logits(p)), p, atol=1e-6)


def test_tta_return_all_is_consistent_with_the_mean(small_model):
    """Consistency (not correctness, see the next test): the default output is the mean of return_all's views."""
    imgs = np.random.default_rng(1).integers(0, 256, (6, 3, 28, 28), dtype=np.uint8)
    ts = tta_transforms("standard", "microscopy", 28)
    every = predict_tta(small_model, imgs, ts, return_all=True)
    mean = predict_tta(small_model, imgs, ts, batch_size=4)
    assert every.shape == (len(ts), 6, K) and mean.shape == (6, K)
    assert np.allclose(mean, every.mean(0))


def test_tta_views_and_mean_equal_a_hand_written_loop():
    """Each view's probabilities and their mean against the model run by hand on index-arithmetic views.

    The model is linear in the pixels with large random weights, so every view gets visibly different
    probabilities (a random smallcnn changes by < 1e-4 between views, which would hide a wrong transform).
    """
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, K))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.05)
    imgs = np.random.default_rng(1).integers(0, 256, (6, 3, 28, 28), dtype=np.uint8)
    ts = tta_transforms("standard", "microscopy", 28)
    assert [t.name for t in ts] == STANDARD_MICROSCOPY
    want = plain_tta(model, imgs, STANDARD_MICROSCOPY)
    assert min(np.abs(want[i] - want[0]).max() for i in range(1, len(ts))) > 0.05
    assert np.abs(want[3] - want[4]).max() > 0.05 and np.abs(want[5] - want[6]).max() > 0.05   # up != down
    np.testing.assert_allclose(predict_tta(model, imgs, ts, return_all=True), want, atol=1e-5)
    np.testing.assert_allclose(predict_tta(model, imgs, ts, batch_size=4), want.mean(0), atol=1e-5)


def test_tta_presets_depend_on_modality():
    names = lambda preset, mod: [t.name for t in tta_transforms(preset, mod, 28)]
    assert names("none", "microscopy") == ["identity"]
    assert len(names("standard", "microscopy")) == 7                 # as in the seed projects
    assert "vflip" not in names("standard", "xray") and len(names("standard", "xray")) == 6
    assert names("flips", "ultrasound") == ["identity", "hflip"]
    assert shift_pixels(28) == 2 and shift_pixels(64) == 5
    with pytest.raises(ConfigError):
        tta_transforms("everything")


def test_shift_moves_pixels_and_replicates_the_border():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    right = TTATransform("r", dx=1)(x)
    assert torch.equal(right[..., :, 1:], x[..., :, :3])              # content moved one pixel right
    assert torch.equal(right[..., :, 0], x[..., :, 0])                # edge column repeated
    down = TTATransform("d", dy=2)(x)
    assert torch.equal(down[..., 2:, :], x[..., :2, :])
    assert torch.equal(TTATransform("f", hflip=True)(TTATransform("f", hflip=True)(x)), x)


# ---------------------------------------------------------- stem transfer
def test_imagenet_stem_kernel_is_resized_into_the_3x3_stem(tmp_path):
    w7 = torch.randn(64, 3, 7, 7)
    w3 = _adapt_first_conv(w7, 3, 3)
    assert w3.shape == (64, 3, 3, 3)
    w1 = _adapt_first_conv(w7, 1, 3)
    assert w1.shape == (64, 1, 3, 3)
    # a grey image through the 1-channel stem responds exactly like its RGB copy through the 3-channel stem
    # (a mean over the colour channels instead of their sum would be 3 times too weak)
    grey = torch.randn(2, 1, 9, 9)
    torch.testing.assert_close(F.conv2d(grey, w1), F.conv2d(grey.repeat(1, 3, 1, 1), w3), rtol=1e-4, atol=1e-4)
    # known answer: a flat 7x7 kernel stays flat and keeps its sum (49 taps -> 9 taps)
    flat = torch.ones(1, 3, 7, 7) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(_adapt_first_conv(flat, 3, 3), flat[..., :3, :3] * 49 / 9)
    torch.testing.assert_close(_adapt_first_conv(flat, 1, 3), torch.full((1, 1, 3, 3), 6 * 49 / 9))
    # a smooth kernel keeps its response to a flat image (its sum) after the resize
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 7), torch.linspace(-1, 1, 7), indexing="ij")
    smooth = (1.0 + 0.3 * xx - 0.2 * yy).expand(64, 3, 7, 7).contiguous()
    assert torch.allclose(_adapt_first_conv(smooth, 3, 3).sum((1, 2, 3)), smooth.sum((1, 2, 3)), rtol=1e-4)

    # a stand-in for torchvision's ImageNet file: the full 7x7-stem state dict of a resnet18
    from torchvision.models import resnet18

    sd = resnet18(weights=None).state_dict()
    path = tmp_path / "fake_imagenet_resnet18.pth"
    torch.save(sd, path)
    model = build_model("resnet18", K, 3, input_size=28, stem="small", weights_path=path)
    enc = model.encoder
    assert enc.conv1.weight.shape == (64, 3, 3, 3) and enc.conv1.stride == (1, 1)
    assert isinstance(enc.maxpool, nn.Identity)
    assert torch.allclose(enc.conv1.weight, _adapt_first_conv(sd["conv1.weight"], 3, 3))
    assert torch.equal(enc.layer1[0].conv1.weight, sd["layer1.0.conv1.weight"])
    assert model.meta["init"] == f"file:{path.name}" and model(torch.zeros(2, 3, 28, 28)).shape == (2, K)


# ------------------------------------------------------- medssl.train options
def test_train_config_validates_the_new_options():
    for bad in (dict(select="loss"), dict(mixup=-1.0), dict(patience=-1), dict(scheduler="step"),
                dict(tta="all"), dict(cosine_frac=2.0), dict(plateau_factor=1.5)):
        with pytest.raises(ConfigError):
            TrainConfig(dataset="synthetic8", **bad).validate()
    d = TrainConfig(dataset="synthetic8")
    assert (d.select, d.mixup, d.patience, d.tta, d.as_rgb) == ("auroc", 0.0, 0, "none", False)


def test_early_stopping_stops_after_patience_epochs(tmp_path):
    from medssl.data import load_splits
    from medssl.registry import get_spec
    from medssl.train import fit

    root = tiny_synthetic(tmp_path)
    splits = load_splits("synthetic8", root=root)
    cfg = TrainConfig(dataset="synthetic8", epochs=6, batch_size=32, lr=1e-12, select="acc", patience=2,
                      progress=False, aug="none")
    torch.manual_seed(0)
    model = build_model("smallcnn", K, 3)
    history, _, best_epoch = fit(model, splits["train"], splits["val"], get_spec("synthetic8"), cfg,
                                 torch.device("cpu"))
    # with a vanishing LR the val accuracy cannot beat epoch 1 by much; training stops patience epochs later
    assert len(history) == best_epoch + 2 < 6


def test_train_cli_with_recipe_options(tmp_path):
    from medssl.cli import run_cli
    from medssl.train import load_classifier, main

    root = tiny_synthetic(tmp_path / "data")
    out = tmp_path / "run"
    args = ["--dataset", "synthetic8", "--root", str(root), "--model", "smallcnn", "--epochs", "2", "--batch-size",
            "32", "--select", "f1_macro", "--mixup", "0.2", "--scheduler", "cosine-plateau", "--patience", "5",
            "--tta", "standard", "--out", str(out), "--no-progress"]
    assert run_cli(main, args) == 0
    m = json.loads((out / "test_metrics.json").read_text())
    assert m["selected_on"] == "val f1_macro" and m["config"]["mixup"] == 0.2
    assert m["tta"]["transforms"][0] == "identity" and len(m["tta"]["transforms"]) == 7
    pz = np.load(out / "predictions.npz")
    probs = pz["test_probs_tta"]
    assert probs.shape == (32, K)
    assert m["tta"]["acc"] == pytest.approx(np.mean(probs.argmax(1) == pz["test_labels"]))
    # the saved TTA probabilities are those of best.pt, recomputed here without the library's TTA code: the
    # model run by hand on the seven index-arithmetic views of the test images, probabilities averaged
    model, _ = load_classifier(out / "best.pt")
    from medssl.data import load_split

    test = load_split("synthetic8", "test", root=root)
    np.testing.assert_array_equal(pz["test_labels"], test.labels)
    # trained on --device auto; recomputed on the CPU (a GPU run differs in the last float32 digits)
    tol = 1e-5 if resolve_device("auto").type == "cpu" else 1e-4
    want = plain_tta(model, test.images, STANDARD_MICROSCOPY).mean(0)
    np.testing.assert_allclose(probs, want, atol=tol)
    assert m["tta"]["acc"] == pytest.approx(np.mean(want.argmax(1) == test.labels))
    log = [json.loads(line) for line in (out / "val_log.jsonl").read_text().splitlines()]
    assert {"val_f1_macro", "lr_start", "lr_phase"} <= set(log[0])
    assert m["best_epoch"] == int(np.argmax([r["val_f1_macro"] for r in log])) + 1
