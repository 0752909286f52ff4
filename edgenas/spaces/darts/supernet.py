"""The DARTS weight-sharing supernet that differentiable searches train (PC-DARTS style).

Every edge node i <- input j (14 per cell) is a mixed op over DARTS' 8 ops, weighted by the
decision weights the *search method* passes in (one row per choice point: 14 for the normal
cells, 14 for the reduction cells, shared by every cell of that type, as in DARTS). Partial
channels (Xu et al., "PC-DARTS", ICLR 2020): only the first C/K channels of an edge go
through its mixed op, the rest bypass it (2×2 max-pooled on a reducing edge) and a channel
shuffle mixes the two; `edge_weights` scale each edge before its node sums (PC-DARTS' edge
normalisation). `none` holds weight but is never computed; the `alive` mask switches ops
off for good (DNAD's deletion) and a dead op is not run.

Differences from DARTS' search network, so that `extract_subnet` gives *the* deployable
network (`DartsNetwork`) and it computes exactly what the supernet computes at one-hot
weights in eval mode: every BN is affine (DARTS searches with affine=False), and pools get
no BN (DARTS adds an affine-free BN after each pool in the mixed op; the deployed cells have
none, so the subnet would either lose it and compute something else, or carry BNs that no
deployed network has).

DCA-NAS's forms (Dutta et al., PReMI 2023, Sec. 3.3), options of `DartsSpace.supernet`, as
NB201's (`spaces/nb201/supernet.py`): `bottleneck` b — a 1×1 conv-BN takes an edge's input
from C to C/b channels, the 8 ops run there (a reducing edge keeps its stride), and a 1×1
conv-BN per edge takes their weighted sum back to C (full channels only: K = 1);
`share_sources` (Eq. 5) — one op bank per (cell, source state j), j the two cell inputs and
nodes 2..4, run once and mixed into every edge i <- j with that edge's weights. Either one
builds `BankedCell`s; without them the cells and their parameter names are the PC-DARTS ones.
`alpha_cells="per-type"` (Sec. 3.3: of the 8 search cells only one normal and one reduction
cell carry α): the first normal and the first reduction cell mix every op with the decision
weights; the other cells run the discrete cell `fixed` that the search passes (the current
top-weighted arch, `forward(..., fixed=...)`), computing only its ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.spaces.darts.arch import CELL_TYPES, EDGES, NODES, OPS, DartsArch
from edgenas.spaces.darts.network import CellSpec, DartsNetwork, cell_layout, make_op, make_preprocess, make_stem
from edgenas.spaces.ops import OpBank, channel_shuffle, check_supernet_options, fixed_cell_inputs

POINTS_PER_CELL = len(EDGES)


class PartialMixedOp(nn.Module):
    """Σ_o w_o · o(x[:, :C/K]) on the first C/K channels, the rest passed (pooled when reducing), shuffled."""

    def __init__(self, channels: int, stride: int, k: int) -> None:
        super().__init__()
        self.k, self.stride = k, stride
        self.part = channels // k
        # "none" is all zeros: it holds weight in the mixture but is never computed.
        self.ops = nn.ModuleList([make_op(name, self.part, stride) or nn.Identity() for name in OPS])
        self.computes = [name != "none" for name in OPS]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        xa = x[:, : self.part] if self.k > 1 else x
        out: torch.Tensor | None = None
        for i, op in enumerate(self.ops):
            if not self.computes[i] or not bool(alive[i]):
                continue
            y = weights[i] * op(xa)
            out = y if out is None else out + y
        if out is None:  # every computing op deleted: the edge contributes zeros
            out = (xa[:, :, :: self.stride, :: self.stride] if self.stride > 1 else xa) * 0.0
        if self.k == 1:
            return out
        rest = x[:, self.part :]
        if self.stride > 1:
            rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
        return channel_shuffle(torch.cat([out, rest], dim=1), self.k)


class SuperCell(nn.Module):
    """A DARTS cell whose 14 edges are partial mixed ops."""

    def __init__(self, spec: CellSpec, k: int) -> None:
        super().__init__()
        self.reduction = spec.reduction
        self.preprocess0, self.preprocess1 = make_preprocess(spec)
        self.edges = nn.ModuleList([PartialMixedOp(spec.c, spec.stride(j), k) for _, j in EDGES])

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor,
        alive: torch.Tensor,
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        e = 0
        for node in NODES:
            total: torch.Tensor | None = None
            for j in range(node):
                y = edge_weights[e] * self.edges[e](states[j], op_weights[e], alive[e])
                total = y if total is None else total + y
                e += 1
            assert total is not None
            states.append(total)
        return torch.cat(states[2:], dim=1)


def _bank(channels: int, stride: int, k: int, bottleneck: int) -> OpBank:
    """The 8 DARTS ops of one edge or source state at `stride`."""
    return OpBank(channels, k, bottleneck, OPS, lambda name, c: make_op(name, c, stride), stride)


class BankedCell(nn.Module):
    """A DARTS cell whose edges mix the outputs of op banks: one bank per edge, or with
    `share_sources` one per source state, shared by every edge leaving it (DCA-NAS Eq. 5). With a
    bottleneck each edge takes its weighted sum back to C with its own 1×1 conv-BN."""

    def __init__(self, spec: CellSpec, k: int, bottleneck: int, share_sources: bool) -> None:
        super().__init__()
        self.reduction = spec.reduction
        self.k, self.part, self.share = k, spec.c // k, share_sources
        self.preprocess0, self.preprocess1 = make_preprocess(spec)
        # bank b serves source state SOURCES[b]: states 0..4 (node 5 feeds no edge), or one per edge
        self.sources = sorted({j for _, j in EDGES}) if share_sources else [j for _, j in EDGES]
        self.banks = nn.ModuleList([_bank(spec.c, spec.stride(j), k, bottleneck) for j in self.sources])
        inner = self.part // bottleneck
        self.expand = (
            nn.ModuleList(
                [nn.Sequential(nn.Conv2d(inner, self.part, 1, bias=False), nn.BatchNorm2d(self.part)) for _ in EDGES]
            )
            if bottleneck > 1
            else None
        )

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor,
        alive: torch.Tensor,
    ) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        cache: dict[int, tuple[list[torch.Tensor | None], torch.Tensor]] = {}
        e = 0
        for node in NODES:
            total: torch.Tensor | None = None
            for j in range(node):
                bank = self.sources.index(j) if self.share else e
                if bank not in cache:  # a shared bank runs the ops that some edge leaving j keeps alive
                    rows = [r for r, (_i, src) in enumerate(EDGES) if src == j] if self.share else [e]
                    cache[bank] = self.banks[bank](states[j], alive[rows].any(dim=0))
                outs, xa = cache[bank]
                mix: torch.Tensor | None = None
                for o, out in enumerate(outs):
                    if out is not None and bool(alive[e, o]):
                        y = op_weights[e, o] * out
                        mix = y if mix is None else mix + y
                stride = self.banks[bank].stride
                if mix is None:  # every computing op of this edge deleted: zeros
                    mix = (xa[:, :, ::stride, ::stride] if stride > 1 else xa) * 0.0
                if self.expand is not None:
                    mix = self.expand[e](mix)
                if self.k > 1:
                    rest = states[j][:, self.part :]
                    if stride > 1:
                        rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
                    mix = channel_shuffle(torch.cat([mix, rest], dim=1), self.k)
                y = edge_weights[e] * mix
                total = y if total is None else total + y
                e += 1
            assert total is not None
            states.append(total)
        return torch.cat(states[2:], dim=1)


class DartsSuperNet(nn.Module):
    """The DARTS network layout (stem, N super cells, pooling, classifier).

    `forward(x, op_weights, edge_weights=None)`: `op_weights` is (28, 8), the normal cells'
    14 points then the reduction cells' 14 (`DartsSpace.choice_points` order), `edge_weights`
    (28,) defaults to ones. `bottleneck` and `share_sources`: DCA-NAS's forms (`BankedCell`,
    module docstring).
    """

    def __init__(
        self,
        shape: NetShape,
        k: int = 4,
        bottleneck: int = 1,
        share_sources: bool = False,
        alpha_cells: str = "all",
    ) -> None:
        super().__init__()
        check_supernet_options(shape.width, k, bottleneck, alpha_cells, space="DARTS", both=False)
        self.shape = shape
        self.k, self.bottleneck, self.share_sources = k, bottleneck, share_sources
        self.stem = make_stem(shape)
        specs = cell_layout(shape)
        if bottleneck == 1 and not share_sources:
            self.cells = nn.ModuleList([SuperCell(s, k) for s in specs])
        else:
            self.cells = nn.ModuleList([BankedCell(s, k, bottleneck, share_sources) for s in specs])
        # the cells that carry α: all, or the first of each type (DCA-NAS)
        self.alpha_cells = alpha_cells
        self.carriers = (
            frozenset(range(len(specs)))
            if alpha_cells == "all"
            else frozenset(next(b for b, s in enumerate(specs) if s.reduction == red) for red in (False, True))
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(len(NODES) * specs[-1].c, shape.num_classes)
        points = len(CELL_TYPES) * POINTS_PER_CELL
        self.register_buffer("alive", torch.ones(points, len(OPS), dtype=torch.bool))

    def forward_features(
        self,
        x: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the block outputs (stem first), as `DartsNetwork.forward_features`.

        `fixed`: a one-hot (28, 8) arch run by the cells that do not carry α (`alpha_cells`);
        without it every cell mixes with `op_weights`.
        """
        if edge_weights is None:
            edge_weights = torch.ones(len(self.alive), device=x.device, dtype=x.dtype)
        if fixed is not None:
            fixed, fixed_edges, fixed_alive = fixed_cell_inputs(fixed, self.alive, OPS.index("none"))
        feats = [self.stem(x)]
        s0 = s1 = feats[0]
        for b, cell in enumerate(self.cells):
            rows = slice(POINTS_PER_CELL, None) if cell.reduction else slice(0, POINTS_PER_CELL)
            if fixed is None or b in self.carriers:
                out = cell(s0, s1, op_weights[rows], edge_weights[rows], self.alive[rows])
            else:
                out = cell(s0, s1, fixed[rows], fixed_edges[rows], fixed_alive[rows])
            s0, s1 = s1, out
            feats.append(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), feats

    def forward(
        self,
        x: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward_features(x, op_weights, edge_weights, fixed)[0]


def extract_subnet(supernet: DartsSuperNet, arch: DartsArch) -> DartsNetwork:
    """The `DartsNetwork` of `arch` with the supernet's weights (full channels, K = 1, no edge weights).

    Stem, preprocessing and classifier copy over as they are; each op of each cell takes the
    weights of that op on that edge of the supernet, so in eval mode the two compute the same.
    """
    if supernet.k != 1:
        raise ConfigError(f"a subnet can only be taken from a full-channel supernet (K=1), not K={supernet.k}")
    if supernet.bottleneck != 1 or supernet.share_sources:
        raise ConfigError("a subnet cannot be taken from a supernet with a channel bottleneck or shared source ops")
    net = DartsNetwork(arch, supernet.shape)
    state = {}
    # (cell kind, edge index) -> position of the op in the discrete cell, for the ops the arch uses
    where: dict[tuple[str, int], tuple[int, str]] = {}
    for kind in CELL_TYPES:
        for m, (op, j) in enumerate(arch.cell(kind)):
            node = NODES[m // 2]
            where[(kind, EDGES.index((node, j)))] = (m, op)
    for name, tensor in supernet.state_dict().items():
        parts = name.split(".")
        if parts[0] == "cells" and parts[2] == "edges":
            # cells.{b}.edges.{e}.ops.{o}.rest -> cells.{b}.ops.{m}.rest for the op the arch puts there
            b, e, o, rest = int(parts[1]), int(parts[3]), int(parts[5]), parts[6:]
            kind = "reduce" if supernet.cells[b].reduction else "normal"
            if (kind, e) in where and where[(kind, e)][1] == OPS[o]:
                state[".".join(["cells", str(b), "ops", str(where[(kind, e)][0]), *rest])] = tensor
        elif name != "alive":
            state[name] = tensor
    net.load_state_dict(state)
    return net.to(next(supernet.parameters()).device)
