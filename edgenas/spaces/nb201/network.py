"""The NAS-Bench-201 network ("TinyNetwork") for a cell: stem, 3 stages of N cells at widths
C, 2C, 4C separated by residual reduction blocks, BN-ReLU, global pooling, classifier."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.spaces.nb201.arch import EDGES, NUM_NODES, NB201Arch
from edgenas.spaces.ops import ReLUConvBN


def make_op(name: str, channels: int) -> nn.Module | None:
    """The module for one cell op at `channels` (stride 1); None for the zero op."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ArchError(f"unknown op {name!r}")


class NB201Cell(nn.Module):
    """One cell. Only live edges are built: zero ops and dead branches cost nothing."""

    def __init__(self, arch: NB201Arch, channels: int) -> None:
        super().__init__()
        self.arch_str = str(arch)
        self.edges = nn.ModuleDict()
        self.edge_list: list[tuple[int, int, str]] = []
        for k in arch.live_edges():
            (to, frm), op = EDGES[k], arch.ops[k]
            key = f"{to}_{frm}"
            self.edges[key] = make_op(op, channels)
            self.edge_list.append((to, frm, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
        for to, frm, key in self.edge_list:
            out = self.edges[key](nodes[frm])
            nodes[to] = out if nodes[to] is None else nodes[to] + out
        result = nodes[-1]
        # No path from input to output: the cell outputs zeros (kept in the graph).
        return x * 0.0 if result is None else result


class ResNetBasicBlock(nn.Module):
    """The reduction block between stages: two ReLU-conv-BN plus an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            # ceil_mode keeps odd sizes aligned with the stride-2 conv (17 -> 9 on both paths)
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def build_tiny_layout(net: nn.Module, shape: NetShape, make_cell: Callable[[int], nn.Module]) -> None:
    """Give `net` the TinyNetwork layout: stem, 3 stages of `shape.cells` cells from `make_cell(C)` at
    widths C, 2C, 4C with residual reductions between them, then BN-ReLU, pooling and a classifier.

    Shared by the discrete network and the search supernet, so both have the same layout.
    """
    c = shape.width
    net.stem = nn.Sequential(nn.Conv2d(shape.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
    blocks: list[nn.Module] = []
    c_prev = c
    for stage, mult in enumerate((1, 2, 4)):
        c_stage = c * mult
        if stage > 0:
            blocks.append(ResNetBasicBlock(c_prev, c_stage, stride=2))
        blocks.extend(make_cell(c_stage) for _ in range(shape.cells))
        c_prev = c_stage
    net.blocks = nn.ModuleList(blocks)
    net.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(c_prev, shape.num_classes)


class NB201Network(nn.Module):
    """TinyNetwork: stem, 3 stages of N cells, residual reductions, classifier.

    `forward_features` returns the "primary block" outputs AZ-NAS and feature KD use:
    the stem output, then every cell and reduction block output (3N + 3 tensors).
    """

    def __init__(self, arch: NB201Arch, shape: NetShape) -> None:
        super().__init__()
        if shape.width < 1 or shape.cells < 1:
            raise ArchError(f"width and cells must be >= 1, got width={shape.width} cells={shape.cells}")
        if shape.resolution < 4:
            raise ArchError(f"resolution {shape.resolution} is too small for two stride-2 reductions (need >= 4)")
        self.arch = arch
        self.shape = shape
        build_tiny_layout(self, shape, lambda channels: NB201Cell(arch, channels))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and every block output."""
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        return feats

    def head(self, h: torch.Tensor, modulate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Logits from the last block's output; `modulate` (e.g. a teacher's FiLM) acts between the final BN
        and its ReLU (placed before the BN, a per-channel scale and shift would be normalised away)."""
        bn, relu = self.lastact
        h = bn(h)
        if modulate is not None:
            h = modulate(h)
        return self.classifier(self.pool(relu(h)).flatten(1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the list of block outputs (stem first)."""
        feats = self.features(x)
        out = self.pool(self.lastact(feats[-1])).flatten(1)
        return self.classifier(out), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.pool(self.lastact(h)).flatten(1))
