"""From op probabilities to one NB201 arch that meets every budget (DCA-NAS derivation and repair).

The paper takes the top-weighted op of every edge. That argmax may miss a budget (the
softmax-weighted cost seen in search is not the derived cell's cost), or sit far below it
after a collapse onto free ops (a mixture of costly and free ops averages to the budget;
its argmax need not). So:

- `method="map"` (default): the *most probable arch under the searched distribution*
  (max Σ_edges log p(op)) among the connected archs whose cost lies inside the band
  [`lower` × budget, budget] of every budget. NB201 has 5^6 cells, so the search is
  exhaustive: the cost model (`CostTerms`, live edges only) ranks and filters them, then
  the exact cost of the best candidates is checked in order and the first that fits is
  taken; if none of the first `max_exact` fits, the greedy repair runs.
- `method="greedy"`: the argmax, then *repair* (while a budget is missed, swap the op that
  costs the most under the most violated budget for the next cheaper op in its edge's α
  ranking) and, with `lower` > 0, *fill* (swap to the costlier op α likes best that keeps
  every budget, until the cost reaches `lower` × budget).
Every edge that differs from the argmax is recorded as a step, so a result always says
whether it was repaired. Why map replaced greedy, with the numbers: docs/methods/dca.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import numpy as np

from edgenas.core.device import COST_FIELD, Budgets
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch
from edgenas.spaces.nb201.cost_terms import CostTerms


@dataclass
class Derivation:
    """The final arch, the argmax it started from, and every repair step taken."""

    arch: NB201Arch
    argmax: NB201Arch
    repairs: list[dict] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    fits: bool = True
    method: str = "greedy"  # how it was derived: "map", "greedy", or "greedy (map fallback)"


def argmax_arch(probs: np.ndarray) -> NB201Arch:
    """The most probable op on every edge."""
    return NB201Arch(tuple(OPS[int(i)] for i in probs.argmax(axis=1)))


def connect(arch: NB201Arch, probs: np.ndarray, repairs: list[dict]) -> NB201Arch:
    """Make a disconnected cell (no input-output path) connected with the likeliest non-zero ops."""
    ops = list(arch.ops)
    while not NB201Arch(tuple(ops)).is_connected:
        # among "none" edges, the one whose best non-zero op is most probable
        cands = [(probs[e, 1:].max(), e) for e, op in enumerate(ops) if op == "none"]
        _, e = max(cands)
        new = OPS[1 + int(probs[e, 1:].argmax())]
        repairs.append({"reason": "disconnected cell", "edge": e, "from": ops[e], "to": new})
        ops[e] = new
    return NB201Arch(tuple(ops))


def derive(
    probs: np.ndarray,
    budgets: Budgets,
    terms: dict[str, CostTerms],
    exact_cost: Callable[[NB201Arch], dict[str, float]],
    max_steps: int = 30,
    lower: float = 0.0,
    method: Literal["greedy", "map"] = "greedy",
    max_exact: int = 20,
) -> Derivation:
    """Argmax arch, made connected, repaired until `exact_cost` meets every budget, then filled to `lower`.

    `exact_cost(arch)` returns {cost kind: value}; `terms` (per budget) rank ops by cost.
    With `method="map"` the arch is the most probable one inside the budget band instead
    (see the module docstring), found with at most `max_exact` exact-cost checks.
    """
    if method == "map":
        found = derive_map(probs, budgets, terms, exact_cost, lower=lower, max_exact=max_exact)
        if found is not None:
            return found
        how = "greedy (map fallback)"
    elif method == "greedy":
        how = "greedy"
    else:
        raise ValueError(f"unknown derivation method {method!r} (greedy or map)")
    repairs: list[dict] = []
    first = argmax_arch(probs)
    arch = connect(first, probs, repairs)
    limits = dict(budgets.items())
    costs = exact_cost(arch)
    for _ in range(max_steps):
        ratios = {name: costs[COST_FIELD[name]] / limit for name, limit in limits.items()}
        over = {n: r for n, r in ratios.items() if r > 1.0}
        if not over:
            arch, costs = _fill(arch, costs, probs, limits, terms, exact_cost, lower, repairs, max_steps)
            return Derivation(arch, first, repairs, costs, True, how)
        worst = max(over, key=over.get)
        swap = _cheapest_departure(arch, probs, terms[worst].weights)
        if swap is None:
            break
        e, new = swap
        repairs.append({"reason": f"{worst} {ratios[worst]:.3f}x of budget", "edge": e, "from": arch.ops[e], "to": new})
        arch = NB201Arch(tuple(new if i == e else op for i, op in enumerate(arch.ops)))
        costs = exact_cost(arch)
    ok = all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items())
    return Derivation(arch, first, repairs, costs, ok, how)


def _cheapest_departure(arch: NB201Arch, probs: np.ndarray, weights: np.ndarray) -> tuple[int, str] | None:
    """(edge, op): on the live edge with the costliest op, the next op by α that costs less."""
    live = arch.live_edges()
    for e in sorted(live, key=lambda e: -weights[e, OPS.index(arch.ops[e])]):
        cur = weights[e, OPS.index(arch.ops[e])]
        for o in np.argsort(-probs[e]):
            name = OPS[int(o)]
            if weights[e, o] >= cur or name == arch.ops[e]:
                continue
            trial = NB201Arch(tuple(name if i == e else op for i, op in enumerate(arch.ops)))
            if trial.is_connected:
                return e, name
    return None


def _fill(
    arch: NB201Arch,
    costs: dict[str, float],
    probs: np.ndarray,
    limits: dict[str, float],
    terms: dict[str, CostTerms],
    exact_cost: Callable[[NB201Arch], dict[str, float]],
    lower: float,
    steps: list[dict],
    max_steps: int,
) -> tuple[NB201Arch, dict[str, float]]:
    """Swap to costlier ops, most probable first, while every budget holds and all are under `lower`."""
    for _ in range(max_steps):
        ratios = {n: costs[COST_FIELD[n]] / limit for n, limit in limits.items()}
        if lower <= 0 or not ratios or max(ratios.values()) >= lower:
            break
        cands = sorted(
            (
                (-probs[e, o], e, o)
                for e in range(len(arch.ops))
                for o in range(len(OPS))
                if any(t.weights[e, o] > t.weights[e, OPS.index(arch.ops[e])] for t in terms.values())
            ),
        )
        for _p, e, o in cands:
            trial = NB201Arch(tuple(OPS[o] if i == e else op for i, op in enumerate(arch.ops)))
            trial_costs = exact_cost(trial)
            if all(trial_costs[COST_FIELD[n]] <= limit for n, limit in limits.items()):
                steps.append(
                    {
                        "reason": f"fill: {max(ratios.values()):.3f}x of budget < lower {lower}",
                        "edge": e,
                        "from": arch.ops[e],
                        "to": OPS[o],
                    }
                )
                arch, costs = trial, trial_costs
                break
        else:
            break
    return arch, costs


@cache
def _connected_cells() -> tuple[np.ndarray, np.ndarray]:
    """(op indices (n, edges), live-edge mask (n, edges)) of every connected NB201 cell."""
    ops, live = [], []
    for idx in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        arch = NB201Arch(tuple(OPS[i] for i in idx))
        edges = arch.live_edges()
        if edges:
            ops.append(idx)
            live.append([e in edges for e in range(len(idx))])
    return np.asarray(ops, dtype=np.int64), np.asarray(live, dtype=bool)


def derive_map(
    probs: np.ndarray,
    budgets: Budgets,
    terms: dict[str, CostTerms],
    exact_cost: Callable[[NB201Arch], dict[str, float]],
    lower: float = 0.0,
    max_exact: int = 20,
) -> Derivation | None:
    """The most probable connected arch whose cost is in [lower × budget, budget] for every budget.

    The band's upper side is checked on the exact cost, the lower side on the cost model
    (it guards against collapse; it need not be exact). When no arch of the model lies in
    the band, the lower side is dropped. None when no candidate passes the exact check.
    """
    cells, live = _connected_cells()
    rows = np.arange(len(EDGES))[None, :]
    logp = np.log(np.clip(probs, 1e-12, None))[rows, cells].sum(axis=1)
    limits = dict(budgets.items())
    ratios = np.zeros((len(cells), max(len(limits), 1)))
    for k, (name, limit) in enumerate(limits.items()):
        t = terms[name]
        est = t.fixed + np.where(live, t.weights[rows, cells], 0.0).sum(axis=1)  # dead edges are not built
        ratios[:, k] = est / limit
    top = ratios.max(axis=1)
    inside = top <= 1.0
    band = inside & (top >= lower) if lower > 0 else inside
    if not band.any():
        band = inside
    first = argmax_arch(probs)
    for i in [int(i) for i in np.argsort(-np.where(band, logp, -np.inf), kind="stable")[:max_exact] if band[i]]:
        arch = NB201Arch(tuple(OPS[j] for j in cells[i]))
        costs = exact_cost(arch)
        if all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items()):
            return Derivation(
                arch, first, _map_steps(first, arch, probs, limits, exact_cost, lower), costs, True, "map"
            )
    return None


def _map_steps(
    first: NB201Arch,
    arch: NB201Arch,
    probs: np.ndarray,
    limits: dict[str, float],
    exact_cost: Callable[[NB201Arch], dict[str, float]],
    lower: float,
) -> list[dict]:
    """The edges where the constrained argmax departs from the argmax, with why (repair / fill / connect)."""
    if first == arch:
        return []
    if not first.is_connected:
        why = "disconnected cell"
    else:
        costs = exact_cost(first)
        worst = max(limits, key=lambda n: costs[COST_FIELD[n]] / limits[n])
        r = costs[COST_FIELD[worst]] / limits[worst]
        why = f"{worst} {r:.3f}x of budget" if r > 1.0 else f"fill: {r:.3f}x of budget < lower {lower}"
    return [
        {
            "reason": f"{why} (most probable arch in the band)",
            "edge": e,
            "from": a,
            "to": b,
            "log_prob_drop": round(
                float(np.log(max(probs[e, OPS.index(a)], 1e-12) / max(probs[e, OPS.index(b)], 1e-12))), 4
            ),
        }
        for e, (a, b) in enumerate(zip(first.ops, arch.ops, strict=True))
        if a != b
    ]
