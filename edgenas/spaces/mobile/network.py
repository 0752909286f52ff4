"""The network of a mobile arch: OFA-MobileNetV3's layout (Cai et al., ICLR 2020, `ofa_mbv3.py`).

Stem 3×3 conv (h-swish), a fixed first block (3×3 depthwise, expansion 1, ReLU), five stages
of inverted residuals (1×1 expand -> k×k depthwise -> SE -> 1×1 project, residual when the
stride is 1 and the widths match; the first block of a stage strides), then MobileNetV3's
head: a 1×1 conv to 6× the last width (h-swish), global pooling, a 1×1 conv to 8× the last
width (h-swish) and the classifier. Activation and SE are fixed per stage as in MobileNetV3-
Large: ReLU/no SE, ReLU/SE, h-swish/no SE, h-swish/SE, h-swish/SE.

`NetShape.width` is the stem width (16 in MobileNetV3); the stage widths scale with it from
24, 40, 80, 112, 160 (rounded to multiples of 8). Two macros, chosen by the input side: the
224-pixel one of OFA (stem stride 2, stage strides 2, 2, 2, 1, 2: /32), and a 28/32-pixel one
for small inputs (stem stride 1, stage strides 1, 2, 2, 1, 2: /8). `NetShape.cells` is not
used: the depth of every stage is in the arch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.spaces.mobile.arch import MAX_DEPTH, STAGES, MobileArch
from edgenas.spaces.ops import ConvBNAct, InvertedResidual, make_divisible

BASE_STEM = 16
BASE_WIDTHS = (24, 40, 80, 112, 160)  # OFA-MobileNetV3 stage widths at stem 16
ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
SE = (False, True, False, True, True)
STRIDES_224 = (2, 2, 2, 1, 2)  # stem stride 2 in front: /32
STRIDES_SMALL = (1, 2, 2, 1, 2)  # stem stride 1: /8 (28 -> 4, 32 -> 4)
LARGE_MIN_RESOLUTION = 96  # inputs from this side up get the 224-pixel macro
FINAL_EXPAND, FEATURE_MIX = 6, 8  # head widths as multiples of the last stage's (960, 1280 at 160)
SE_REDUCTION = 4
MIN_RESOLUTION = 4


@dataclass(frozen=True)
class BlockSpec:
    """Where one block sits: its input/output widths, stride, input side, activation and SE."""

    stage: int
    index: int  # within the stage, 0-based
    c_in: int
    c_out: int
    stride: int
    side: int  # input side
    act: str
    se: bool

    @property
    def side_out(self) -> int:
        return -(-self.side // self.stride)

    @property
    def optional(self) -> bool:
        """Blocks 3 and 4 of a stage: the depth choice can skip them."""
        return self.index >= 2

    def hidden(self, expansion: int) -> int:
        return make_divisible(self.c_in * expansion, 8)

    def se_mid(self, expansion: int) -> int | None:
        return make_divisible(self.hidden(expansion) // SE_REDUCTION, 8) if self.se else None

    def block(self, kernel: int, expansion: int, hidden: int | None = None) -> InvertedResidual:
        """The inverted residual of (kernel, expansion) here (`hidden` overrides the expanded width)."""
        h = self.hidden(expansion) if hidden is None else hidden
        mid = make_divisible(h // SE_REDUCTION, 8) if self.se else None
        return InvertedResidual(self.c_in, h, self.c_out, kernel, self.stride, self.act, mid)


@dataclass(frozen=True)
class Macro:
    """The fixed parts of the network at a shape: stem, first block, every block position, head."""

    stem_width: int
    stem_stride: int
    widths: tuple[int, ...]
    strides: tuple[int, ...]
    blocks: tuple[BlockSpec, ...]  # every position, MAX_DEPTH per stage, stage by stage
    head_side: int
    last_width: int

    @property
    def expand_width(self) -> int:
        return FINAL_EXPAND * self.last_width

    @property
    def mix_width(self) -> int:
        return FEATURE_MIX * self.last_width


def check_shape(shape: NetShape) -> None:
    if shape.width < 1:
        raise ArchError(f"width must be >= 1, got {shape.width}")
    if shape.resolution < MIN_RESOLUTION:
        raise ArchError(f"resolution {shape.resolution} is too small for a mobile network (need >= {MIN_RESOLUTION})")


def macro(shape: NetShape) -> Macro:
    """The layout at `shape` (every block position, whether an arch uses it or not)."""
    check_shape(shape)
    large = shape.resolution >= LARGE_MIN_RESOLUTION
    stem_stride = 2 if large else 1
    strides = STRIDES_224 if large else STRIDES_SMALL
    stem = make_divisible(shape.width, 8) if shape.width >= 8 else shape.width
    widths = tuple(make_divisible(w * shape.width / BASE_STEM, 8) for w in BASE_WIDTHS)
    side = -(-shape.resolution // stem_stride)
    c = stem
    specs = []
    for s in range(STAGES):
        for i in range(MAX_DEPTH):
            stride = strides[s] if i == 0 else 1
            spec = BlockSpec(s, i, c, widths[s], stride, side, ACTS[s], SE[s])
            specs.append(spec)
            c, side = widths[s], spec.side_out
    return Macro(stem, stem_stride, widths, strides, tuple(specs), side, widths[-1])


def make_stem(shape: NetShape, m: Macro) -> nn.Sequential:
    """3×3 conv (stride 1 or 2) -> BN -> h-swish, then the fixed first block (3×3 depthwise, e=1, ReLU)."""
    return nn.Sequential(
        ConvBNAct(shape.in_channels, m.stem_width, 3, m.stem_stride, act="hswish"),
        InvertedResidual(m.stem_width, m.stem_width, m.stem_width, 3, 1, "relu"),
    )


class MobileClassifier(nn.Module):
    """MobileNetV3's head after the final 1×1 expansion: global pool, 1×1 conv to 8C (h-swish), linear.

    `in_features` is the width it reads (the final expansion's, the network's last feature map),
    as an `nn.Linear` classifier's is elsewhere (feature KD and FiLM size themselves by it).
    """

    def __init__(self, m: Macro, num_classes: int) -> None:
        super().__init__()
        self.in_features = m.expand_width
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(m.expand_width, m.mix_width, 1, bias=False), nn.Hardswish())
        self.linear = nn.Linear(m.mix_width, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(self.feature_mix(self.pool(h)).flatten(1))


def make_final_expand(m: Macro) -> ConvBNAct:
    """The 1×1 conv to 6× the last width (h-swish) that ends the feature extractor."""
    return ConvBNAct(m.last_width, m.expand_width, 1, act="hswish")


def active_specs(arch: MobileArch, m: Macro) -> list[tuple[BlockSpec, int, int]]:
    """(position, kernel, expansion) of every block the arch builds, in order."""
    out = []
    for s, stage in enumerate(arch.stages):
        for i, (k, e) in enumerate(stage):
            out.append((m.blocks[s * MAX_DEPTH + i], k, e))
    return out


class MobileNetwork(nn.Module):
    """A mobile arch's network: stem (with the first block), the arch's blocks, final expansion, classifier.

    `forward_features` returns the stem output, every block's output and the final expansion's,
    the "primary blocks" of the AZ-NAS proxies and feature KD.
    """

    def __init__(self, arch: MobileArch, shape: NetShape) -> None:
        super().__init__()
        self.arch, self.shape = arch, shape
        m = macro(shape)
        self.stem = make_stem(shape, m)
        self.blocks = nn.ModuleList([spec.block(k, e) for spec, k, e in active_specs(arch, m)])
        self.final_expand = make_final_expand(m)
        self.classifier = MobileClassifier(m, shape.num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        feats.append(self.final_expand(feats[-1]))
        return feats

    def head(self, h: torch.Tensor, modulate=None) -> torch.Tensor:
        """Logits from the final expansion's output; `modulate` (e.g. a teacher's FiLM) acts on it first."""
        if modulate is not None:
            h = modulate(h)
        return self.classifier(h)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.features(x)
        return self.head(feats[-1]), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.final_expand(h))
