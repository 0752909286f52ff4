"""The DARTS network for a genotype (Liu et al., ICLR 2019, `model.py: NetworkCIFAR`).

A 3×3 conv stem to 3C channels + BN (stride 1: it suits 28×28 and 32×32 inputs alike), then
N cells; cells N//3 and 2N//3 are reduction cells that double the width and halve the side
(⌈side/2⌉). Each cell preprocesses its two inputs, the outputs of the cells two back and
one back, to C channels (a factorized reduction for the first when the previous cell
reduced, else ReLU-conv1x1-BN), computes 4 nodes as the sum of two ops on earlier states,
and concatenates the 4 nodes (4C channels). Global pooling and a linear classifier follow.

For final training (DARTS' evaluation protocol) two extras can be switched on, both off in
the deployed network: drop-path on every op but the identity, and an auxiliary classifier on
the output of cell 2N//3, whose loss is added during training only (it is never exported and
not part of the deployed cost). The auxiliary head is DARTS' `AuxiliaryHeadCIFAR` with an
adaptive 2×2 average pool instead of its 5×5/3 pool, so 7×7 maps (28-pixel inputs) fit too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.spaces.darts.arch import INPUTS_PER_NODE, NODES, DartsArch
from edgenas.spaces.ops import DilConv, FactorizedReduce, ReLUConvBN, SepConv

STEM_MULTIPLIER = 3
MIN_RESOLUTION = 4


def make_op(name: str, channels: int, stride: int) -> nn.Module | None:
    """The module of one DARTS op at `channels` and `stride`; None for the zero op."""
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "sep_conv_3x3":
        return SepConv(channels, channels, 3, stride, 1)
    if name == "sep_conv_5x5":
        return SepConv(channels, channels, 5, stride, 2)
    if name == "dil_conv_3x3":
        return DilConv(channels, channels, 3, stride, 2, 2)
    if name == "dil_conv_5x5":
        return DilConv(channels, channels, 5, stride, 4, 2)
    raise ArchError(f"unknown DARTS op {name!r}")


@dataclass(frozen=True)
class CellSpec:
    """Where one cell sits: its type, its inputs' widths and sides, and its own width C."""

    index: int
    reduction: bool
    reduction_prev: bool
    c_pp: int  # channels of input 0 (the cell two back, or the stem)
    c_p: int  # channels of input 1 (the cell one back, or the stem)
    c: int  # width of the cell's nodes; the cell outputs 4c channels
    side_pp: int  # side of input 0
    side: int  # side of input 1 (and of input 0 after preprocessing)

    @property
    def kind(self) -> str:
        return "reduce" if self.reduction else "normal"

    @property
    def side_out(self) -> int:
        return -(-self.side // 2) if self.reduction else self.side

    def stride(self, j: int) -> int:
        """Stride of an op reading input `j` (the cell's inputs are reduced in a reduction cell)."""
        return 2 if self.reduction and j < 2 else 1

    def op_side(self, j: int) -> int:
        """Side of the map an op reading input `j` sees."""
        return self.side if j < 2 else self.side_out


def reduction_cells(cells: int) -> set[int]:
    """Indices of the reduction cells: N//3 and 2N//3 (the same cell for N = 1: one reduction)."""
    return {cells // 3, 2 * cells // 3}


def aux_cell(cells: int) -> int:
    """The cell whose output feeds the auxiliary head (2N//3)."""
    return 2 * cells // 3


def cell_layout(shape: NetShape) -> list[CellSpec]:
    """The `CellSpec` of every cell of the network at `shape` (shared by network, supernet and costs)."""
    check_shape(shape)
    reductions = reduction_cells(shape.cells)
    c_pp = c_p = STEM_MULTIPLIER * shape.width
    c = shape.width
    side_pp = side = shape.resolution
    red_prev = False
    specs = []
    for i in range(shape.cells):
        red = i in reductions
        if red:
            c *= 2
        spec = CellSpec(i, red, red_prev, c_pp, c_p, c, side_pp, side)
        specs.append(spec)
        c_pp, c_p = c_p, len(NODES) * c
        side_pp, side = side, spec.side_out
        red_prev = red
    return specs


def check_shape(shape: NetShape) -> None:
    if shape.width < 1 or shape.cells < 1:
        raise ArchError(f"width and cells must be >= 1, got width={shape.width} cells={shape.cells}")
    if shape.resolution < MIN_RESOLUTION:
        raise ArchError(f"resolution {shape.resolution} is too small for a DARTS network (need >= {MIN_RESOLUTION})")


def make_stem(shape: NetShape) -> nn.Sequential:
    c = STEM_MULTIPLIER * shape.width
    return nn.Sequential(nn.Conv2d(shape.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


def make_preprocess(spec: CellSpec) -> tuple[nn.Module, nn.Module]:
    """The two preprocessing blocks of a cell (input 0, input 1)."""
    pre0 = FactorizedReduce(spec.c_pp, spec.c) if spec.reduction_prev else ReLUConvBN(spec.c_pp, spec.c, 1, 1, 0)
    return pre0, ReLUConvBN(spec.c_p, spec.c, 1, 1, 0)


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples with probability `prob`, scaling the rest by 1/(1-prob) (DARTS `utils.drop_path`)."""
    keep = 1.0 - prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class DartsCell(nn.Module):
    """One cell of a genotype: preprocessing, 4 nodes of 2 ops each, concatenation of the nodes."""

    def __init__(self, pairs: tuple[tuple[str, int], ...], spec: CellSpec) -> None:
        super().__init__()
        self.reduction = spec.reduction
        self.preprocess0, self.preprocess1 = make_preprocess(spec)
        self.inputs = [j for _, j in pairs]
        ops = [make_op(name, spec.c, spec.stride(j)) for name, j in pairs]
        self.ops = nn.ModuleList([op for op in ops if op is not None])
        if len(self.ops) != len(pairs):
            raise ArchError("a DARTS cell has no 'none' ops")

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(len(NODES)):
            total: torch.Tensor | None = None
            for m in range(INPUTS_PER_NODE * k, INPUTS_PER_NODE * (k + 1)):
                op = self.ops[m]
                h = op(states[self.inputs[m]])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None
            states.append(total)
        return torch.cat(states[2:], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier (`AuxiliaryHeadCIFAR`), with adaptive 2×2 pooling for any side."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """NetworkCIFAR for a genotype: stem, N cells (reductions at N//3 and 2N//3), pooling, classifier.

    `forward_features` returns the stem output and every cell output (N + 1 tensors), the
    "primary blocks" of the AZ-NAS proxies and feature KD. `enable_training_extras` adds the
    auxiliary head and drop-path for final training; `aux_logits` then holds the auxiliary
    head's output of the last training forward, and `drop_auxiliary` removes the head.
    """

    def __init__(self, arch: DartsArch, shape: NetShape) -> None:
        super().__init__()
        self.arch = arch
        self.shape = shape
        self.stem = make_stem(shape)
        specs = cell_layout(shape)
        self.cells = nn.ModuleList([DartsCell(arch.cell(s.kind), s) for s in specs])
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(len(NODES) * specs[-1].c, shape.num_classes)
        self.auxiliary_head: AuxiliaryHead | None = None
        self.drop_path_prob = 0.0
        self.aux_logits: torch.Tensor | None = None

    # -- final-training extras ------------------------------------------------------------
    def enable_training_extras(self, auxiliary: bool = False, drop_path_prob: float = 0.0) -> None:
        """Add DARTS' auxiliary head (at cell 2N//3) and/or set the drop-path probability."""
        if auxiliary and self.auxiliary_head is None:
            spec = cell_layout(self.shape)[aux_cell(self.shape.cells)]
            self.auxiliary_head = AuxiliaryHead(len(NODES) * spec.c, self.shape.num_classes)
        self.drop_path_prob = float(drop_path_prob)

    def drop_auxiliary(self) -> None:
        """Remove the auxiliary head (what is saved and deployed has none)."""
        self.auxiliary_head = None
        self.aux_logits = None

    # -- forward --------------------------------------------------------------------------
    def _cells(self, x: torch.Tensor, feats: list[torch.Tensor] | None) -> torch.Tensor:
        """The last cell's output; every block output is appended to `feats` when given (kept alive)."""
        s0 = s1 = self.stem(x)
        if feats is not None:
            feats.append(s1)
        aux_at = aux_cell(self.shape.cells)
        drop = self.drop_path_prob if self.training else 0.0
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop)
            if feats is not None:
                feats.append(s1)
            if i == aux_at and self.auxiliary_head is not None and self.training:
                self.aux_logits = self.auxiliary_head(s1)
        return s1

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and every cell output."""
        feats: list[torch.Tensor] = []
        self._cells(x, feats)
        return feats

    def head(self, h: torch.Tensor, modulate=None) -> torch.Tensor:
        """Logits from the last cell's output; `modulate` (e.g. a teacher's FiLM) acts on that output first."""
        if modulate is not None:
            h = modulate(h)
        return self.classifier(self.global_pooling(h).flatten(1))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the block outputs (stem first)."""
        feats = self.features(x)
        return self.head(feats[-1]), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._cells(x, None))
