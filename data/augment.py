"""Batched, per-sample data augmentation on tensors, and normalisation.

The report ("Data Preprocessing and Augmentation") trains with random 32x32
crops from 4-pixel zero padding, random horizontal flips, random rotations and
colour jitter (brightness, contrast, saturation), then normalises with the
CIFAR-10 channel mean/std. Here those run on a whole uint8 batch on the
training device, with every sample drawing its own parameters, instead of
through PIL one image at a time:

* crop translation, flip and rotation are folded into one affine matrix per
  sample. Sampling is *nearest* with zero padding: an integer translation then
  copies pixels exactly, as ``RandomCrop(32, padding=4)`` does, and nearest is
  also the default interpolation of torchvision's ``RandomRotation``. So the
  warp is an index gather on the uint8 images: the source pixel of every output
  pixel is computed as ``affine_grid`` + ``grid_sample(mode="nearest")`` would
  (same coordinates, same round-half-to-even), without their float copies of
  the batch (``affine_grid``'s batched matmul alone cost a fifth of the time).
* colour jitter is three batched blends, with torchvision's formulas
  (``adjust_brightness/contrast/saturation``), clamped to [0, 1] after each,
  in place: two or three passes over the batch each.
* the constant tensors (channel mean/std, luma weights) are made once per
  device: building them per batch from Python lists was a blocking
  host-to-device copy, i.e. a host sync per batch, on CUDA.
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


_CONSTANTS: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std) as (1, 3, 1, 1) and the luma weights as (3,), made once per device and dtype."""
    key = (device, dtype)
    if key not in _CONSTANTS:
        mean = torch.tensor(CIFAR10_MEAN, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=dtype).view(1, 3, 1, 1)
        gray = torch.tensor(_GRAY_WEIGHTS, dtype=dtype)
        _CONSTANTS[key] = (mean.to(device), std.to(device), gray.to(device))
    return _CONSTANTS[key]


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of a float RGB batch: three channel-sized passes, no (B, 3, H, W) temporary."""
    w = _constants(x.device, x.dtype)[2]
    gray = x[:, 0:1] * w[0]
    return gray.add_(x[:, 1:2], alpha=_GRAY_WEIGHTS[1]).add_(x[:, 2:3], alpha=_GRAY_WEIGHTS[2])


def _warp_nearest(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``grid_sample(x, affine_grid(theta), mode="nearest", padding_mode="zeros",
    align_corners=False)`` for a uint8 batch, as one index gather.

    affine_grid samples pixel centres p = (2i + 1) / n - 1 and grid_sample reads
    source pixel round(((theta @ p) + 1) * n / 2 - 1/2) (half to even); folding
    the unnormalisation into theta leaves one small matrix product per batch."""
    b, c, h, w = x.shape
    scaled = theta.clone()  # Python scalars only: no host-to-device copy, so no host sync on CUDA
    scaled[:, 0].mul_(w / 2)
    scaled[:, 1].mul_(h / 2)
    scaled[:, 0, 2].add_((w - 1) / 2)
    scaled[:, 1, 2].add_((h - 1) / 2)
    px = (torch.arange(w, device=x.device, dtype=theta.dtype) * 2 + 1) / w - 1
    py = (torch.arange(h, device=x.device, dtype=theta.dtype) * 2 + 1) / h - 1
    points = torch.stack([px.repeat(h), py.repeat_interleave(w), torch.ones(h * w, device=x.device)])  # (3, HW)
    src = torch.round(torch.matmul(scaled, points))  # (B, 2, HW): source column and row
    inside = (src >= 0).all(1) & (src[:, 0] <= w - 1) & (src[:, 1] <= h - 1)
    index = torch.where(inside, src[:, 1] * w + src[:, 0], float(h * w)).to(torch.int64).view(b, 1, h * w)
    padded = F.pad(x.reshape(b, c, h * w), (0, 1))  # index h*w is the zero padding
    return torch.gather(padded, 2, index.expand(b, c, h * w)).view(b, c, h, w)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a uint8 batch (B, 3, H, W): float32 in [0, 1] on x's device.

    Each sample gets its own crop offset, flip, angle and jitter factors, drawn
    from ``generator`` on the generator's device (so a CPU generator gives the
    same draws whatever device x is on); the same generator state gives the
    same output."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"augment_batch expects a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if b == 0 or not cfg.enabled:
        return x.to(torch.float32).div_(255.0)
    u = torch.rand(b, _N_DRAWS, generator=generator, device=generator.device).to(x.device)

    if cfg.geometric:
        x = _warp_nearest(x, _affine_thetas(u, cfg, h, w))
    out = x.to(torch.float32).div_(255.0)

    if cfg.brightness > 0:
        f = _uniform(u[:, _BRIGHT], max(0.0, 1 - cfg.brightness), 1 + cfg.brightness).view(b, 1, 1, 1)
        out.mul_(f).clamp_(0.0, 1.0)
    if cfg.contrast > 0:
        f = _uniform(u[:, _CONTRAST], max(0.0, 1 - cfg.contrast), 1 + cfg.contrast).view(b, 1, 1, 1)
        # mean of the luma = luma of the channel means
        mean = (out.mean(dim=(2, 3)) * _constants(out.device, out.dtype)[2]).sum(1).view(b, 1, 1, 1)
        out.mul_(f).add_((1 - f) * mean).clamp_(0.0, 1.0)
    if cfg.saturation > 0:
        f = _uniform(u[:, _SAT], max(0.0, 1 - cfg.saturation), 1 + cfg.saturation).view(b, 1, 1, 1)
        gray = _grayscale(out).mul_(1 - f)
        out.mul_(f).add_(gray).clamp_(0.0, 1.0)
    return out


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel with the report's CIFAR-10 statistics,
    on x's device and in x's (floating) dtype."""
    mean, std, _ = _constants(x01.device, x01.dtype)
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
    mean, std, _ = _constants(x01.device, x01.dtype)
    return x01.sub_(mean).div_(std)  # normalize(), in place on our own fresh tensor
