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
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.spaces.nb201.arch import EDGES, NUM_NODES, OPS, NB201Arch
from edgenas.spaces.nb201.network import NB201Cell, NB201Network, build_tiny_layout, make_op
from edgenas.spaces.ops import channel_shuffle


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


class NB201SuperNet(nn.Module):
    """TinyNetwork layout (stem, 3 stages of N cells, residual reductions, head) with super cells.

    All cells share one set of op weights (an NB201 arch is one cell repeated), passed to
    `forward` as an `(edges, ops)` tensor; `edge_weights` `(edges,)` defaults to ones.
    """

    def __init__(self, shape: NetShape, k: int = 4) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"partial-channel K must be >= 1, got {k}")
        if shape.width % k:
            raise ConfigError(f"search width {shape.width} is not divisible by partial-channel K={k}")
        self.shape = shape
        self.k = k
        build_tiny_layout(self, shape, lambda channels: SuperCell(channels, k))
        self.register_buffer("alive", torch.ones(len(EDGES), len(OPS), dtype=torch.bool))

    def forward_features(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the block outputs (stem first), as `NB201Network.forward_features`."""
        if edge_weights is None:
            edge_weights = torch.ones(len(EDGES), device=x.device, dtype=x.dtype)
        feats = [self.stem(x)]
        for block in self.blocks:
            if isinstance(block, SuperCell):
                feats.append(block(feats[-1], op_weights, edge_weights, self.alive))
            else:
                feats.append(block(feats[-1]))
        out = self.pool(self.lastact(feats[-1])).flatten(1)
        return self.classifier(out), feats

    def forward(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.forward_features(x, op_weights, edge_weights)[0]


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
