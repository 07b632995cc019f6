"""Batched augmentation: each transform alone, per-sample randomness,
reproducibility, and agreement with torchvision's formulas."""

import dataclasses

import pytest
import torch
import torchvision.transforms.functional as TF

from hpsearch.data import CIFAR10_MEAN, CIFAR10_STD, AugmentConfig, augment_batch, normalize, prepare_batch

OFF = AugmentConfig.off()


def _batch(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _only(**kw):
    return dataclasses.replace(OFF, **kw)


def test_defaults_are_the_report_augmentations():
    cfg = AugmentConfig()
    assert (cfg.crop_padding, cfg.flip, cfg.rotation) == (4, True, 15.0)
    assert (cfg.brightness, cfg.contrast, cfg.saturation) == (0.2, 0.2, 0.2)


@pytest.mark.parametrize(
    "kw",
    [dict(crop_padding=-1), dict(crop_padding=1.5), dict(rotation=-1.0), dict(rotation=200.0), dict(brightness=-0.1),
     dict(contrast=-1.0), dict(saturation=float("nan")), dict(flip="yes")],
)
def test_invalid_values_are_refused(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        AugmentConfig(**kw)


def test_everything_off_is_exactly_x_over_255():
    x = _batch()
    assert torch.equal(augment_batch(x, OFF, _gen()), x.float() / 255)
    assert torch.equal(prepare_batch(x, OFF, _gen()), normalize(x.float() / 255))
    assert torch.equal(prepare_batch(x, None, None), normalize(x.float() / 255))


def test_shapes_range_dtype_and_reproducibility():
    x = _batch()
    cfg = AugmentConfig()
    out = augment_batch(x, cfg, _gen(3))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, augment_batch(x, cfg, _gen(3)))
    assert not torch.equal(out, augment_batch(x, cfg, _gen(4)))
    assert prepare_batch(x, cfg, _gen(3)).shape == x.shape


def test_flip_mirrors_some_samples_and_not_others():
    x = _batch()
    out = augment_batch(x, _only(flip=True), _gen())
    ref, mirrored = x.float() / 255, (x.float() / 255).flip(-1)
    same = torch.tensor([torch.equal(o, r) for o, r in zip(out, ref, strict=True)])
    flipped = torch.tensor([torch.equal(o, m) for o, m in zip(out, mirrored, strict=True)])
    assert torch.all(same | flipped)
    assert 10 < int(flipped.sum()) < 54  # p = 0.5 per sample, 64 samples


def _shift(img, dy, dx):
    """img moved by (dy, dx) pixels with zero fill: out[i, j] = img[i + dy, j + dx]."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = img[
        ..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


def test_crop_shifts_by_at_most_padding_with_zero_fill():
    x = _batch()
    ref = x.float() / 255
    out = augment_batch(x, _only(crop_padding=4), _gen())
    shifts = []
    for o, r in zip(out, ref, strict=True):
        found = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if torch.equal(o, _shift(r, dy, dx))]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) > 20  # every sample draws its own offset
    # Zero fill: a white image keeps exactly |dy| rows and |dx| columns of zeros.
    white = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    outw = augment_batch(white, _only(crop_padding=4), _gen())
    for o, (dy, dx) in zip(outw, shifts, strict=True):
        assert int((o[0] == 0).all(dim=1).sum()) == abs(dy) and int((o[0] == 0).all(dim=0).sum()) == abs(dx)


def test_rotation_per_sample_with_nearest_sampling():
    x = _batch(1).expand(32, -1, -1, -1).contiguous()
    out = augment_batch(x, _only(rotation=15.0), _gen())
    # Each sample draws its own angle; with nearest sampling angles within
    # about 2 degrees of each other can give the same image, so not all 32 differ.
    assert len({o.numpy().tobytes() for o in out}) > 20
    # Nearest sampling copies input values; only the corners gain zeros.
    allowed = torch.cat([x.float().unique() / 255, torch.zeros(1)])
    assert torch.isin(out, allowed).all()
    # About the centre: the middle 4x4 of a tilt of at most 15 degrees moves less than a pixel.
    assert (out[:, :, 14:18, 14:18] == x[:, :, 14:18, 14:18].float() / 255).float().mean() > 0.5
    white = torch.full((32, 3, 32, 32), 255, dtype=torch.uint8)
    zeros = (augment_batch(white, _only(rotation=15.0), _gen()) == 0).float().mean(dim=(1, 2, 3))
    assert zeros.max() < 0.15 and zeros.std() > 0  # corners only, varying with the angle


def _factor(out, ref, blend_to):
    """Solve out = f * ref + (1 - f) * blend_to for f on unclamped pixels."""
    num = out - blend_to
    den = ref - blend_to
    ok = (den.abs() > 0.2) & (out > 0.01) & (out < 0.99)
    return (num[ok] / den[ok]).median()


def test_brightness_matches_torchvision():
    x = _batch()
    ref = x.float() / 255
    out = augment_batch(x, _only(brightness=0.2), _gen())
    factors = []
    for o, r in zip(out, ref, strict=True):
        f = _factor(o, r, torch.zeros_like(r))
        assert 0.8 - 1e-4 <= f <= 1.2 + 1e-4
        assert torch.allclose(o, TF.adjust_brightness(r, float(f)), atol=1e-4)
        factors.append(float(f))
    assert len({round(f, 4) for f in factors}) > 50


def test_contrast_matches_torchvision():
    x = _batch()
    ref = x.float() / 255
    out = augment_batch(x, _only(contrast=0.2), _gen())
    for o, r in zip(out, ref, strict=True):
        mean = TF.rgb_to_grayscale(r).mean()
        f = _factor(o, r, mean)
        assert 0.8 - 1e-4 <= f <= 1.2 + 1e-4
        assert torch.allclose(o, TF.adjust_contrast(r, float(f)), atol=1e-4)


def test_saturation_matches_torchvision_and_leaves_gray_alone():
    x = _batch()
    ref = x.float() / 255
    out = augment_batch(x, _only(saturation=0.2), _gen())
    for o, r in zip(out, ref, strict=True):
        gray = TF.rgb_to_grayscale(r)
        f = _factor(o, r, gray.expand_as(r))
        assert 0.8 - 1e-4 <= f <= 1.2 + 1e-4
        assert torch.allclose(o, TF.adjust_saturation(r, float(f)), atol=1e-4)
    gray_imgs = x[:, :1].expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(augment_batch(gray_imgs, _only(saturation=0.5), _gen()), gray_imgs.float() / 255, atol=1e-3)


def test_normalize_uses_the_report_statistics():
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    assert CIFAR10_MEAN == (0.4914, 0.4822, 0.4465) and CIFAR10_STD == (0.2470, 0.2435, 0.2616)
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(normalize(x), (x - mean) / std)
    assert torch.allclose(normalize(mean.expand(2, 3, 4, 4)), torch.zeros(2, 3, 4, 4), atol=1e-6)
    assert normalize(x.double()).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_batch_device_with_a_cpu_generator():
    x = _batch()
    cpu = augment_batch(x, AugmentConfig(), _gen(1))
    gpu = augment_batch(x.cuda(), AugmentConfig(), _gen(1))
    assert gpu.device.type == "cuda" and torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    gpu2 = augment_batch(x.cuda(), AugmentConfig(), torch.Generator(device="cuda").manual_seed(1))
    assert gpu2.device.type == "cuda" and gpu2.shape == x.shape
