"""Expected cost of a space's supernet under an architecture distribution (differentiable in α).

For each budget kind the cost of an arch is modelled as
    cost(arch) ≈ fixed + Σ_points w[point, op(point)]
so under op probabilities p (points × ops) the expected cost is fixed + Σ p ⊙ w, which is
linear in p and differentiable in α (DCA-NAS: Dutta et al., PReMI 2023; FBNet: Wu et al.,
CVPR 2019). The terms are computed at the *deployed* shape (target width and cells), not
the search's proxy width, and only through the space's supernet description
(`edgenas.core.space.SearchSpace`):

- params, FLOPs: `space.position_costs` (exact per-position counts). Exact for archs whose
  every point is live; dead points are not built, so elsewhere the model over-estimates.
- latency: the device table's per-position terms (`LatencyTable.position_terms`).
- peak memory: not additive (it is the maximum of live tensors over time), so the terms
  are a least-squares fit of measured peaks of seeded random archs (`space.sample`) on
  their one-hot encodings; the fit's error is recorded. The derived arch's *exact* peak
  is what is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgenas.core.device import COST_FIELD, Budgets
from edgenas.core.errors import ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.cost.memory import peak_activation_bytes

if TYPE_CHECKING:
    from edgenas.cost.lut import LatencyTable

MEMORY_FIT_SAMPLES = 64  # at least; a space with more decision columns draws 2 per coefficient


@dataclass(frozen=True)
class CostTerms:
    """cost(arch) ≈ fixed + Σ_p w[p, op_p]; `expected(p)` is the same under op probabilities p.

    `space` (the space the rows and columns belong to) lets `of_arch` take an arch.
    """

    kind: str
    fixed: float
    weights: np.ndarray  # (points, ops)
    note: str = ""
    fit: dict = field(default_factory=dict)
    space: SearchSpace | None = field(default=None, compare=False, repr=False)

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """fixed + Σ p ⊙ w (differentiable in `probs`)."""
        w = torch.as_tensor(self.weights, dtype=probs.dtype, device=probs.device)
        return self.fixed + (probs * w).sum()

    def of_index(self, index: np.ndarray) -> float:
        """The model's estimate for one op index per point, every point counted (dead ones too)."""
        return float(self.fixed + sum(self.weights[p, int(o)] for p, o in enumerate(index)))

    def of_arch(self, arch: Arch) -> float:
        """The model's estimate for one discrete arch of `space` (every point counted)."""
        if self.space is None:
            raise ValueError(f"these {self.kind} terms carry no space to encode an arch with; use of_index")
        return self.of_index(self.space.encode(arch))


def additive_terms(space: SearchSpace, kind: str, shape: NetShape) -> CostTerms:
    """The exact per-position terms of `kind` ("params" or "flops") at the deployed `shape`."""
    fixed, weights = space.position_costs(kind, shape)
    return CostTerms(kind, float(fixed), np.asarray(weights, dtype=float), space=space)


def memory_terms(space: SearchSpace, shape: NetShape, seed: int = 0, samples: int | None = None) -> CostTerms:
    """Least-squares fit of measured peak memory on the one-hot (point, op) encoding of sampled archs.

    The `none_op` column (else the first) is every point's reference level, so the intercept
    is `fixed`. `samples` defaults to `MEMORY_FIT_SAMPLES`, or two per coefficient if more.
    """
    n_points, n_ops = len(space.choice_points()), len(space.choice_ops)
    ref = space.none_index if space.none_index is not None else 0
    keep = [o for o in range(n_ops) if o != ref]
    if samples is None:
        samples = max(MEMORY_FIT_SAMPLES, 2 * (n_points * len(keep) + 1))
    rng = numpy_rng(seed, "memory-fit")
    rows, ys = [], []
    for _ in range(samples):
        arch = space.sample(rng)
        x = np.zeros((n_points, n_ops))
        x[np.arange(n_points), space.encode(arch)] = 1.0
        rows.append(x[:, keep].ravel())
        ys.append(peak_activation_bytes(space.build(arch, shape), shape.input_shape))
    design = np.column_stack([np.ones(len(rows)), np.asarray(rows)])
    y = np.asarray(ys, dtype=float)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    weights = np.zeros((n_points, n_ops))
    weights[:, keep] = coef[1:].reshape(n_points, len(keep))
    pred = design @ coef
    fit = {"samples": samples, "mape_percent": float(np.mean(np.abs(pred - y) / y) * 100)}
    return CostTerms("peak_memory_bytes", float(coef[0]), weights, "least-squares fit of measured peaks", fit, space)


def latency_terms(space: SearchSpace, shape: NetShape, table: LatencyTable) -> CostTerms:
    """Per-position latency from a device's lookup table (`LatencyTable.position_terms`)."""
    if table.space != space.name:
        raise ConfigError(
            f"latency table {table.name or table.path or ''} is for the {table.space!r} space, not {space.name!r}; "
            f"profile the device for {space.name} (`edgenas profile-device --space {space.name}`)"
        )
    fixed, weights = table.position_terms(shape)
    return CostTerms("latency_ms", float(fixed), np.asarray(weights, dtype=float), "lookup table", space=space)


def terms_for_budgets(
    space: SearchSpace, budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0
) -> dict[str, CostTerms]:
    """Cost terms for every budget that is set (latency needs `table`)."""
    out: dict[str, CostTerms] = {}
    for name, _limit in budgets.items():
        kind = COST_FIELD[name]
        if kind in ("params", "flops"):
            out[name] = additive_terms(space, kind, shape)
        elif kind == "peak_memory_bytes":
            out[name] = memory_terms(space, shape, seed)
        else:
            if table is None:
                raise ConfigError("a latency budget needs a latency lookup table (edgenas profile-device)")
            out[name] = latency_terms(space, shape, table)
    return out
