"""Batched, per-sample data augmentation on tensors, and normalisation.

The report ("Data Preprocessing and Augmentation") trains with random 32x32
crops from 4-pixel zero padding, random horizontal flips, random rotations and
colour jitter (brightness, contrast, saturation), then normalises with the
CIFAR-10 channel mean/std. Here those run on a whole uint8 batch on the
training device, with every sample drawing its own parameters, instead of
through PIL one image at a time:

* crop translation, flip and rotation are folded into one affine matrix per
  sample and applied with a single ``affine_grid`` + ``grid_sample``. Sampling
  is *nearest* with zero padding: an integer translation then copies pixels
  exactly, as ``RandomCrop(32, padding=4)`` does, and nearest is also the
  default interpolation of torchvision's ``RandomRotation``.
* colour jitter is three batched blends, with torchvision's formulas
  (``adjust_brightness/contrast/saturation``), clamped to [0, 1] after each.
  Order is fixed (brightness, contrast, saturation); torchvision's
  ``ColorJitter`` shuffles it per call, which changes little.

The report gives no rotation angle or jitter strengths; the defaults below
(15 degrees, 0.2) are common choices for CIFAR-10 and are searchable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

# Per-channel mean and std of the CIFAR-10 training images, as in the report.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# ITU-R 601 luma weights, the ones torchvision's rgb_to_grayscale uses.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

# Columns of the per-sample uniform draws; one draw per batch keeps the random
# stream the same whatever augmentations are switched on.
_TX, _TY, _FLIP, _ANGLE, _BRIGHT, _CONTRAST, _SAT = range(7)
_N_DRAWS = 7


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int = 4  # zero padding of the random crop, pixels (0 = off)
    flip: bool = True  # horizontal flip with p = 0.5
    rotation: float = 15.0  # max |angle| in degrees, uniform in [-r, r] (0 = off)
    brightness: float = 0.2  # factor uniform in [max(0, 1-v), 1+v] (0 = off)
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self):
        if isinstance(self.crop_padding, bool) or int(self.crop_padding) != self.crop_padding:
            raise ValueError(f"crop_padding must be a whole number of pixels, got {self.crop_padding!r}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0 (0 = no random crop), got {self.crop_padding}")
        object.__setattr__(self, "crop_padding", int(self.crop_padding))
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be true or false, got {self.flip!r}")
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees (0 = off), got {self.rotation}")
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (0 = off), got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "rotation", float(self.rotation))

    @classmethod
    def off(cls) -> AugmentConfig:
        """Every augmentation switched off: ``augment_batch`` returns x / 255."""
        return cls(crop_padding=0, flip=False, rotation=0.0, brightness=0.0, contrast=0.0, saturation=0.0)

    @property
    def geometric(self) -> bool:
        return self.crop_padding > 0 or self.flip or self.rotation > 0

    @property
    def enabled(self) -> bool:
        return self.geometric or self.brightness > 0 or self.contrast > 0 or self.saturation > 0

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _affine_thetas(u: torch.Tensor, cfg: AugmentConfig, height: int, width: int) -> torch.Tensor:
    """Per-sample 2x3 matrices mapping output to input in normalised coordinates.

    In pixels the pipeline crop -> flip -> rotate reads the input at
    ``M_flip @ R(-angle) @ p + shift`` for output position p (about the image
    centre). ``affine_grid`` works in normalised coordinates (align_corners=
    False: a pixel is 2/W wide), so the linear part is conjugated by the
    scaling diag(W/2, H/2) and the shift is divided by it."""
    b = u.shape[0]
    pad = cfg.crop_padding
    # RandomCrop(32, padding=p) picks an offset in 0..2p: a shift of -p..p.
    if pad > 0:
        shift = torch.clamp(torch.floor(u[:, [_TX, _TY]] * (2 * pad + 1)), max=2 * pad) - pad
    else:
        shift = torch.zeros(b, 2, dtype=u.dtype, device=u.device)
    sign = torch.where(u[:, _FLIP] < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b, dtype=u.dtype, device=u.device)
    angle = torch.deg2rad(_uniform(u[:, _ANGLE], -cfg.rotation, cfg.rotation))
    cos, sin = torch.cos(angle), torch.sin(angle)
    sx, sy = width / 2.0, height / 2.0
    theta = torch.empty(b, 2, 3, dtype=u.dtype, device=u.device)
    # Linear part in pixels: diag(sign, 1) @ [[cos, -sin], [sin, cos]].
    theta[:, 0, 0] = sign * cos
    theta[:, 0, 1] = -sign * sin * (sy / sx)
    theta[:, 1, 0] = sin * (sx / sy)
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = shift[:, 0] / sx
    theta[:, 1, 2] = shift[:, 1] / sy
    return theta


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a uint8 batch (B, 3, H, W): float32 in [0, 1] on x's device.

    Each sample gets its own crop offset, flip, angle and jitter factors, drawn
    from ``generator`` on the generator's device (so a CPU generator gives the
    same draws whatever device x is on); the same generator state gives the
    same output."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"augment_batch expects a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
    out = x.to(torch.float32).div_(255.0)
    b, _, h, w = out.shape
    if b == 0 or not cfg.enabled:
        return out
    u = torch.rand(b, _N_DRAWS, generator=generator, device=generator.device).to(out.device)

    if cfg.geometric:
        theta = _affine_thetas(u, cfg, h, w)
        grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
        out = F.grid_sample(out, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    if cfg.brightness > 0:
        f = _uniform(u[:, _BRIGHT], max(0.0, 1 - cfg.brightness), 1 + cfg.brightness).view(b, 1, 1, 1)
        out = (out * f).clamp_(0.0, 1.0)
    if cfg.contrast > 0:
        f = _uniform(u[:, _CONTRAST], max(0.0, 1 - cfg.contrast), 1 + cfg.contrast).view(b, 1, 1, 1)
        mean = _grayscale(out).mean(dim=(2, 3), keepdim=True)
        out = (f * out + (1 - f) * mean).clamp_(0.0, 1.0)
    if cfg.saturation > 0:
        f = _uniform(u[:, _SAT], max(0.0, 1 - cfg.saturation), 1 + cfg.saturation).view(b, 1, 1, 1)
        out = (f * out + (1 - f) * _grayscale(out)).clamp_(0.0, 1.0)
    return out


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel with the report's CIFAR-10 statistics,
    on x's device and in x's (floating) dtype."""
    mean = torch.tensor(CIFAR10_MEAN, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01 - mean) / std


def prepare_batch(
    x_uint8: torch.Tensor, cfg: AugmentConfig | None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """What the training loop calls per batch: augment (if ``cfg`` is given
    and enables anything) and normalise; otherwise scale to [0, 1] and
    normalise, as for validation and test images."""
    if cfg is not None and cfg.enabled:
        if generator is None:
            raise ValueError("prepare_batch needs a torch.Generator when augmentations are on")
        x01 = augment_batch(x_uint8, cfg, generator)
    else:
        x01 = x_uint8.to(torch.float32).div_(255.0)
    return normalize(x01)
