"""Augmentations: the batched path does what the spec says, like the readable path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from medssl.augment import AugSpec, BatchAugment, ssl_augmentation, supervised_augmentation
from medssl.errors import ConfigError


def images(n=64, size=28, channels=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def test_identity_spec_only_rescales():
    x = images()
    assert torch.equal(BatchAugment(AugSpec())(x), x.float() / 255)


def test_certain_flip_is_a_horizontal_flip_never_vertical():
    x = images(8)
    out = BatchAugment(AugSpec("flip", hflip=1.0))(x)
    assert torch.allclose(out, torch.flip(x, dims=[3]).float() / 255, atol=1e-5)


@pytest.mark.parametrize("spec", [supervised_augmentation("light", "xray"), ssl_augmentation("xray", "strong"),
                                  ssl_augmentation("ultrasound", "strong"), ssl_augmentation("pathology", "mild")])
def test_batched_output_is_bounded_and_seeded(spec):
    x = images(32, channels=3 if spec.name.endswith("pathology-mild") else 1)
    aug = BatchAugment(spec)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # per-sample parameters: two copies of the same image come out different
    same = x[:1].repeat(2, 1, 1, 1)
    d = aug(same, torch.Generator().manual_seed(3))
    assert not torch.equal(d[0], d[1])


def test_brightness_factor_distribution_matches_readable_path():
    """Same spec, two implementations: the brightness factors come from the same distribution."""
    spec = AugSpec("b", brightness=0.3)
    flat = torch.full((400, 1, 8, 8), 100, dtype=torch.uint8)
    torch.manual_seed(0)
    fast = BatchAugment(spec)(flat, torch.Generator().manual_seed(0))[:, 0, 0, 0] / (100 / 255)
    readable = torch.stack([spec.torchvision(8)(img)[0, 0, 0] for img in flat]) / (100 / 255)
    for q in (0.1, 0.5, 0.9):
        assert float(torch.quantile(fast, q)) == pytest.approx(float(torch.quantile(readable, q)), abs=0.05)
    assert float(fast.min()) >= 0.7 - 1e-4 and float(fast.max()) <= 1.3 + 1e-4
    # ... and the whole range [0.7, 1.3] is used (400 uniform draws reach within 0.03 of both ends), so a
    # brightness of 0.3 applied as 0.15 (or not at all) fails; so does a factor drawn around 0 instead of 1
    assert float(fast.min()) < 0.73 and float(fast.max()) > 1.27
    assert float(readable.min()) < 0.73 and float(readable.max()) > 1.27


def test_rotation_changes_images_about_as_much_on_both_paths():
    x = torch.zeros(200, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 10:18, 4:24] = 255  # a horizontal bar: rotation moves its ends
    spec = AugSpec("rot", degrees=10)
    torch.manual_seed(0)
    fast = (BatchAugment(spec)(x, torch.Generator().manual_seed(0)) - x.float() / 255).abs().mean()
    readable = torch.stack([spec.torchvision(28)(img) for img in x])
    readable = (readable - x.float() / 255).abs().mean()
    assert float(fast) == pytest.approx(float(readable), rel=0.25)
    # both paths must move the bar as much as an angle drawn uniformly from [-10, 10] degrees does
    # (computed here with torchvision's rotate at fixed angles): 0 if the angle were ignored, about
    # twice as much for [-20, 20], far more if the degrees were taken as radians
    bar = x[:1].float() / 255
    expected = np.mean([float((TF.rotate(bar, float(a), interpolation=TF.InterpolationMode.BILINEAR) - bar)
                              .abs().mean()) for a in np.linspace(-10, 10, 81)])
    assert float(fast) == pytest.approx(expected, rel=0.2)
    assert float(readable) == pytest.approx(expected, rel=0.2)


def test_describe_lists_exact_operations_and_bad_specs_fail():
    assert supervised_augmentation("none").describe() == ["none"]
    light = supervised_augmentation("light", "xray").describe()
    assert light == ["RandomHorizontalFlip(p=0.5)", "RandomAffine(degrees=10, translate=0)",
                     "Brightness(+-0.1)", "Contrast(+-0.1)"]
    assert any("Speckle" in op for op in supervised_augmentation("light", "ultrasound").describe())
    # X-ray crops keep at least 70 % of the image (a small crop can cut the finding out of a chest film)
    assert [ssl_augmentation("xray", s).crop_scale for s in ("mild", "strong")] == [(0.8, 1.0), (0.7, 1.0)]
    with pytest.raises(ConfigError):
        AugSpec(hflip=2)
    with pytest.raises(ConfigError, match="choose one of"):
        supervised_augmentation("heavy")
    assert AugSpec().describe() == ["none"]
    assert AugSpec("b", brightness=0.3, hflip=1.0).describe() == ["RandomHorizontalFlip(p=1)", "Brightness(+-0.3)"]


@pytest.mark.parametrize("modality", ["ultrasound", "xray", "pathology"])
def test_strong_ssl_preset_is_at_least_as_strong_as_mild(modality):
    mild, strong = ssl_augmentation(modality, "mild"), ssl_augmentation(modality, "strong")
    assert strong.crop_scale[0] <= mild.crop_scale[0]
    for f in ("degrees", "translate", "brightness", "contrast", "gaussian_noise", "speckle_noise"):
        assert getattr(strong, f) >= getattr(mild, f), f
    assert strong != mild


@pytest.mark.parametrize("strength", ["mild", "strong"])
def test_ultrasound_ssl_views_differ_in_intensity_not_only_geometry(strength):
    # Two views of one image that share their intensity histogram let a contrastive encoder match them
    # without learning shapes (SimCLR's crop + colour-distortion finding). On a flat grey image geometry
    # changes nothing away from the borders, so any difference between the views' medians is intensity jitter.
    x = torch.full((512, 1, 28, 28), 128, dtype=torch.uint8)
    aug = BatchAugment(ssl_augmentation("ultrasound", strength))
    g = torch.Generator().manual_seed(0)
    v1, v2 = aug(x, g), aug(x, g)
    gap = (v1.flatten(1).median(1).values - v2.flatten(1).median(1).values).abs()
    assert float(gap.mean()) > 0.05
