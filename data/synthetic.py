"""A procedurally generated, learnable 10-class 3x32x32 image set.

Made in memory from a seed, it stands in for CIFAR-10 offline, in CI and in
tests. Each class is a motif (a texture or a shape) drawn at a random
position, scale, small tilt, contrast and colour, over a background with
clutter that is shared by all classes, plus pixel noise. Motifs are chosen to
survive the default augmentations (horizontal flip, +-15 degree rotation,
4-pixel shifts): gratings are horizontal or vertical and shapes are mirror-
symmetric. Some classes differ only in a detail (grating period, ring vs
disc), so a convolutional net gets the coarse groups quickly and needs a few
epochs and a sensible learning rate for the rest.

Speed: everything is vectorised over the images; the only Python loops run
over the 10 classes, the few clutter blobs and chunks of images. Work happens
in place in float32 in 0..255 units, so that 20,000 images take well under a
second on two cores.
"""

from __future__ import annotations

import hashlib
import math

import torch

SYNTHETIC_CLASSES = [
    "h-stripes-fine",
    "v-stripes-fine",
    "h-stripes-coarse",
    "v-stripes-coarse",
    "checker",
    "rings",
    "disc",
    "ring",
    "plus",
    "triangle",
]

SIZE = 32
_CHUNK = 2048  # images rendered at a time: float buffers stay small and reused

# --- difficulty knobs ------------------------------------------------------
# Tuned with the tiny ResNet (resnet-tiny, 78,042 parameters) on 15,000
# training / 5,000 validation images of the default pool, default
# augmentations. Measured (seed = data, split and model seed):
# * SGD momentum 0.9, lr 0.1, weight decay 5e-4, batch 128, cosine over 3
#   epochs: val accuracy 0.950-0.987 after 3 epochs over 16 seeds (GPU; on
#   CPU seeds 0/1/7 gave 0.980/0.981/0.976), but 0.32-0.82 (mean 0.64) for a
#   1-epoch run, and about 0.25 with lr 1e-4: good settings are rewarded.
# * The CLI's defaults (batch 64, weight decay 1e-4, lr 0.1 cut 10x after
#   epochs 1 and 2): 0.936-0.983 after 3 epochs over 12 seeds.
# * With the classifier at fan_in and zero-init residual branches (models/
#   resnet.py), CPU, CLI defaults, seeds 0/1/2/7: 0.972/0.973/0.979/0.974
#   after 3 epochs and 0.77-0.92 after one (the earlier init: 0.928/0.978/
#   0.928/0.944, and 0.61-0.89 after one).
# Lower motif contrast or class-colour weight makes some seeds start so late
# that 3 epochs stay under 0.9; higher makes one epoch nearly enough.
_CENTRE_RANGE = (13.0, 19.0)  # motif centre, pixels (the image is 0..32)
_SCALE_RANGE = (1.3, 1.7)  # motif size factor: stripe periods are 3 or 6 px times this
_TILT = 0.2  # motif tilt, radians (+-11 degrees) on top of augmentation
_CONTRAST_RANGE = (0.6, 1.0)  # motif opacity over the background
_COLOUR_MIX = (0.6, 0.95)  # weight of the class colour vs a random colour
_N_CLUTTER = 2  # distractor blobs and bars per image, same for all classes
_CLUTTER_ALPHA = (0.3, 0.8)
_NOISE_STD = 8.0  # pixel noise, in 0..255 units
_NOISE_BANK = 1024  # noise fields drawn per call and shared out at random

# Class colour tendencies (RGB in [0, 1]). Classes of one shape family get
# unrelated colours, and every image mixes its class colour with a random
# one, so colour alone separates the classes only partly.
_CLASS_COLOURS = torch.tensor(
    [
        [0.9, 0.3, 0.2],
        [0.2, 0.6, 0.9],
        [0.3, 0.8, 0.3],
        [0.9, 0.8, 0.2],
        [0.7, 0.3, 0.8],
        [0.2, 0.8, 0.8],
        [0.9, 0.5, 0.1],
        [0.4, 0.4, 0.9],
        [0.8, 0.2, 0.5],
        [0.5, 0.8, 0.2],
    ]
)


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit generator seed for one named stream of a data seed, so that
    e.g. the train pool and the test split of one seed share no draws."""
    digest = hashlib.sha256(f"hpsearch-synthetic:{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_synthetic(n: int, seed: int, *, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (uint8, (n, 3, 32, 32)) and labels (int64, (n,), balanced
    classes in random order), deterministic in (seed, split); ``split`` names
    an independent random stream (the data sets use "train" and "test")."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = torch.Generator().manual_seed(stream_seed(seed, split))
    y = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    params = _draw_params(y, g)
    noise_bank = torch.randn(_NOISE_BANK, 3, SIZE, SIZE, generator=g).mul_(_NOISE_STD)
    x = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        x[sl] = _render({k: v[sl] for k, v in params.items()}, noise_bank)
    return x, y


def _draw_params(y: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
    n = y.shape[0]

    def u(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=g)

    mix = u(n, 1, low=_COLOUR_MIX[0], high=_COLOUR_MIX[1])
    motif_colour = (mix * _CLASS_COLOURS[y] + (1 - mix) * u(n, 3)) * 255
    k = _N_CLUTTER
    return {
        "y": y,
        "centre": u(n, 2, low=_CENTRE_RANGE[0], high=_CENTRE_RANGE[1]),
        "scale": u(n, 1, low=_SCALE_RANGE[0], high=_SCALE_RANGE[1]),
        "tilt": u(n, 1, low=-_TILT, high=_TILT),
        "phase": u(n, 1, low=0.0, high=2 * math.pi),
        "contrast": u(n, 1, low=_CONTRAST_RANGE[0], high=_CONTRAST_RANGE[1]),
        "motif_colour": motif_colour,
        # Background: a colour plus a linear gradient per channel. The +0.5
        # makes the final truncation to uint8 a rounding.
        "bg_colour": u(n, 3, low=0.15, high=0.85) * 255 + 0.5,
        "bg_grad": u(n, 3, 2, low=-0.25, high=0.25) * 255,
        # Clutter: axis-aligned soft ellipses (round blobs to long bars), so
        # horizontal and vertical structure is not a class cue by itself.
        "clutter_pos": u(n, k, 2, low=0.0, high=float(SIZE)),
        "clutter_sigma": u(n, k, 2, low=1.5, high=6.0),
        "clutter_colour": u(n, k, 3) * 255,
        "clutter_alpha": u(n, k, low=_CLUTTER_ALPHA[0], high=_CLUTTER_ALPHA[1]),
        "noise_index": torch.randint(0, _NOISE_BANK, (n,), generator=g),
    }


_COORDS = torch.arange(SIZE, dtype=torch.float32) + 0.5  # pixel centres
_RAMP = torch.stack(
    [((_COORDS - SIZE / 2) / (SIZE / 2)).expand(SIZE, SIZE), ((_COORDS - SIZE / 2) / (SIZE / 2)).view(-1, 1).expand(SIZE, SIZE)]
).reshape(2, SIZE * SIZE)


def _render(p: dict[str, torch.Tensor], noise_bank: torch.Tensor) -> torch.Tensor:
    n = p["y"].shape[0]
    img = torch.baddbmm(p["bg_colour"].unsqueeze(2), p["bg_grad"], _RAMP.expand(n, 2, SIZE * SIZE))
    img = img.view(n, 3, SIZE, SIZE)

    # Clutter, composited back to front: separable Gaussians are one outer
    # product of a row and a column profile each.
    for k in range(_N_CLUTTER):
        pos, sig = p["clutter_pos"][:, k], p["clutter_sigma"][:, k]
        gx = torch.exp(-0.5 * ((_COORDS - pos[:, :1]) / sig[:, :1]) ** 2)  # (n, 32)
        gy = torch.exp(-0.5 * ((_COORDS - pos[:, 1:]) / sig[:, 1:]) ** 2)
        alpha = (gy.unsqueeze(2) * gx.unsqueeze(1)).mul_(p["clutter_alpha"][:, k].view(n, 1, 1))
        img.lerp_(p["clutter_colour"][:, k].view(n, 3, 1, 1), alpha.unsqueeze(1))

    alpha = _motif_alpha(p)
    img.lerp_(p["motif_colour"].view(n, 3, 1, 1), alpha.unsqueeze(1))
    img.add_(noise_bank[p["noise_index"]])
    return img.clamp_(0.0, 255.0).to(torch.uint8)


def _soft(t: torch.Tensor) -> torch.Tensor:
    """A smooth step at 0 about a pixel wide: antialiased edges."""
    return torch.sigmoid(2.0 * t)


def _motif_alpha(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Opacity (n, 32, 32) of each image's class motif, rendered class by class."""
    y = p["y"]
    out = torch.empty(y.shape[0], SIZE, SIZE)
    for c in range(10):
        idx = (y == c).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        m = idx.numel()
        centre, scale = p["centre"][idx], p["scale"][idx]
        # Coordinates in the motif frame. dx and dy are separable (m, 1, 32)
        # and (m, 32, 1); only the tilted u, v and r are full maps.
        dx = ((_COORDS - centre[:, :1]) / scale).view(m, 1, SIZE)
        dy = ((_COORDS - centre[:, 1:]) / scale).view(m, SIZE, 1)
        tilt = p["tilt"][idx].view(m, 1, 1)
        cos, sin = torch.cos(tilt), torch.sin(tilt)
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        r = torch.sqrt(dx * dx + dy * dy)
        phase = p["phase"][idx].view(m, 1, 1)
        out[idx] = _MOTIFS[c](u, v, r, phase).mul_(p["contrast"][idx].view(m, 1, 1))
    return out


def _stripes(t, phase, period):
    return torch.cos(t * (2 * math.pi / period) + phase).mul_(0.5).add_(0.5)


def _disc_window(r, radius=9.0):
    return _soft(radius - r)


def _bar_plus(a, b):
    """Two crossing bars 4 px wide and 16 px long along the a and b axes."""
    bar1 = _soft(2.0 - a.abs()) * _soft(8.0 - b.abs())
    bar2 = _soft(2.0 - b.abs()) * _soft(8.0 - a.abs())
    return torch.maximum(bar1, bar2)


_MOTIFS = [
    lambda u, v, r, ph: _stripes(v, ph, 3.0) * _disc_window(r),  # horizontal stripes, 3 px
    lambda u, v, r, ph: _stripes(u, ph, 3.0) * _disc_window(r),  # vertical stripes, 3 px
    lambda u, v, r, ph: _stripes(v, ph, 6.0) * _disc_window(r),  # horizontal stripes, 6 px
    lambda u, v, r, ph: _stripes(u, ph, 6.0) * _disc_window(r),  # vertical stripes, 6 px
    # checkerboard of 3 px squares in a 16 px square window
    lambda u, v, r, ph: (torch.cos(u * (math.pi / 3) + ph) * torch.cos(v * (math.pi / 3)) > 0).float()
    * _soft(8.0 - torch.maximum(u.abs(), v.abs())),
    lambda u, v, r, ph: _stripes(r, 0.0, 4.0) * _disc_window(r),  # concentric rings, 4 px
    lambda u, v, r, ph: _soft(7.0 - r),  # filled disc
    lambda u, v, r, ph: _soft(7.0 - r) * _soft(r - 4.5),  # ring outline
    lambda u, v, r, ph: _bar_plus(u, v),  # plus
    # upward triangle (apex 8 px above the centre, base 6 px below, 16 px wide):
    # mirror-symmetric, so a horizontal flip keeps its class
    lambda u, v, r, ph: _soft(6.0 - v) * _soft((v + 8.0) * (8.0 / 14.0) - u.abs()),
]
