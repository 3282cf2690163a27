"""Augmentations: one specification, two implementations.

An :class:`AugSpec` lists what may happen to an image (flip, crop, rotation,
brightness/contrast, noise). From it you get

* ``spec.torchvision(size)`` -- a per-image torchvision ``v2`` pipeline, the
  readable version used with :class:`medssl.data.MedMNISTDataset`;
* ``BatchAugment(spec)`` -- the same operations applied to a whole batch at
  once on its device, each image with its own random parameters (one
  ``grid_sample`` for all geometry). This is the library's default training path.

Both take uint8 images and return float images in [0, 1] (normalise afterwards).

Medical images are not natural photos: no vertical flips, no large rotations,
no colour inversions. Presets per modality are in :func:`ssl_augmentation`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from .errors import ConfigError


@dataclass(frozen=True)
class AugSpec:
    name: str = "none"
    hflip: float = 0.0                      # probability of a horizontal flip
    crop_scale: tuple[float, float] | None = None  # RandomResizedCrop area range, None = no crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    degrees: float = 0.0                    # rotation drawn from U(-degrees, degrees)
    translate: float = 0.0                  # shift drawn from U(-t, t) of the image size, per axis
    brightness: float = 0.0                 # factor drawn from U(1-b, 1+b)
    contrast: float = 0.0                   # factor drawn from U(1-c, 1+c), around the image mean
    gaussian_noise: float = 0.0             # additive N(0, sigma^2), sigma in [0, 1] pixel units
    speckle_noise: float = 0.0              # multiplicative x * (1 + N(0, sigma^2)), ultrasound-like

    def __post_init__(self):
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"hflip is a probability, got {self.hflip}")
        if self.crop_scale is not None and not (0 < self.crop_scale[0] <= self.crop_scale[1] <= 1):
            raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        for f in ("degrees", "translate", "brightness", "contrast", "gaussian_noise", "speckle_noise"):
            if getattr(self, f) < 0:
                raise ConfigError(f"{f} must be >= 0, got {getattr(self, f)}")

    @property
    def is_identity(self) -> bool:
        return self == AugSpec(name=self.name)

    def describe(self) -> list[str]:
        """The exact list of operations, for configs and READMEs."""
        ops = []
        if self.hflip:
            ops.append(f"RandomHorizontalFlip(p={self.hflip:g})")
        if self.crop_scale:
            ops.append(f"RandomResizedCrop(scale=({self.crop_scale[0]:g}, {self.crop_scale[1]:g}))")
        if self.degrees or self.translate:
            ops.append(f"RandomAffine(degrees={self.degrees:g}, translate={self.translate:g})")
        if self.brightness:
            ops.append(f"Brightness(+-{self.brightness:g})")
        if self.contrast:
            ops.append(f"Contrast(+-{self.contrast:g})")
        if self.gaussian_noise:
            ops.append(f"GaussianNoise(sigma={self.gaussian_noise:g})")
        if self.speckle_noise:
            ops.append(f"SpeckleNoise(sigma={self.speckle_noise:g})")
        return ops or ["none"]

    def to_dict(self) -> dict:
        return asdict(self) | {"ops": self.describe()}

    # ------------------------------------------------------------ readable path
    def torchvision(self, size: int):
        """Per-image torchvision v2 pipeline: uint8 (C, H, W) -> float [0, 1]."""
        from torchvision.transforms import v2

        t: list = []
        if self.hflip:
            t.append(v2.RandomHorizontalFlip(p=self.hflip))
        if self.crop_scale:
            t.append(v2.RandomResizedCrop(size, scale=self.crop_scale, ratio=self.crop_ratio, antialias=True))
        if self.degrees or self.translate:
            shift = (self.translate, self.translate) if self.translate else None
            t.append(v2.RandomAffine(degrees=self.degrees, translate=shift,
                                     interpolation=v2.InterpolationMode.BILINEAR))
        t.append(v2.ToDtype(torch.float32, scale=True))
        if self.brightness:
            t.append(v2.ColorJitter(brightness=self.brightness))
        if self.contrast:
            t.append(v2.ColorJitter(contrast=self.contrast))
        if self.gaussian_noise:
            t.append(v2.GaussianNoise(sigma=self.gaussian_noise, clip=True))
        if self.speckle_noise:
            t.append(SpeckleNoise(self.speckle_noise))
        return v2.Compose(t)


class SpeckleNoise(torch.nn.Module):
    """Multiplicative noise ``x + x * N(0, sigma^2)``, clipped to [0, 1] (per image)."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + x * self.sigma * torch.randn_like(x)).clamp_(0, 1)


def _uniform(n: int, lo: float, hi: float, g, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


class BatchAugment:
    """Apply an :class:`AugSpec` to a batch on its own device, per-sample parameters."""

    def __init__(self, spec: AugSpec):
        self.spec = spec

    def __repr__(self) -> str:
        return f"BatchAugment({', '.join(self.spec.describe())})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        s, g, dev = self.spec, generator, x.device
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        n = x.shape[0]
        if s.is_identity or n == 0:
            return x
        geometric = s.hflip or s.crop_scale or s.degrees or s.translate
        if geometric:
            # theta maps output coordinates (in [-1, 1]) to input coordinates.
            sx = torch.ones(n, device=dev)
            sy = torch.ones(n, device=dev)
            cx = torch.zeros(n, device=dev)
            cy = torch.zeros(n, device=dev)
            if s.crop_scale:
                area = _uniform(n, s.crop_scale[0], s.crop_scale[1], g, dev)
                logr = _uniform(n, math.log(s.crop_ratio[0]), math.log(s.crop_ratio[1]), g, dev)
                ratio = torch.exp(logr)
                sx = torch.sqrt(area * ratio).clamp(max=1.0)   # crop width as a fraction of the image
                sy = torch.sqrt(area / ratio).clamp(max=1.0)
                cx = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - sx)
                cy = (torch.rand(n, generator=g, device=dev) * 2 - 1) * (1 - sy)
            ang = torch.zeros(n, device=dev)
            if s.degrees:
                ang = _uniform(n, -s.degrees, s.degrees, g, dev) * (math.pi / 180)
            if s.translate:
                cx = cx - _uniform(n, -s.translate, s.translate, g, dev) * 2 * sx
                cy = cy - _uniform(n, -s.translate, s.translate, g, dev) * 2 * sy
            flip = (torch.rand(n, generator=g, device=dev) < s.hflip).float() if s.hflip else torch.zeros(n, device=dev)
            fx = 1 - 2 * flip
            cos, sin = torch.cos(ang), torch.sin(ang)
            theta = torch.stack([
                torch.stack([sx * cos * fx, -sx * sin * fx, cx * fx], 1),   # flip negates input x
                torch.stack([sy * sin, sy * cos, cy], 1),
            ], 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if s.brightness:
            b = _uniform(n, max(0.0, 1 - s.brightness), 1 + s.brightness, g, dev).view(n, 1, 1, 1)
            x = (x * b).clamp(0, 1)
        if s.contrast:
            c = _uniform(n, max(0.0, 1 - s.contrast), 1 + s.contrast, g, dev).view(n, 1, 1, 1)
            grey = x.mean(dim=1, keepdim=True) if x.shape[1] == 1 else (
                0.2989 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            m = grey.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - m) * c + m).clamp(0, 1)
        if s.gaussian_noise:
            x = (x + s.gaussian_noise * torch.randn(x.shape, generator=g, device=dev)).clamp(0, 1)
        if s.speckle_noise:
            x = (x + x * s.speckle_noise * torch.randn(x.shape, generator=g, device=dev)).clamp(0, 1)
        return x


# ----------------------------------------------------------------------- presets
SUPERVISED = {
    "none": AugSpec("none"),
    "basic": AugSpec("basic", hflip=0.5),
    "light": AugSpec("light", hflip=0.5, degrees=10, brightness=0.1, contrast=0.1),
}


def supervised_augmentation(name: str, modality: str | None = None) -> AugSpec:
    """Train-split augmentation for supervised runs: ``none``, ``basic`` (flip) or ``light``.

    ``light`` is flip + rotation within 10 degrees + brightness/contrast 0.1; for
    ultrasound the contrast jitter is replaced by light speckle noise, since
    ultrasound contrast already varies with the machine's gain.
    """
    if name not in SUPERVISED:
        raise ConfigError(f"unknown augmentation '{name}'; choose one of {', '.join(SUPERVISED)}.")
    spec = SUPERVISED[name]
    if name == "light" and modality == "ultrasound":
        spec = replace(spec, contrast=0.0, speckle_noise=0.05)
    return spec


def ssl_augmentation(modality: str, strength: str = "mild") -> AugSpec:
    """Two-view augmentation for contrastive pretraining, plausible for the modality.

    The views must differ enough that the encoder cannot match them by low-level
    cues. SimCLR found the composition of random crops and colour distortion
    essential: with crops alone, two views of an image share their intensity
    histogram and the network solves the task from it (Chen et al., 2020, "A Simple
    Framework for Contrastive Learning of Visual Representations", Section 3).
    Greyscale images keep the intensity part of that as brightness/contrast jitter.

    * X-ray: crops keep >= 70 % of the image (the lung fields must stay in view),
      mild brightness/contrast (exposure differences).
    * Ultrasound: crops down to 20 % of the area, brightness and contrast +-0.4
      (gain and dynamic range differ between machines and operators), Gaussian
      and speckle noise. With the earlier crops >= 70 % and contrast +-0.1 only,
      BreastMNIST SimCLR features were worse than a random encoder's under a 10 %
      linear probe; see ``reports/label_efficiency/README.md``.
    """
    if strength not in ("mild", "strong"):
        raise ConfigError(f"--aug must be 'mild' or 'strong', got {strength!r}.")
    strong = strength == "strong"
    name = f"ssl-{modality}-{strength}"
    if modality == "xray":
        return AugSpec(name, hflip=0.5, crop_scale=(0.7 if strong else 0.8, 1.0), degrees=15 if strong else 10,
                       translate=0.1 if strong else 0.05, brightness=0.2 if strong else 0.1,
                       contrast=0.2 if strong else 0.1)
    if modality == "ultrasound":
        return AugSpec(name, hflip=0.5, crop_scale=(0.2 if strong else 0.5, 1.0), degrees=15 if strong else 10,
                       brightness=0.4 if strong else 0.2, contrast=0.4 if strong else 0.2,
                       gaussian_noise=0.03 if strong else 0.02, speckle_noise=0.2 if strong else 0.1)
    return AugSpec(name, hflip=0.5, crop_scale=(0.5 if strong else 0.7, 1.0), degrees=20 if strong else 10,
                   brightness=0.3 if strong else 0.15, contrast=0.3 if strong else 0.15)
