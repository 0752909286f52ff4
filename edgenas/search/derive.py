"""From op probabilities to one arch of a space that meets every budget (DCA-NAS derivation and repair).

The paper takes the top-weighted ops (`SearchSpace.top_weighted`: NB201 one op per edge,
DARTS the top-2 inputs of every node). That arch may miss a budget (the softmax-weighted
cost seen in search is not the derived arch's cost), or sit far below it after a collapse
onto free ops (a mixture of costly and free ops averages to the budget; its argmax need
not). So, through the space's supernet description only:

- `method="map"` (default): the *most probable arch under the searched distribution*
  (max Σ_points log p(op)) among the usable archs (`decode` accepts them, some point is
  live) whose cost lies inside the band [`lower` × budget, budget] of every budget.
  A space of at most `ENUMERATE_LIMIT` archs (NB201: 5^6) is searched exhaustively: the
  cost model (`CostTerms`, live points only) ranks and filters them, then the exact cost
  of the best candidates is checked in order and the first that fits is taken. A larger
  space (DARTS) uses a Lagrangian relaxation instead: `top_weighted(log p − μ Σ_k w_k/B_k)`
  decomposes per node, μ is bisected to the smallest value whose arch the model puts
  inside every budget, the archs met on the way are checked on their exact cost, most
  probable first, and the pick is then filled towards `lower` as below. If none of the
  first `max_exact` candidates fits, the greedy repair runs.
- `method="top"`: the top-weighted arch as it is, no repair (the paper; a lookup graph's
  search budget is what makes it fit), its exact cost checked.
- `method="greedy"`: the top-weighted arch, then *repair* (while a budget is missed, on
  the live point whose op costs the most under the most violated budget, take the next
  cheaper op by probability; with `keep_per_node` the node may instead keep another input)
  and, with `lower` > 0, *fill* (the most probable costlier (point, op) move that keeps
  every budget, until the cost reaches `lower` × budget).
Every point that differs from the top-weighted arch is recorded as a step, so a result
always says whether it was repaired. Why map replaced greedy, with the numbers: docs/methods/dca.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgenas.core.device import COST_FIELD, Budgets
from edgenas.core.errors import ArchError
from edgenas.core.space import Arch, SearchSpace
from edgenas.cost.terms import CostTerms

ENUMERATE_LIMIT = 50_000  # spaces up to this many archs are derived exhaustively (NB201: 15,625)
LAGRANGE_STEPS = 40  # bisection steps on the multiplier

Move = tuple[int, int, int]  # (point whose op changes, point that takes the op, op): p == q is an op swap


@dataclass
class Derivation:
    """The final arch, the top-weighted arch it started from, and every repair step taken."""

    arch: Arch
    argmax: Arch
    repairs: list[dict] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    fits: bool = True
    method: str = "greedy"  # "map", "lagrangian", "greedy", or "greedy (map fallback)"


def argmax_arch(probs: np.ndarray, space: SearchSpace) -> Arch:
    """The paper derivation: `space.top_weighted(probs)` (NB201: the most probable op on every edge)."""
    return space.top_weighted(probs)


def _space_of(terms: dict[str, CostTerms], space: SearchSpace | None) -> SearchSpace:
    if space is not None:
        return space
    for t in terms.values():
        if t.space is not None:
            return t.space
    raise ValueError("derive needs the space: pass space=, or terms made by edgenas.cost.terms")


def _usable(space: SearchSpace, index: np.ndarray) -> Arch | None:
    """The arch of `index` if it is one of the space and some point of it is live, else None."""
    try:
        arch = space.decode(index)
    except ArchError:
        return None
    return arch if space.live_points(arch).any() else None


def _apply(index: np.ndarray, move: Move, none: int | None) -> np.ndarray:
    p, q, o = move
    out = index.copy()
    if q != p:
        out[p] = none  # the node keeps input q instead of input p
    out[q] = o
    return out


def _record(space: SearchSpace, index: np.ndarray, move: Move, reason: str) -> dict:
    p, q, o = move
    ops = space.choice_ops
    if q == p:
        return {"reason": reason, "edge": p, "from": ops[index[p]], "to": ops[o]}
    none = ops[space.none_index] if space.none_index is not None else None
    return {"reason": reason, "edge": p, "from": ops[index[p]], "to": none, "moved_to": {"edge": q, "op": ops[o]}}


def _moves_from(space: SearchSpace, index: np.ndarray, p: int, nodes: dict[int, list[int]]) -> Iterator[Move]:
    """Every move that changes point p: another op at p; with `keep_per_node`, also the node keeping
    a point it does not use now (q) with a computing op in place of p."""
    none = space.none_index
    for o in range(len(space.choice_ops)):
        yield p, p, o
    if space.keep_per_node is None or none is None or index[p] == none:
        return
    for q in nodes[p]:
        if q != p and index[q] == none:
            for o in range(len(space.choice_ops)):
                if o != none:
                    yield p, q, o


def _node_of(space: SearchSpace) -> dict[int, list[int]]:
    """For every point, the points of its node."""
    return {p: rows for rows in space.node_points().values() for p in rows}


def connect(arch: Arch, probs: np.ndarray, repairs: list[dict], space: SearchSpace) -> Arch:
    """Make an arch with no live point (NB201: no input-output path) usable with the likeliest computing ops."""
    none = space.none_index
    if none is None:
        return arch
    index = space.encode(arch)
    real = np.asarray(probs, dtype=float).copy()
    real[:, none] = -np.inf
    while not space.live_points(arch).any():
        # among "none" points, the one whose best computing op is most probable (ties: the last point)
        for _best, p in sorted(((real[p].max(), p) for p in range(len(index)) if index[p] == none), reverse=True):
            o = int(real[p].argmax())
            trial = index.copy()
            trial[p] = o
            try:
                arch = space.decode(trial)
            except ArchError:
                continue
            repairs.append(_record(space, index, (p, p, o), "disconnected cell"))
            index = trial
            break
        else:
            return arch
    return arch


def derive(
    probs: np.ndarray,
    budgets: Budgets,
    terms: dict[str, CostTerms],
    exact_cost: Callable[[Arch], dict[str, float]],
    max_steps: int = 30,
    lower: float = 0.0,
    method: Literal["greedy", "map", "top"] = "greedy",
    max_exact: int = 20,
    space: SearchSpace | None = None,
) -> Derivation:
    """Top-weighted arch, made usable, repaired until `exact_cost` meets every budget, then filled to `lower`.

    `exact_cost(arch)` returns {cost kind: value}; `terms` (per budget) rank ops by cost.
    With `method="map"` the arch is the most probable one inside the budget band instead
    (see the module docstring), found with at most `max_exact` exact-cost checks. `space`
    defaults to the space the terms were made for.
    """
    space = _space_of(terms, space)
    limits = dict(budgets.items())
    if method == "map":
        found = derive_map(probs, budgets, terms, exact_cost, lower=lower, max_exact=max_exact, space=space)
        if found is not None:
            if found.method == "lagrangian":
                found.arch, found.costs = _fill(
                    space, found.arch, found.costs, probs, limits, terms, exact_cost, lower, found.repairs, max_steps
                )
            return found
        how = "greedy (map fallback)"
    elif method == "top":
        top = argmax_arch(probs, space)
        costs = exact_cost(top)
        ok = all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items())
        return Derivation(top, top, [], costs, ok, "top")
    elif method == "greedy":
        how = "greedy"
    else:
        raise ValueError(f"unknown derivation method {method!r} (greedy, map or top)")
    repairs: list[dict] = []
    first = argmax_arch(probs, space)
    arch = connect(first, probs, repairs, space)
    costs = exact_cost(arch)
    for _ in range(max_steps):
        ratios = {name: costs[COST_FIELD[name]] / limit for name, limit in limits.items()}
        over = {n: r for n, r in ratios.items() if r > 1.0}
        if not over:
            arch, costs = _fill(space, arch, costs, probs, limits, terms, exact_cost, lower, repairs, max_steps)
            return Derivation(arch, first, repairs, costs, True, how)
        worst = max(over, key=over.get)
        index = space.encode(arch)
        swap = _cheapest_departure(space, arch, probs, terms[worst].weights)
        if swap is None:
            break
        move, arch = swap
        repairs.append(_record(space, index, move, f"{worst} {ratios[worst]:.3f}x of budget"))
        costs = exact_cost(arch)
    ok = all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items())
    return Derivation(arch, first, repairs, costs, ok, how)


def _cheapest_departure(
    space: SearchSpace, arch: Arch, probs: np.ndarray, weights: np.ndarray
) -> tuple[Move, Arch] | None:
    """On the live point with the costliest op, the most probable move to a cheaper (point, op)."""
    index = space.encode(arch)
    nodes = _node_of(space)
    live = [int(p) for p in np.flatnonzero(space.live_points(arch))]
    for p in sorted(live, key=lambda p: -weights[p, index[p]]):
        cur = weights[p, index[p]]
        moves = list(_moves_from(space, index, p, nodes))
        if space.keep_per_node is None:
            order = [(p, p, int(o)) for o in np.argsort(-probs[p])]
        else:
            order = sorted(moves, key=lambda m: -probs[m[1], m[2]])
        for move in order:
            _p, q, o = move
            if weights[q, o] >= cur or (q == p and o == index[p]):
                continue
            trial = _usable(space, _apply(index, move, space.none_index))
            if trial is not None:
                return move, trial
    return None


def _fill(
    space: SearchSpace,
    arch: Arch,
    costs: dict[str, float],
    probs: np.ndarray,
    limits: dict[str, float],
    terms: dict[str, CostTerms],
    exact_cost: Callable[[Arch], dict[str, float]],
    lower: float,
    steps: list[dict],
    max_steps: int,
) -> tuple[Arch, dict[str, float]]:
    """Make costlier moves, most probable first, while every budget holds and all are under `lower`."""
    nodes = _node_of(space)
    for _ in range(max_steps):
        ratios = {n: costs[COST_FIELD[n]] / limit for n, limit in limits.items()}
        if lower <= 0 or not ratios or max(ratios.values()) >= lower:
            break
        index = space.encode(arch)
        cands = sorted(
            (-probs[q, o], q, o, p)
            for p in range(len(index))
            for _p, q, o in _moves_from(space, index, p, nodes)
            if any(t.weights[q, o] > t.weights[p, index[p]] for t in terms.values())
        )
        for _prob, q, o, p in cands:
            trial = _usable(space, _apply(index, (p, q, o), space.none_index))
            if trial is None:
                continue
            trial_costs = exact_cost(trial)
            if all(trial_costs[COST_FIELD[n]] <= limit for n, limit in limits.items()):
                reason = f"fill: {max(ratios.values()):.3f}x of budget < lower {lower}"
                steps.append(_record(space, index, (p, q, o), reason))
                arch, costs = trial, trial_costs
                break
        else:
            break
    return arch, costs


_USABLE: dict[tuple[type, str], tuple[np.ndarray, np.ndarray]] = {}


def _usable_archs(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(op indices (n, points), live-point mask (n, points)) of every usable arch of an enumerable space."""
    key = (type(space), space.name)
    if key not in _USABLE:
        ops, live = [], []
        for arch in space.enumerate():
            mask = space.live_points(arch)
            if mask.any():
                ops.append(space.encode(arch))
                live.append(mask)
        _USABLE[key] = (np.asarray(ops, dtype=np.int64), np.asarray(live, dtype=bool))
    return _USABLE[key]


def _model_ratios(
    index: np.ndarray, live: np.ndarray, terms: dict[str, CostTerms], limits: dict[str, float]
) -> np.ndarray:
    """(n, budgets) cost-model estimate over budget of archs given as (n, points) indices and live masks."""
    rows = np.arange(index.shape[1])[None, :]
    ratios = np.zeros((len(index), max(len(limits), 1)))
    for k, (name, limit) in enumerate(limits.items()):
        t = terms[name]
        est = t.fixed + np.where(live, t.weights[rows, index], 0.0).sum(axis=1)  # dead points are not built
        ratios[:, k] = est / limit
    return ratios


def derive_map(
    probs: np.ndarray,
    budgets: Budgets,
    terms: dict[str, CostTerms],
    exact_cost: Callable[[Arch], dict[str, float]],
    lower: float = 0.0,
    max_exact: int = 20,
    space: SearchSpace | None = None,
) -> Derivation | None:
    """The most probable usable arch whose cost is in [lower × budget, budget] for every budget.

    The band's upper side is checked on the exact cost, the lower side on the cost model
    (it guards against collapse; it need not be exact). When no arch of the model lies in
    the band, the lower side is dropped. None when no candidate passes the exact check.
    Spaces of more than `ENUMERATE_LIMIT` archs: `derive_lagrangian`.
    """
    space = _space_of(terms, space)
    size = space.size()
    if size is None or size > ENUMERATE_LIMIT:
        return derive_lagrangian(probs, budgets, terms, exact_cost, lower=lower, max_exact=max_exact, space=space)
    cells, live = _usable_archs(space)
    rows = np.arange(cells.shape[1])[None, :]
    logp = np.log(np.clip(probs, 1e-12, None))[rows, cells].sum(axis=1)
    limits = dict(budgets.items())
    top = _model_ratios(cells, live, terms, limits).max(axis=1)
    inside = top <= 1.0
    band = inside & (top >= lower) if lower > 0 else inside
    if not band.any():
        band = inside
    first = argmax_arch(probs, space)
    for i in [int(i) for i in np.argsort(-np.where(band, logp, -np.inf), kind="stable")[:max_exact] if band[i]]:
        arch = space.decode(cells[i])
        costs = exact_cost(arch)
        if all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items()):
            steps = _map_steps(space, first, arch, probs, limits, exact_cost, lower)
            return Derivation(arch, first, steps, costs, True, "map")
    return None


def derive_lagrangian(
    probs: np.ndarray,
    budgets: Budgets,
    terms: dict[str, CostTerms],
    exact_cost: Callable[[Arch], dict[str, float]],
    lower: float = 0.0,
    max_exact: int = 20,
    space: SearchSpace | None = None,
    steps: int = LAGRANGE_STEPS,
) -> Derivation | None:
    """`derive_map` for spaces too big to enumerate: a Lagrangian relaxation of the budgets.

    With normalised cost c = Σ_k w_k / B_k over the budgets, the arch of multiplier μ is
    `top_weighted(log p − μ c)` (made usable by `connect`): per point the best penalised op,
    per node its best `keep_per_node` points, so it needs no enumeration. μ = 0 is the
    paper's arch; otherwise μ is doubled from 1 until the model puts the arch inside every
    budget, then bisected `steps` times towards the smallest such μ. The relaxation leaves a
    duality gap, so the most probable arch met inside the budgets is then improved by a
    best-improvement ascent of Σ log p over single moves (`_moves_from`) that keep the model
    inside them. Every arch met is a candidate; those inside the band (model, as in
    `derive_map`) are checked on their exact cost, most probable first. None when none of
    the first `max_exact` fits (or no μ up to 2^40 gets inside the budgets).
    """
    space = _space_of(terms, space)
    limits = dict(budgets.items())
    logp = np.log(np.clip(probs, 1e-12, None))
    penalty = sum(terms[n].weights / limit for n, limit in limits.items())
    seen: dict[str, tuple[Arch, np.ndarray, np.ndarray]] = {}

    def ratio_at(mu: float) -> float:
        arch = connect(space.top_weighted(logp - mu * penalty), probs, [], space)
        index, live = space.encode(arch), space.live_points(arch)
        seen.setdefault(str(arch), (arch, index, live))
        if not live.any():
            return np.inf
        return float(_model_ratios(index[None, :], live[None, :], terms, limits).max())

    lo, hi = 0.0, 0.0
    if ratio_at(0.0) > 1.0:
        hi = 1.0
        while ratio_at(hi) > 1.0:
            lo, hi = hi, 2 * hi
            if hi > 2.0**40:
                return None
        for _ in range(steps):
            mid = (lo + hi) / 2
            if ratio_at(mid) > 1.0:
                lo = mid
            else:
                hi = mid
    archs = list(seen.values())

    def table() -> tuple[np.ndarray, np.ndarray]:
        """(model's worst ratio, Σ log p) of every candidate."""
        index = np.stack([a[1] for a in archs])
        live = np.stack([a[2] for a in archs])
        top = _model_ratios(index, live, terms, limits).max(axis=1)
        top[~live.any(axis=1)] = np.inf
        return top, logp[np.arange(index.shape[1])[None, :], index].sum(axis=1)

    top, lp = table()
    if (top <= 1.0).any():  # the most probable arch inside the budgets, improved by local ascent
        climbed = _ascend(space, archs[int(np.argmax(np.where(top <= 1.0, lp, -np.inf)))][0], logp, terms, limits)
        if str(climbed) not in seen:
            archs.append((climbed, space.encode(climbed), space.live_points(climbed)))
            top, lp = table()
    inside = top <= 1.0
    band = inside & (top >= lower) if lower > 0 else inside
    if not band.any():
        band = inside
    first = argmax_arch(probs, space)
    for i in [int(i) for i in np.argsort(-np.where(band, lp, -np.inf), kind="stable")[:max_exact] if band[i]]:
        arch = archs[i][0]
        costs = exact_cost(arch)
        if all(costs[COST_FIELD[n]] <= limit for n, limit in limits.items()):
            steps_taken = _map_steps(space, first, arch, probs, limits, exact_cost, lower)
            return Derivation(arch, first, steps_taken, costs, True, "lagrangian")
    return None


def _ascend(
    space: SearchSpace, arch: Arch, logp: np.ndarray, terms: dict[str, CostTerms], limits: dict[str, float]
) -> Arch:
    """Best-improvement ascent of Σ log p over single (point, op) moves that keep the model inside every budget."""
    nodes = _node_of(space)
    rows = np.arange(len(logp))
    index = space.encode(arch)
    current = float(logp[rows, index].sum())
    for _ in range(len(rows) * len(space.choice_ops)):
        best: tuple[float, np.ndarray, Arch] | None = None
        for p in range(len(rows)):
            for move in _moves_from(space, index, p, nodes):
                trial_index = _apply(index, move, space.none_index)
                gain = float(logp[rows, trial_index].sum()) - current
                if gain <= 1e-12 or (best is not None and gain <= best[0]):
                    continue
                trial = _usable(space, trial_index)
                if trial is None:
                    continue
                live = space.live_points(trial)
                if _model_ratios(trial_index[None, :], live[None, :], terms, limits).max() > 1.0:
                    continue
                best = (gain, trial_index, trial)
        if best is None:
            break
        current, index, arch = current + best[0], best[1], best[2]
    return arch


def _map_steps(
    space: SearchSpace,
    first: Arch,
    arch: Arch,
    probs: np.ndarray,
    limits: dict[str, float],
    exact_cost: Callable[[Arch], dict[str, float]],
    lower: float,
) -> list[dict]:
    """The points where the constrained pick departs from the top-weighted arch, with why (repair / fill / connect)."""
    if first == arch:
        return []
    if not space.live_points(first).any():
        why = "disconnected cell"
    else:
        costs = exact_cost(first)
        worst = max(limits, key=lambda n: costs[COST_FIELD[n]] / limits[n])
        r = costs[COST_FIELD[worst]] / limits[worst]
        why = f"{worst} {r:.3f}x of budget" if r > 1.0 else f"fill: {r:.3f}x of budget < lower {lower}"
    a, b = space.encode(first), space.encode(arch)
    ops = space.choice_ops
    return [
        {
            "reason": f"{why} (most probable arch in the band)",
            "edge": p,
            "from": ops[a[p]],
            "to": ops[b[p]],
            "log_prob_drop": round(float(np.log(max(probs[p, a[p]], 1e-12) / max(probs[p, b[p]], 1e-12))), 4),
        }
        for p in range(len(a))
        if a[p] != b[p]
    ]
