"""The mobile space's weight-sharing supernet (ProxylessNAS / FBNet style mixed blocks).

Each of the 20 block positions is a mixed op: Σ_o w_o · block_o(x) over the 9 (kernel,
expansion) inverted residuals of that position (each its own weights, as in ProxylessNAS:
Cai et al., ICLR 2019; FBNet: Wu et al., CVPR 2019), plus w_skip · x at the optional blocks
3 and 4 of a stage (the identity that makes the depth searchable). The decision weights come
from the search method, one row per position; the `alive` mask switches ops off for good
(DNAD) and starts with `skip` off where `MobileSpace.op_mask` bans it. Every candidate is
the deployed block itself (`BlockSpec.block`), so `extract_subnet` copies weights one to one
and the subnet computes what the supernet does at one-hot weights in eval mode.

Partial channels (`k` > 1) narrow each candidate's expanded width to 1/k (its input and
output stay whole, so the residuals still add up): a cheaper proxy, as PC-DARTS' partial
channels are; a subnet is taken only from a full-width (k = 1) supernet.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.spaces.mobile.arch import MAX_DEPTH, OPS, SKIP, MobileArch, block_name
from edgenas.spaces.mobile.network import (
    BlockSpec,
    MobileClassifier,
    MobileNetwork,
    macro,
    make_final_expand,
    make_stem,
)


class MixedBlock(nn.Module):
    """Σ_o w_o · o(x) over one position's candidate blocks (`skip`: x itself, at optional positions only)."""

    def __init__(self, spec: BlockSpec, k: int) -> None:
        super().__init__()
        self.optional = spec.optional
        ops = []
        for op in OPS:
            if op == SKIP:
                ops.append(nn.Identity())
                continue
            kernel, expansion = int(op[1]), int(op[3])
            hidden = spec.hidden(expansion)
            ops.append(spec.block(kernel, expansion, max(1, hidden // k) if k > 1 else hidden))
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for i, op in enumerate(self.ops):
            if not bool(alive[i]) or (OPS[i] == SKIP and not self.optional):
                continue
            y = weights[i] * op(x)
            out = y if out is None else out + y
        if out is None:  # every op deleted (only DNAD does this, at an optional block): the identity
            return x
        return out


class MobileSuperNet(nn.Module):
    """Stem (with the first block), 20 mixed blocks, final expansion, classifier.

    `forward(x, op_weights, edge_weights=None)`: `op_weights` is (20, 10) in
    `MobileSpace.choice_points` / `choice_ops` order; `edge_weights` (20,) scales each
    position's output (every position is its own node, so edge normalisation leaves it at 1).
    """

    def __init__(self, shape: NetShape, k: int = 1) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"partial-channel K must be >= 1, got {k}")
        self.shape, self.k = shape, k
        m = macro(shape)
        self.stem = make_stem(shape, m)
        self.blocks = nn.ModuleList([MixedBlock(spec, k) for spec in m.blocks])
        self.final_expand = make_final_expand(m)
        self.classifier = MobileClassifier(m, shape.num_classes)
        from edgenas.spaces.mobile import MobileSpace

        self.register_buffer("alive", torch.as_tensor(MobileSpace().op_mask()))

    def forward_features(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the block outputs (stem first, final expansion last), as `MobileNetwork.forward_features`."""
        feats = [self.stem(x)]
        h = feats[0]
        for p, block in enumerate(self.blocks):
            h = block(h, op_weights[p], self.alive[p])
            if edge_weights is not None:
                h = edge_weights[p] * h
            feats.append(h)
        feats.append(self.final_expand(h))
        return self.classifier(feats[-1]), feats

    def forward(
        self, x: torch.Tensor, op_weights: torch.Tensor, edge_weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.forward_features(x, op_weights, edge_weights)[0]


def extract_subnet(supernet: MobileSuperNet, arch: MobileArch) -> MobileNetwork:
    """The `MobileNetwork` of `arch` with the supernet's weights (full width, K = 1).

    Stem, final expansion and classifier copy over as they are; block j of the network takes
    the weights of its (kernel, expansion) candidate at its position in the supernet.
    """
    if supernet.k != 1:
        raise ConfigError(f"a subnet can only be taken from a full-width supernet (K=1), not K={supernet.k}")
    net = MobileNetwork(arch, supernet.shape)
    state = {}
    where: dict[int, tuple[int, int]] = {}  # network block j -> (position, op)
    j = 0
    for s, stage in enumerate(arch.stages):
        for b, block in enumerate(stage):
            where[j] = (s * MAX_DEPTH + b, OPS.index(block_name(block)))
            j += 1
    sup = supernet.state_dict()
    for name in net.state_dict():
        parts = name.split(".")
        if parts[0] == "blocks":
            p, o = where[int(parts[1])]
            state[name] = sup[".".join(["blocks", str(p), "ops", str(o), *parts[2:]])]
        else:
            state[name] = sup[name]
    net.load_state_dict(state)
    return net.to(next(supernet.parameters()).device)
