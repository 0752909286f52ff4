"""Stock MobileNets with a width multiplier: the networks a user would deploy instead of a searched one.

- MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
  CVPR 2018, Table 2): 3×3 stem to 32, bottlenecks (t, c, n, s) = (1,16,1,1) (6,24,2,2)
  (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1), ReLU6, a 1×1 conv to 1280
  (max(1, α)·1280), global pool, classifier.
- MobileNetV3-Small (Howard et al., "Searching for MobileNetV3", ICCV 2019, Table 2): 3×3
  stem to 16 (h-swish), 11 bneck blocks (kernel, expansion width, output, SE, activation,
  stride), a 1×1 conv to 576 (h-swish), global pool, a 1×1 conv to 1024 (h-swish, no BN),
  classifier; SE squeezes to ⌈exp/4⌉₈ with a hard sigmoid.
Channels scale by the multiplier α and round to multiples of 8 (the papers' `_make_divisible`).
For inputs under 96 pixels (28/32-pixel data) the stem and the first strided block keep
stride 1, the usual CIFAR adaptation, so the last maps are 4×4 as in the mobile space's small
macro. torchvision is not used (not installed with our CPU torch); the tables above are.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.spaces.ops import ConvBNAct, InvertedResidual, make_divisible

FAMILIES = ("mbv3-small", "mbv2")
LARGE_MIN_RESOLUTION = 96

# MobileNetV2: (expansion t, output c, repeats n, stride s)
MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
# MobileNetV3-Small: (kernel, expansion width, output, SE, activation, stride)
MBV3_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),
    (5, 240, 40, True, "hswish", 1),
    (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1),
    (5, 144, 48, True, "hswish", 1),
    (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1),
    (5, 576, 96, True, "hswish", 1),
)


def stock_name(family: str, multiplier: float) -> str:
    """The stock network's arch string, `family@multiplier` (e.g. `mbv3-small@0.75`)."""
    return f"{family}@{multiplier:g}"


class _ReLU6Block(nn.Module):
    """MobileNetV2's inverted residual (ReLU6, no SE)."""

    def __init__(self, c_in: int, hidden: int, c_out: int, stride: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if hidden != c_in:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x if self.residual else self.body(x)


class _Head(nn.Module):
    """Global pool, the optional 1×1 feature mix, the linear classifier; `in_features`: the width it reads."""

    def __init__(self, in_features: int, mix: nn.Module, features: int, num_classes: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mix = mix
        self.linear = nn.Linear(features, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mix(self.pool(h)).flatten(1))


class StockMobileNet(nn.Module):
    """A stock MobileNet (`family`) at width multiplier `multiplier` for `shape`'s input and classes.

    `arch` is `family@multiplier` (e.g. `mbv3-small@0.75`); `forward_features` returns the stem
    output, every block's output and the last 1×1 conv's, as the spaces' networks do.
    """

    def __init__(self, family: str, multiplier: float, shape: NetShape) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"unknown baseline family {family!r}; choose one of {', '.join(FAMILIES)}")
        if not multiplier > 0:
            raise ConfigError(f"width multiplier must be > 0, got {multiplier}")
        self.family, self.multiplier, self.shape = family, float(multiplier), shape
        self.arch = stock_name(family, multiplier)
        small = shape.resolution < LARGE_MIN_RESOLUTION
        blocks: list[nn.Module] = []
        if family == "mbv2":
            c = make_divisible(32 * multiplier)
            self.stem = nn.Sequential(
                nn.Conv2d(shape.in_channels, c, 3, 1 if small else 2, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU6(inplace=True),
            )
            first_stride_seen = False
            for t, out, n, s in MBV2:
                c_out = make_divisible(out * multiplier)
                for i in range(n):
                    stride = s if i == 0 else 1
                    if small and stride == 2 and not first_stride_seen:
                        stride, first_stride_seen = 1, True
                    blocks.append(_ReLU6Block(c, round(c * t), c_out, stride))
                    c = c_out
            last = make_divisible(1280 * max(1.0, multiplier))
            self.final = nn.Sequential(nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True))
            mix_layer: nn.Module = nn.Identity()
            features = last
        else:
            c = make_divisible(16 * multiplier)
            self.stem = ConvBNAct(shape.in_channels, c, 3, 1 if small else 2, act="hswish")
            for i, (k, exp, out, se, act, s) in enumerate(MBV3_SMALL):
                stride = 1 if small and i == 0 else s
                hidden, c_out = make_divisible(exp * multiplier), make_divisible(out * multiplier)
                blocks.append(
                    InvertedResidual(c, hidden, c_out, k, stride, act, make_divisible(hidden // 4) if se else None)
                )
                c = c_out
            last = make_divisible(576 * multiplier)
            self.final = ConvBNAct(c, last, 1, act="hswish")
            mix = make_divisible(1024 * multiplier)
            mix_layer = nn.Sequential(nn.Conv2d(last, mix, 1), nn.Hardswish())
            features = mix
        self.blocks = nn.ModuleList(blocks)
        self.classifier = _Head(last, mix_layer, features, shape.num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        feats.append(self.final(feats[-1]))
        return feats

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.classifier(h)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.features(x)
        return self.head(feats[-1]), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)[-1])
