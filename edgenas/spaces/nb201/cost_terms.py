"""Expected cost of the NB201 supernet under an architecture distribution (differentiable in α).

For each budget kind the cost of a cell arch is modelled as
    cost(arch) ≈ fixed + Σ_edges w[edge, op(edge)]
so under op probabilities p (edges × ops) the expected cost is fixed + Σ p ⊙ w, which is
linear in p and differentiable in α (DCA-NAS: Dutta et al., PReMI 2023; FBNet: Wu et al.,
CVPR 2019). The terms are computed at the *deployed* shape (target width and cells), not
the search's proxy width.

- params, FLOPs: exact per-op counts (`count_params`, `count_flops` of each op module at
  each stage's channels and resolution, times the cells per stage). The model is exact
  for cells where every edge is live; dead edges are not built, so it over-estimates.
- latency: the device's per-op lookup table (`LatencyTable.nb201_terms`).
- peak memory: not additive (it is the maximum of live tensors over time), so the terms
  are a least-squares fit of measured peaks of seeded random archs at the deployed
  shape; the fit's error is recorded. The derived arch's *exact* peak is what is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgenas.core.device import COST_FIELD, Budgets
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Network, make_op

MEMORY_FIT_SAMPLES = 64


@dataclass(frozen=True)
class CostTerms:
    """cost(arch) ≈ fixed + Σ_e w[e, op_e]; `expected(p)` is the same under op probabilities p."""

    kind: str
    fixed: float
    weights: np.ndarray  # (edges, ops)
    note: str = ""
    fit: dict = field(default_factory=dict)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """fixed + Σ p ⊙ w (differentiable in `probs`)."""
        w = torch.as_tensor(self.weights, dtype=probs.dtype, device=probs.device)
        return self.fixed + (probs * w).sum()

    def of_arch(self, arch: NB201Arch) -> float:
        """The model's estimate for one discrete arch."""
        return float(self.fixed + sum(self.weights[e, OPS.index(op)] for e, op in enumerate(arch.ops)))


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


def params_terms(shape: NetShape) -> CostTerms:
    per_stage = _per_stage_op_cost(shape, lambda m, _s: count_params(m))
    return CostTerms("params", float(count_params(_fixed_network(shape))), _broadcast(per_stage, shape.cells))


def flops_terms(shape: NetShape) -> CostTerms:
    per_stage = _per_stage_op_cost(shape, count_flops)
    fixed = float(count_flops(_fixed_network(shape), shape.input_shape))
    return CostTerms("flops", fixed, _broadcast(per_stage, shape.cells))


def memory_terms(shape: NetShape, seed: int = 0, samples: int = MEMORY_FIT_SAMPLES) -> CostTerms:
    """Least-squares fit of measured peak memory on the one-hot (edge, op) encoding."""
    rng = numpy_rng(seed, "memory-fit")
    rows, ys = [], []
    for _ in range(samples):
        arch = NB201Arch(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))
        x = np.zeros((len(EDGES), len(OPS)))
        x[np.arange(len(EDGES)), [OPS.index(op) for op in arch.ops]] = 1.0
        rows.append(x[:, 1:].ravel())  # "none" is the reference level of each edge
        ys.append(peak_activation_bytes(NB201Network(arch, shape), shape.input_shape))
    design = np.column_stack([np.ones(len(rows)), np.asarray(rows)])
    y = np.asarray(ys, dtype=float)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    weights = np.zeros((len(EDGES), len(OPS)))
    weights[:, 1:] = coef[1:].reshape(len(EDGES), len(OPS) - 1)
    pred = design @ coef
    fit = {"samples": samples, "mape_percent": float(np.mean(np.abs(pred - y) / y) * 100)}
    return CostTerms("peak_memory_bytes", float(coef[0]), weights, "least-squares fit of measured peaks", fit)


def latency_terms(shape: NetShape, table) -> CostTerms:
    """Per-op latency from a `LatencyTable` (edgenas.cost.lut)."""
    fixed, per_stage = table.nb201_terms(shape)
    return CostTerms("latency_ms", float(fixed), _broadcast(np.asarray(per_stage), shape.cells), "lookup table")


def terms_for_budgets(budgets: Budgets, shape: NetShape, table=None, seed: int = 0) -> dict[str, CostTerms]:
    """Cost terms for every budget that is set (latency needs `table`)."""
    out: dict[str, CostTerms] = {}
    for name, _limit in budgets.items():
        kind = COST_FIELD[name]
        if kind == "params":
            out[name] = params_terms(shape)
        elif kind == "flops":
            out[name] = flops_terms(shape)
        elif kind == "peak_memory_bytes":
            out[name] = memory_terms(shape, seed)
        else:
            if table is None:
                raise ValueError("a latency budget needs a latency lookup table")
            out[name] = latency_terms(shape, table)
    return out
