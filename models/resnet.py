"""The ResNet family of the report: BasicBlocks in three stages, optional SE.

Structure (report, "Network Architecture"): a 3x3 stem conv, stages of
BasicBlocks (two 3x3 convs with BN and ReLU; a 1x1 conv + BN shortcut where the
stride or width changes), global average pooling, dropout, one linear layer.
Convolutions have no bias because BN follows each of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

# kaiming_fan_out / kaiming_fan_in: Kaiming normal (ReLU gain) with that fan
# for the convolutions; torch_default: the layers' own reset_parameters().
INIT_MODES = ("kaiming_fan_out", "kaiming_fan_in", "torch_default")


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to rebuild a network; stored in every checkpoint."""

    stem_channels: int = 32
    channels: tuple[int, ...] = (32, 64, 190)  # width of each stage
    blocks: tuple[int, ...] = (7, 7, 7)  # BasicBlocks per stage
    stem_se: bool = False  # SE block after the stem (Thakur et al. 2023)
    se: bool = False  # SE block in every BasicBlock (Hu et al. 2019)
    se_reduction: int = 16  # SE bottleneck ratio, as in Hu et al.
    dropout: float = 0.3  # before the classifier (report)
    num_classes: int = 10
    in_channels: int = 3
    init: str = "kaiming_fan_out"  # one of INIT_MODES: how conv weights start (see ResNet._init_weights)
    zero_init_residual: bool = True  # last BN of every residual branch starts at weight 0 (off in resnet-tiny)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if len(self.channels) != len(self.blocks) or not self.channels:
            raise ValueError(
                f"channels {self.channels} and blocks {self.blocks} must be non-empty and of equal length"
            )
        if min(self.channels) < 1 or min(self.blocks) < 1 or self.stem_channels < 1:
            raise ValueError("channels, blocks and stem_channels must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout} must be in [0, 1)")
        if self.se_reduction < 1:
            raise ValueError(f"se_reduction {self.se_reduction} must be >= 1")
        if self.init not in INIT_MODES:
            raise ValueError(f"init {self.init!r} is not allowed; allowed: {', '.join(INIT_MODES)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["blocks"] = list(self.blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ResNetConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2019, arXiv:1709.01507): channel gates
    from globally pooled features through a C -> C/r -> C bottleneck."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, se: bool, se_reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SEBlock(out_ch, se_reduction) if se else nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig | None = None):
        super().__init__()
        self.config = c = config or ResNetConfig()
        self.stem = nn.Sequential(
            nn.Conv2d(c.in_channels, c.stem_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c.stem_channels),
            nn.ReLU(inplace=True),
        )
        self.stem_se = SEBlock(c.stem_channels, c.se_reduction) if c.stem_se else nn.Identity()
        stages, in_ch = [], c.stem_channels
        for i, (width, n_blocks) in enumerate(zip(c.channels, c.blocks)):
            stride = 1 if i == 0 else 2  # downsample entering every stage but the first
            blocks = []
            for b in range(n_blocks):
                blocks.append(BasicBlock(in_ch, width, stride if b == 0 else 1, c.se, c.se_reduction))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(in_ch, c.num_classes)
        self._init_weights()

    def _init_weights(self):
        """Report: Kaiming normal for conv and linear layers, BatchNorm at
        constants. ``config.init`` picks the convolutions' fan (``kaiming_fan_out``,
        ``kaiming_fan_in``) or leaves every layer at torch's own default
        (``torch_default``: Kaiming uniform with a = sqrt(5), BN weight 1, bias 0).
        Two choices the report leaves open decide whether the deep presets
        train at its lr 0.1:
        * Linear layers use fan_in. With fan_out the 10-way classifier gets
          std sqrt(2/10) and the untrained resnet-seed starts at loss 17
          (ln 10 = 2.3); at lr 0.1 it then collapsed to chance on the
          synthetic set, on CPU and on an H200.
        * With ``config.zero_init_residual`` the last BatchNorm of every
          residual branch starts at weight 0 (Goyal et al. 2017, torchvision's
          `zero_init_residual`): each block starts as the identity, so 21
          stacked blocks do not inflate the activations. Every other
          BatchNorm starts at weight 1, bias 0.
        """
        mode = self.config.init
        if mode != "torch_default":
            fan = "fan_out" if mode == "kaiming_fan_out" else "fan_in"
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode=fan, nonlinearity="relu")
                elif isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem_se(self.stem(x)))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, the quantity the 5M budget is about."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
