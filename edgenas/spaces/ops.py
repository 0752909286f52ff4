"""Building blocks shared by the spaces' networks and supernets.

The DARTS operations (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search",
ICLR 2019, `operations.py`): ReLU-conv-BN, separable and dilated depthwise convolutions,
and the factorized reduction; plus the channel shuffle of partial-channel supernets
(PC-DARTS, Xu et al., ICLR 2020). The mobile blocks: MobileNetV2's inverted residual
(Sandler et al., CVPR 2018) with MobileNetV3's squeeze-excite and h-swish (Howard et al.,
ICCV 2019), shared by the mobile space and the stock MobileNet baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, the conv op of NAS-Bench-201 and the preprocessing of DARTS cells."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


class DilConv(nn.Sequential):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN (DARTS `dil_conv_kxk`)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two ReLU -> depthwise -> pointwise -> BN blocks; only the first strides (DARTS `sep_conv_kxk`)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class FactorizedReduce(nn.Module):
    """Halve the side with two stride-2 1x1 convs, the second shifted by one pixel, concatenated, then BN.

    DARTS' skip connection at stride 2 and the preprocessing after a reduction. An odd side
    is padded by one pixel on the shifted path, so both halves have ⌈side/2⌉ like the
    stride-2 ops they are summed with (DARTS' own code meets even sides only).
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even output width, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            shifted = F.pad(shifted, (0, w % 2, 0, h % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave `groups` channel groups (ShuffleNet): channel g*n+i moves to i*groups+g."""
    if groups == 1:
        return x
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class OpBank(nn.Module):
    """Every candidate op of a supernet on one input's searched channels: the first C/K (partial
    channels, PC-DARTS), taken to C/K/b by a 1×1 conv-BN when `bottleneck` b > 1 (DCA-NAS). One bank
    per edge, or per source node/state shared by the edges leaving it (DCA-NAS Eq. 5).

    `make(name, channels)` builds op `name` (None for `none`, which is never computed).
    """

    def __init__(
        self,
        channels: int,
        k: int,
        bottleneck: int,
        names: tuple[str, ...],
        make: Callable[[str, int], nn.Module | None],
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.k, self.stride, self.part = k, stride, channels // k
        inner = self.part // bottleneck
        self.reduce = (
            nn.Sequential(nn.Conv2d(self.part, inner, 1, bias=False), nn.BatchNorm2d(inner)) if bottleneck > 1 else None
        )
        self.ops = nn.ModuleList([make(name, inner) or nn.Identity() for name in names])
        self.computes = [name != "none" for name in names]

    def forward(self, x: torch.Tensor, run: torch.Tensor) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """The output of every op that `run` (ops,) asks for (None for the others), and the op input."""
        xa = x[:, : self.part] if self.k > 1 else x
        if self.reduce is not None:
            xa = self.reduce(xa)
        outs = [op(xa) if self.computes[i] and bool(run[i]) else None for i, op in enumerate(self.ops)]
        return outs, xa


ALPHA_CELLS = ("all", "per-type")
"""Which cells of a supernet mix with the decision weights (DCA-NAS: one per cell type); the others run `fixed`."""


def check_supernet_options(
    width: int, k: int, bottleneck: int, alpha_cells: str, *, space: str, both: bool = True
) -> None:
    """One-line `ConfigError`s for supernet options a space cannot build (`both`: partial channels
    and a bottleneck may be combined)."""
    from edgenas.core.errors import ConfigError

    if alpha_cells not in ALPHA_CELLS:
        raise ConfigError(f"alpha_cells must be one of {', '.join(ALPHA_CELLS)}, got {alpha_cells!r}")
    if k < 1 or bottleneck < 1:
        raise ConfigError(f"partial-channel K and the bottleneck must be >= 1, got K={k}, bottleneck={bottleneck}")
    if not both and k > 1 and bottleneck > 1:
        raise ConfigError(
            f"the {space} supernet takes partial channels (K={k}) or a channel bottleneck ({bottleneck}), "
            "not both; set k=1 with a bottleneck"
        )
    if width % (k * bottleneck):
        raise ConfigError(f"search width {width} is not divisible by partial-channel K={k} × bottleneck {bottleneck}")


def fixed_cell_inputs(
    fixed: torch.Tensor, alive: torch.Tensor, none_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(op weights, edge weights, alive mask) that make a super cell compute the discrete cell of the
    one-hot (points, ops) arch `fixed`: only its ops run, and a point whose op is `none` weighs 0."""
    edges = fixed.clone()
    if none_index is not None:
        edges[:, none_index] = 0
    return fixed, edges.sum(dim=1), alive & (fixed > 0)


# --------------------------------------------------------------------------- mobile blocks
def make_divisible(value: float, divisor: int = 8) -> int:
    """`value` rounded to a multiple of `divisor`, not below 90 % of it (MobileNetV2's `_make_divisible`)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def activation(name: str) -> nn.Module:
    """`relu` or `hswish` (MobileNetV3's h-swish, x·ReLU6(x+3)/6)."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BN -> activation (none when `act` is None); `groups` = channels for a depthwise conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018) as in MobileNetV3: pool -> 1×1 conv -> ReLU -> 1×1 conv
    -> hard sigmoid, scaling each channel; `mid` channels in between."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual (Sandler et al., CVPR 2018) with MobileNetV3's optional SE:
    1×1 expand (skipped when `hidden` == `c_in`) -> k×k depthwise (stride) -> SE -> 1×1 project (linear),
    plus the input when the stride is 1 and the widths match."""

    def __init__(
        self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int, act: str, se_mid: int | None = None
    ) -> None:
        super().__init__()
        self.expand = ConvBNAct(c_in, hidden, 1, act=act) if hidden != c_in else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, se_mid) if se_mid else None
        self.project = ConvBNAct(hidden, c_out, 1)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return h + x if self.residual else h
