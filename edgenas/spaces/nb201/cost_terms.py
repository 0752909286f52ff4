"""Exact per-position params and FLOPs of NB201 cells (`NB201Space.position_costs`), and the NB201
names of the expected-cost terms, which live in `edgenas.cost.terms` for every space.

An NB201 arch is one cell repeated: an op costs the same on every edge, so its term is the
op module's count at each stage's channels and resolution (`stage_shapes`), summed over
the stages and times the cells per stage; `fixed` is the network with every edge `none`
(stem, reductions, head). Exact for cells whose every edge is live (dead edges are not
built). The functions below keep the signatures the NB201 code and tests call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from edgenas.core.device import Budgets
from edgenas.core.space import NetShape
from edgenas.cost import terms as generic
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.cost.terms import MEMORY_FIT_SAMPLES, CostTerms
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Network, NB201Space, make_op

__all__ = [
    "MEMORY_FIT_SAMPLES",
    "CostTerms",
    "flops_terms",
    "latency_terms",
    "memory_terms",
    "params_terms",
    "position_costs",
    "stage_shapes",
    "terms_for_budgets",
]


def stage_shapes(shape: NetShape) -> list[tuple[int, int]]:
    """(channels, side) of each of the 3 stages: widths C, 2C, 4C; sides R, ⌈R/2⌉, ⌈R/4⌉."""
    sides = [shape.resolution]
    for _ in range(2):
        sides.append(-(-sides[-1] // 2))
    return [(shape.width * m, s) for m, s in zip((1, 2, 4), sides, strict=True)]


def _per_stage_op_cost(shape: NetShape, measure) -> np.ndarray:
    """(stages, ops) cost of one op module at each stage's shape; "none" = 0."""
    out = np.zeros((3, len(OPS)))
    for s, (c, side) in enumerate(stage_shapes(shape)):
        for o, name in enumerate(OPS):
            mod = make_op(name, c)
            out[s, o] = 0.0 if mod is None else float(measure(mod, (c, side, side)))
    return out


def _fixed_network(shape: NetShape) -> nn.Module:
    """The network with every edge "none": stem, reductions and head only."""
    return NB201Network(NB201Arch(("none",) * len(EDGES)), shape)


def _broadcast(per_stage: np.ndarray, cells: int) -> np.ndarray:
    """An op costs the same on every edge: sum over stages, times cells per stage."""
    return np.tile(cells * per_stage.sum(axis=0), (len(EDGES), 1))


def position_costs(kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
    """(fixed, (edges, ops)) exact params or FLOPs at `shape`: what `NB201Space.position_costs` returns."""
    if kind == "params":
        per_stage = _per_stage_op_cost(shape, lambda m, _s: count_params(m))
        return float(count_params(_fixed_network(shape))), _broadcast(per_stage, shape.cells)
    if kind == "flops":
        per_stage = _per_stage_op_cost(shape, count_flops)
        return float(count_flops(_fixed_network(shape), shape.input_shape)), _broadcast(per_stage, shape.cells)
    raise ValueError(f"no exact additive {kind!r} cost (params or flops)")


def params_terms(shape: NetShape) -> CostTerms:
    return generic.additive_terms(NB201Space(), "params", shape)


def flops_terms(shape: NetShape) -> CostTerms:
    return generic.additive_terms(NB201Space(), "flops", shape)


def memory_terms(shape: NetShape, seed: int = 0, samples: int = MEMORY_FIT_SAMPLES) -> CostTerms:
    """Least-squares fit of measured peak memory on the one-hot (edge, op) encoding."""
    return generic.memory_terms(NB201Space(), shape, seed, samples)


def latency_terms(shape: NetShape, table: Any) -> CostTerms:
    """Per-op latency from a `LatencyTable` (edgenas.cost.lut)."""
    return generic.latency_terms(NB201Space(), shape, table)


def terms_for_budgets(budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, CostTerms]:
    """Cost terms for every budget that is set (latency needs `table`)."""
    return generic.terms_for_budgets(NB201Space(), budgets, shape, table, seed)
