"""Benchmark part 1, the data path: ours (uint8 data resident on the device,
augmented in chunks by `prepare_batch`) against the report's torchvision
pipeline (PIL transforms through a DataLoader), images/s."""

from __future__ import annotations

import math
import time
from typing import Any

from hpsearch.search.bench.environment import Sizes, median, ratio, sync, threads

DATA_TARGET = 10.0  # our data path >= 10x the report's pipeline


class PilImages:
    """The report's input pipeline: HWC uint8 arrays, one PIL image per item."""

    def __init__(self, images_hwc, labels, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def report_transform(cfg):
    """torchvision's equivalent of `cfg` (the report's augmentations)."""
    from torchvision import transforms as T

    from hpsearch.data import CIFAR10_MEAN, CIFAR10_STD

    return T.Compose([
        T.RandomCrop(32, padding=cfg.crop_padding),
        T.RandomHorizontalFlip(),
        T.RandomRotation(cfg.rotation),
        T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation),
        T.ToTensor(),
        T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])


def bench_data(device, batch_size: int, sizes: Sizes, cores: int) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from hpsearch.data import AugmentConfig, prepare_batch
    from hpsearch.search.train.loop import augment_chunk

    cfg = AugmentConfig()
    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (sizes.data_pool, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (sizes.data_pool,), generator=gen)
    n_batches = max(1, math.ceil(sizes.data_images / batch_size))
    n_images = n_batches * batch_size

    # Ours, as search.train's loop does it: the pool lives on the device; a
    # chunk of whole batches is an index gather plus one prepare_batch call.
    x_dev, y_dev = pool.to(device), labels.to(device)
    aug_gen = torch.Generator(device=device).manual_seed(1)
    chunk = augment_chunk(batch_size)

    def ours() -> float:
        order = torch.randint(0, sizes.data_pool, (n_images + chunk,), generator=gen).to(device)
        prepare_batch(x_dev[order[n_images:]], cfg, aug_gen)  # warm-up
        sync(device)
        start = time.perf_counter()
        for i in range(0, n_images, chunk):
            idx = order[i: min(i + chunk, n_images)]
            xc, yc = prepare_batch(x_dev[idx], cfg, aug_gen), y_dev[idx]
        sync(device)
        del xc, yc
        return n_images / (time.perf_counter() - start)

    # Theirs: one worker per core; the warm-up drains the loader's initial
    # prefetch (workers x prefetch_factor batches) so the timed part is steady.
    dataset = PilImages(pool.permute(0, 2, 3, 1).contiguous().numpy(), labels.numpy(), report_transform(cfg))
    warmup = max(3, 2 * cores * 2)
    pin = device.type == "cuda"

    def theirs() -> float:
        sampler = RandomSampler(dataset, replacement=True, num_samples=(warmup + n_batches) * batch_size,
                                generator=torch.Generator().manual_seed(2))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=cores,
                            pin_memory=pin, drop_last=True)
        it = iter(loader)
        for _ in range(warmup):
            xb, yb = next(it)
            xb, yb = xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin)
        sync(device)
        start = time.perf_counter()
        for _ in range(n_batches):
            xb, yb = next(it)
            xb, yb = xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin)
        sync(device)
        rate = n_images / (time.perf_counter() - start)
        del it  # shuts the workers down before the next measurement
        return rate

    rounds = []
    with threads(cores):
        for _ in range(sizes.rounds):
            rounds.append({"ours": ours(), "torchvision": theirs()})
    o, t = median([r["ours"] for r in rounds]), median([r["torchvision"] for r in rounds])
    return {
        "ours_images_per_s": o,
        "torchvision_images_per_s": t,
        "ratio": ratio(o, t),
        "rounds": rounds,
        "images_per_round": n_images,
        "batch_size": batch_size,
        "augment_chunk": chunk,  # images per prepare_batch call (search.train.augment_chunk)
        "num_workers": cores,
        "torch_threads": cores,
        "augment": cfg.to_dict(),
        "target_ratio": DATA_TARGET,
    }
