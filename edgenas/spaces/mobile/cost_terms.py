"""Exact per-position costs of the mobile space (params, FLOPs), the DCA-NAS cost terms at the deployed shape.

A block's cost depends only on its position (widths, stride, input side, SE) and its
(kernel, expansion), and a skipped block costs nothing, so params and FLOPs are additive:
cost(arch) = fixed + Σ over the 20 positions of w[position, op] with w[·, skip] = 0; fixed
is the stem (with the first block), the final expansion and the classifier. Each weight is
`count_params` / `count_flops` of the block module itself (FBNet's per-op cost table: Wu et
al., CVPR 2019). Peak memory and latency: the generic terms (`edgenas.cost.terms`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.spaces.mobile.arch import OPS, SKIP
from edgenas.spaces.mobile.network import BlockSpec, MobileNetwork, macro


@lru_cache(maxsize=4096)
def block_cost(kind: str, spec: BlockSpec, kernel: int, expansion: int) -> int:
    """Params or FLOPs of the (kernel, expansion) block at position `spec`."""
    mod = spec.block(kernel, expansion)
    return count_params(mod) if kind == "params" else count_flops(mod, (spec.c_in, spec.side, spec.side))


@lru_cache(maxsize=64)
def _position_costs(kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
    from edgenas.spaces.mobile import MobileSpace

    m = macro(shape)
    weights = np.zeros((len(m.blocks), len(OPS)))
    for p, spec in enumerate(m.blocks):
        for o, op in enumerate(OPS):
            if op != SKIP:
                k, e = int(op[1]), int(op[3])
                weights[p, o] = block_cost(kind, spec, k, e)
    space = MobileSpace()
    ref = space.cheapest()
    net = MobileNetwork(ref, shape)
    total = count_params(net) if kind == "params" else count_flops(net, shape.input_shape)
    index = space.encode(ref)
    fixed = float(total - weights[np.arange(len(index)), index].sum())
    return fixed, weights


def position_costs(kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
    """(fixed, (20, 10) weights): exact `kind` ("params" or "flops") of a mobile arch at `shape`."""
    if kind not in ("params", "flops"):
        raise ValueError(f"position costs are exact for params and flops, not {kind!r}")
    fixed, weights = _position_costs(kind, shape)
    return fixed, weights.copy()
