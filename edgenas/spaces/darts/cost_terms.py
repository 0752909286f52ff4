"""Exact per-position costs of the DARTS space, and its expected-cost terms (differentiable in α).

Every op a genotype names is built (all 4 nodes feed the cell's output), so params and FLOPs
are additive: cost(arch) = fixed + Σ over the 28 choice points of w[point, op]. w[point, op]
is the op's cost summed over the cells of that point's type, each at its own width, stride
and input side (`count_params` / `count_flops` of the op module itself); fixed is the stem,
the cells' preprocessing and the classifier. These are the DCA-NAS cost terms (Dutta et al.,
PReMI 2023) at the *deployed* shape. Peak memory is not additive: its terms are a
least-squares fit of measured peaks of seeded random genotypes on the op counts per cell
type (one coefficient per (cell type, op), so the fit is well determined); the derived
arch's exact peak is what gets checked. Latency: the per-position terms of the device's
lookup table (`edgenas.spaces.darts.latency.position_terms`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgenas.core.device import COST_FIELD
from edgenas.core.errors import ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params
from edgenas.spaces.darts.arch import CELL_TYPES, EDGES, OPS, DartsArch
from edgenas.spaces.darts.network import DartsNetwork, cell_layout, make_op

if TYPE_CHECKING:
    from edgenas.core.device import Budgets

MEMORY_FIT_SAMPLES = 64


@lru_cache(maxsize=4096)
def _op_cost(kind: str, op: str, channels: int, stride: int, side: int) -> int:
    """Params or FLOPs of one op module at `channels`, `stride` on a `side`×`side` input; 0 for `none`."""
    mod = make_op(op, channels, stride)
    if mod is None:
        return 0
    return count_params(mod) if kind == "params" else count_flops(mod, (channels, side, side))


def position_costs(kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
    """(fixed, (28, 8) weights): exact `kind` ("params" or "flops") of a genotype at `shape`."""
    if kind not in ("params", "flops"):
        raise ValueError(f"position costs are exact for params and flops, not {kind!r}")
    weights = np.zeros((len(CELL_TYPES) * len(EDGES), len(OPS)))
    for spec in cell_layout(shape):
        base = CELL_TYPES.index(spec.kind) * len(EDGES)
        for e, (_node, j) in enumerate(EDGES):
            for o, op in enumerate(OPS):
                weights[base + e, o] += _op_cost(kind, op, spec.c, spec.stride(j), spec.op_side(j))
    # fixed: a built network's exact cost less its ops' (stem, preprocessing, classifier)
    from edgenas.spaces.darts import DartsSpace

    space = DartsSpace()
    ref = space.cheapest()
    net = DartsNetwork(ref, shape)
    total = count_params(net) if kind == "params" else count_flops(net, shape.input_shape)
    index = space.encode(ref)
    fixed = float(total - weights[np.arange(len(index)), index].sum())
    return fixed, weights


@dataclass(frozen=True)
class CostTerms:
    """cost(arch) ≈ fixed + Σ_p w[p, op_p]; `expected(p)` is the same under op probabilities p."""

    kind: str
    fixed: float
    weights: np.ndarray  # (points, ops)
    note: str = ""
    fit: dict = field(default_factory=dict)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """fixed + Σ p ⊙ w (differentiable in `probs`)."""
        w = torch.as_tensor(self.weights, dtype=probs.dtype, device=probs.device)
        return self.fixed + (probs * w).sum()

    def of_arch(self, arch: DartsArch) -> float:
        """The model's value for one genotype (exact for params and FLOPs)."""
        from edgenas.spaces.darts import DartsSpace

        index = DartsSpace().encode(arch)
        return float(self.fixed + self.weights[np.arange(len(index)), index].sum())


def memory_terms(shape: NetShape, seed: int = 0, samples: int = MEMORY_FIT_SAMPLES) -> CostTerms:
    """Least-squares fit of measured peak memory on the op counts of each cell type."""
    from edgenas.spaces.darts import DartsSpace

    space = DartsSpace()
    rng = numpy_rng(seed, "darts-memory-fit")
    real = len(OPS) - 1  # `none` is never built
    rows, ys = [], []
    for _ in range(samples):
        arch = space.sample(rng)
        counts = np.zeros((len(CELL_TYPES), real))
        for t, kind in enumerate(CELL_TYPES):
            for op, _j in arch.cell(kind):
                counts[t, OPS.index(op) - 1] += 1
        rows.append(counts.ravel())
        ys.append(peak_activation_bytes(DartsNetwork(arch, shape), shape.input_shape))
    design = np.column_stack([np.ones(len(rows)), np.asarray(rows)])
    y = np.asarray(ys, dtype=float)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    weights = np.zeros((len(CELL_TYPES) * len(EDGES), len(OPS)))
    per_type = coef[1:].reshape(len(CELL_TYPES), real)
    for t in range(len(CELL_TYPES)):
        weights[t * len(EDGES) : (t + 1) * len(EDGES), 1:] = per_type[t]
    pred = design @ coef
    fit = {"samples": samples, "mape_percent": float(np.mean(np.abs(pred - y) / y) * 100)}
    return CostTerms("peak_memory_bytes", float(coef[0]), weights, "least-squares fit of measured peaks", fit)


def terms_for_budgets(budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, Any]:
    """Cost terms for every budget that is set (latency needs the device's lookup `table`)."""
    out: dict[str, Any] = {}
    for name, _limit in budgets.items():
        kind = COST_FIELD[name]
        if kind in ("params", "flops"):
            fixed, weights = position_costs(kind, shape)
            out[name] = CostTerms(kind, fixed, weights, "exact per-position cost")
        elif kind == "peak_memory_bytes":
            out[name] = memory_terms(shape, seed)
        else:
            from edgenas.cost.terms import latency_terms
            from edgenas.spaces.darts import DartsSpace

            if table is None:
                raise ConfigError(
                    "a latency budget needs a latency lookup table (`edgenas profile-device --space darts`)"
                )
            out[name] = latency_terms(DartsSpace(), shape, table)
    return out
