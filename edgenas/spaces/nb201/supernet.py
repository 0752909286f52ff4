"""The NB201 weight-sharing supernet that the differentiable searches (DCA-NAS, DNAD) train.

Every edge of the cell is a mixed op: all 5 ops run and their outputs are weighted by
per-edge op weights that the *search method* supplies at each forward pass (softmax(α)
for DCA-NAS, sigmoid attention for DNAD), so one supernet serves both methods.

Partial channels (Xu et al., "PC-DARTS: Partial Channel Connections for Memory-Efficient
Architecture Search", ICLR 2020): only 1/K of an edge's channels go through the mixed op;
the rest bypass it, and a channel shuffle mixes the two halves so every channel takes
the op path in some cell. Ops therefore run at C/K channels, which is what makes a
search step cheap. Edge normalisation: an optional weight per edge scales its output
before the node sums its inputs (PC-DARTS's β, which steadies the op choice under the
sampling noise of partial channels). The cell is NAS-Bench-201's (Dong & Yang, ICLR 2020).

Ops can be switched off for good (`alive` mask, DNAD's deletion); a dead op is not run.

DCA-NAS's forms (Dutta et al., PReMI 2023, Sec. 3.3), options of `NB201Space.supernet`:
`bottleneck` b — a 1×1 conv-BN takes an edge's input to C/b channels, the ops run there, and a
1×1 conv-BN per edge takes their weighted sum back to C; `share_sources` (Eq. 5) — the ops on
the output of node i are one set of modules, run once and mixed into every edge i -> j with
that edge's weights. Either one builds `BankedCell`s; without them the cell and its
parameter names are the PC-DARTS ones above. `alpha_cells="per-type"` (Sec. 3.3: only one
cell of each type carries α): the first cell mixes every op with the decision weights, the
other cells run the discrete cell `fixed` that the search passes (`forward(..., fixed=...)`).
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.spaces.nb201.arch import EDGES, NUM_NODES, OPS, NB201Arch
from edgenas.spaces.nb201.network import NB201Cell, NB201Network, build_tiny_layout, make_op
from edgenas.spaces.ops import OpBank, channel_shuffle, check_supernet_options, fixed_cell_inputs


class PartialMixedOp(nn.Module):
    """Σ_o w_o · o(x[:, :C/K]) on the first C/K channels, the rest passed through, then shuffled."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.part = channels // k
        # "none" is all zeros: it holds weight in the mixture but is never computed.
        self.ops = nn.ModuleList([make_op(name, self.part) or nn.Identity() for name in OPS])
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
            out = xa * 0.0
        if self.k == 1:
            return out
        return channel_shuffle(torch.cat([out, x[:, self.part :]], dim=1), self.k)


class SuperCell(nn.Module):
    """An NB201 cell whose 6 edges are partial mixed ops."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList([PartialMixedOp(channels, k) for _ in EDGES])

    def forward(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor, alive: torch.Tensor
    ) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        k = 0
        for node in range(1, NUM_NODES):
            total: torch.Tensor | None = None
            for frm in range(node):
                y = edge_weights[k] * self.edges[k](nodes[frm], op_weights[k], alive[k])
                total = y if total is None else total + y
                k += 1
            assert total is not None
            nodes.append(total)
        return nodes[-1]


class BankedCell(nn.Module):
    """An NB201 cell whose edges mix the outputs of op banks: one bank per edge, or with `share_sources`
    one per source node, shared by every edge leaving it (DCA-NAS Eq. 5). With a bottleneck each
    edge takes its weighted sum back to the searched width with its own 1×1 conv-BN."""

    def __init__(self, channels: int, k: int, bottleneck: int, share_sources: bool) -> None:
        super().__init__()
        self.k, self.part, self.share = k, channels // k, share_sources
        banks = NUM_NODES - 1 if share_sources else len(EDGES)
        self.banks = nn.ModuleList([OpBank(channels, k, bottleneck, OPS, make_op) for _ in range(banks)])
        inner = self.part // bottleneck
        self.expand = (
            nn.ModuleList(
                [nn.Sequential(nn.Conv2d(inner, self.part, 1, bias=False), nn.BatchNorm2d(self.part)) for _ in EDGES]
            )
            if bottleneck > 1
            else None
        )

    def forward(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor, alive: torch.Tensor
    ) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        cache: dict[int, tuple[list[torch.Tensor | None], torch.Tensor]] = {}
        k = 0
        for node in range(1, NUM_NODES):
            total: torch.Tensor | None = None
            for frm in range(node):
                bank = frm if self.share else k
                if bank not in cache:  # a shared bank runs the ops that some edge leaving `frm` keeps alive
                    rows = [e for e, (_to, f) in enumerate(EDGES) if f == frm] if self.share else [k]
                    cache[bank] = self.banks[bank](nodes[frm], alive[rows].any(dim=0))
                outs, xa = cache[bank]
                mix: torch.Tensor | None = None
                for i, out in enumerate(outs):
                    if out is not None and bool(alive[k, i]):
                        y = op_weights[k, i] * out
                        mix = y if mix is None else mix + y
                if mix is None:  # every computing op of this edge deleted: zeros
                    mix = xa * 0.0
                if self.expand is not None:
                    mix = self.expand[k](mix)
                if self.k > 1:
                    mix = channel_shuffle(torch.cat([mix, nodes[frm][:, self.part :]], dim=1), self.k)
                y = edge_weights[k] * mix
                total = y if total is None else total + y
                k += 1
            assert total is not None
            nodes.append(total)
        return nodes[-1]


class NB201SuperNet(nn.Module):
    """TinyNetwork layout (stem, 3 stages of N cells, residual reductions, head) with super cells.

    All cells share one set of op weights (an NB201 arch is one cell repeated), passed to
    `forward` as an `(edges, ops)` tensor; `edge_weights` `(edges,)` defaults to ones.
    `bottleneck` and `share_sources`: DCA-NAS's forms (`BankedCell`, module docstring).
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
        check_supernet_options(shape.width, k, bottleneck, alpha_cells, space="NB201")
        self.shape = shape
        self.k, self.bottleneck, self.share_sources = k, bottleneck, share_sources
        if bottleneck == 1 and not share_sources:
            build_tiny_layout(self, shape, lambda channels: SuperCell(channels, k))
        else:
            build_tiny_layout(self, shape, lambda channels: BankedCell(channels, k, bottleneck, share_sources))
        self.register_buffer("alive", torch.ones(len(EDGES), len(OPS), dtype=torch.bool))
        # the cells that carry α: all, or the first (NB201 has one cell type)
        cells = [b for b, block in enumerate(self.blocks) if isinstance(block, SuperCell | BankedCell)]
        self.alpha_cells = alpha_cells
        self.carriers = frozenset(cells if alpha_cells == "all" else cells[:1])

    def forward_features(
        self,
        x: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the block outputs (stem first), as `NB201Network.forward_features`.

        `fixed`: a one-hot (6, 5) arch run by the cells that do not carry α (`alpha_cells`);
        without it every cell mixes with `op_weights`.
        """
        if edge_weights is None:
            edge_weights = torch.ones(len(EDGES), device=x.device, dtype=x.dtype)
        if fixed is not None:
            fixed, fixed_edges, fixed_alive = fixed_cell_inputs(fixed, self.alive, OPS.index("none"))
        feats = [self.stem(x)]
        for b, block in enumerate(self.blocks):
            if isinstance(block, SuperCell | BankedCell):
                if fixed is None or b in self.carriers:
                    feats.append(block(feats[-1], op_weights, edge_weights, self.alive))
                else:
                    feats.append(block(feats[-1], fixed, fixed_edges, fixed_alive))
            else:
                feats.append(block(feats[-1]))
        out = self.pool(self.lastact(feats[-1])).flatten(1)
        return self.classifier(out), feats

    def forward(
        self,
        x: torch.Tensor,
        op_weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
        fixed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward_features(x, op_weights, edge_weights, fixed)[0]


def node_edge_weights(beta: torch.Tensor) -> torch.Tensor:
    """Edge normalisation: softmax of β over the incoming edges of each node, in `EDGES` order."""
    out = []
    k = 0
    for node in range(1, NUM_NODES):
        out.append(torch.softmax(beta[k : k + node], dim=0))
        k += node
    return torch.cat(out)


def extract_subnet(supernet: NB201SuperNet, arch: NB201Arch) -> NB201Network:
    """The discrete network of `arch` with the supernet's weights (full channels, K = 1, no edge weights).

    Stem, reductions and head copy over as they are; each live edge of each cell takes the
    weights of its op in the supernet's mixed op, so in eval mode the two compute the same.
    """
    if supernet.k != 1:
        raise ConfigError(f"a subnet can only be taken from a full-channel supernet (K=1), not K={supernet.k}")
    if supernet.bottleneck != 1 or supernet.share_sources:
        raise ConfigError("a subnet cannot be taken from a supernet with a channel bottleneck or shared source ops")
    net = NB201Network(arch, supernet.shape)
    state = {}
    for name, tensor in supernet.state_dict().items():
        parts = name.split(".")
        if parts[0] == "blocks" and isinstance(supernet.blocks[int(parts[1])], SuperCell):
            # blocks.{b}.edges.{e}.ops.{o}.rest -> blocks.{b}.edges.{to}_{from}.rest for the chosen op
            b, e, o, rest = int(parts[1]), int(parts[3]), int(parts[5]), parts[6:]
            cell = net.blocks[b]
            assert isinstance(cell, NB201Cell)
            to, frm = EDGES[e]
            key = f"{to}_{frm}"
            if key in cell.edges and OPS[o] == arch.ops[e]:
                state[".".join(["blocks", str(b), "edges", key, *rest])] = tensor
        elif name != "alive":
            state[name] = tensor
    net.load_state_dict(state)
    return net.to(next(supernet.parameters()).device)
