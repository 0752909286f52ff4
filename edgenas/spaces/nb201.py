"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG of 4 nodes; each of its 6 edges (j <- i, i < j) carries one of 5 ops, so
the space holds 5**6 = 15,625 cells. The network ("TinyNetwork") is a stem, three stages
of N identical cells at widths C, 2C, 4C separated by residual reduction blocks, then
BN-ReLU, global pooling and a linear classifier. Canonical string:
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node 1, node 2, node 3; `~i` = input node).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch, NetShape, SearchSpace

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edges in canonical order: (to_node, from_node).
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_NODES = 4


@dataclass(frozen=True)
class NB201Arch(Arch):
    """One NAS-Bench-201 cell: the op on each of the 6 edges, in `EDGES` order."""

    ops: tuple[str, ...]
    space_name = "nb201"

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ArchError(f"an NB201 cell has {len(EDGES)} edges, got {len(self.ops)} ops")
        for (to, frm), op in zip(EDGES, self.ops, strict=True):
            if op not in OPS:
                raise ArchError(f"unknown op {op!r} on edge {frm}->{to}; choose one of {', '.join(OPS)}")

    @classmethod
    def parse(cls, text: str) -> NB201Arch:
        """Parse `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; errors name the bad token."""
        s = text.strip()
        if not s:
            raise ArchError("empty architecture string; expected e.g. " + EXAMPLE)
        groups = s.split("+")
        if len(groups) != NUM_NODES - 1:
            raise ArchError(
                f"{text!r}: expected {NUM_NODES - 1} node groups separated by '+', found {len(groups)}; e.g. {EXAMPLE}"
            )
        ops: list[str] = []
        for node, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise ArchError(f"{text!r}: node {node} group {group!r} must start and end with '|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != node:
                raise ArchError(f"{text!r}: node {node} needs {node} input edge(s), found {len(tokens)} in {group!r}")
            for expected_src, token in enumerate(tokens):
                op, sep, src = token.partition("~")
                if not sep:
                    raise ArchError(f"{text!r}: token {token!r} of node {node} must look like 'op~input'")
                if op not in OPS:
                    raise ArchError(f"{text!r}: unknown op {op!r} in token {token!r}; choose one of {', '.join(OPS)}")
                if src != str(expected_src):
                    raise ArchError(
                        f"{text!r}: token {token!r} of node {node} must read from input {expected_src}, not {src!r}"
                    )
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        groups, k = [], 0
        for node in range(1, NUM_NODES):
            groups.append("|" + "|".join(f"{self.ops[k + i]}~{i}" for i in range(node)) + "|")
            k += node
        return "+".join(groups)

    def live_edges(self) -> list[int]:
        """Indices of edges on some input-to-output path of non-zero ops.

        Other edges compute values nobody uses (or read a zero node); a deployed graph
        drops them, so they are not built and cost nothing.
        """
        forward = {0}  # nodes reachable from the input
        for (to, frm), op in zip(EDGES, self.ops, strict=True):
            if op != "none" and frm in forward:
                forward.add(to)
        backward = {NUM_NODES - 1}  # nodes that reach the output
        for k in reversed(range(len(EDGES))):
            to, frm = EDGES[k]
            if self.ops[k] != "none" and to in backward:
                backward.add(frm)
        return [
            k
            for k, ((to, frm), op) in enumerate(zip(EDGES, self.ops, strict=True))
            if op != "none" and frm in forward and to in backward
        ]

    @property
    def is_connected(self) -> bool:
        """False when no path of non-zero ops joins input and output (the cell outputs zeros)."""
        return bool(self.live_edges())

    @property
    def index(self) -> int:
        """Position in `NB201Space.enumerate()` (base-5 digits, first edge most significant)."""
        idx = 0
        for op in self.ops:
            idx = idx * len(OPS) + OPS.index(op)
        return idx

    @classmethod
    def from_index(cls, index: int) -> NB201Arch:
        """Inverse of `index`."""
        if not 0 <= index < len(OPS) ** len(EDGES):
            raise ArchError(f"NB201 index {index} out of range 0..{len(OPS) ** len(EDGES) - 1}")
        ops = []
        for _ in EDGES:
            index, digit = divmod(index, len(OPS))
            ops.append(OPS[digit])
        return cls(tuple(reversed(ops)))


EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, the conv op of NAS-Bench-201."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )


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

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the list of block outputs (stem first)."""
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        out = self.pool(self.lastact(feats[-1])).flatten(1)
        return self.classifier(out), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.pool(self.lastact(h)).flatten(1))


class NB201Space(SearchSpace):
    """The 15,625-cell NAS-Bench-201 space."""

    name = "nb201"
    ops = OPS
    edges = EDGES

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)

    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return NB201Arch(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))

    def mutate(self, arch: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Change the op of one random edge to a different random op."""
        ops = list(arch.ops)
        edge = int(rng.integers(len(EDGES)))
        choices = [op for op in OPS if op != ops[edge]]
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return NB201Arch(tuple(ops))

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def enumerate(self) -> Iterator[NB201Arch]:
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield NB201Arch(ops)

    def build(self, arch: Arch, shape: NetShape) -> NB201Network:
        if not isinstance(arch, NB201Arch):
            arch = NB201Arch.parse(str(arch))
        return NB201Network(arch, shape)
