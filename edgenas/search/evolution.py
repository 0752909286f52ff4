"""AZ-NAS evolutionary search (spec az-nas.md §3.2), on any space with sample/mutate.

- The first candidate is a random arch inside the budget. While the pool has at most 10
  members, children mutate that initial arch; while it has fewer than P-1, they mutate a
  uniformly drawn member; afterwards the parent is drawn uniformly from the top P-1 of
  everything seen by the current aggregated score, which is recomputed over all seen
  candidates at every iteration (the pool is never pruned).
- A child over the budget, or already seen, is discarded without counting as an iteration.
- Mutation is the space's own (NB201: one edge changes op), where the MobileNetV2 space of
  the paper replaces two blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgenas.core.errors import UserError
from edgenas.core.space import Arch, SearchSpace

MAX_TRIES_PER_CANDIDATE = 200


def evolve(
    space: SearchSpace,
    n: int,
    *,
    fits: Callable[[Arch], bool],
    evaluate: Callable[[Arch], dict[str, float]],
    rank: Callable[[list[dict[str, float]]], np.ndarray],
    rng: np.random.Generator,
    population: int = 64,
    on_candidate: Callable[[int], None] | None = None,
) -> tuple[list[str], list[dict[str, float]], int]:
    """Evaluate `n` distinct in-budget candidates; returns (archs, values, rejected over budget)."""
    archs: list[str] = []
    values: list[dict[str, float]] = []
    seen: set[str] = set()
    rejected = 0
    initial: Arch | None = None
    tries = 0
    while len(archs) < n:
        tries += 1
        if tries > MAX_TRIES_PER_CANDIDATE * (len(archs) + 1):
            raise UserError(
                f"evolution found only {len(archs)} distinct candidates inside the budget after "
                f"{tries} tries; loosen the budget or ask for fewer (--n)"
            )
        if initial is None:
            child = space.sample(rng)
        elif len(archs) <= 10:
            child = space.mutate(initial, rng)
        elif len(archs) < population - 1:
            child = space.mutate(space.parse(archs[int(rng.integers(len(archs)))]), rng)
        else:
            scores = rank(values)
            top = np.argsort(-scores, kind="stable")[: population - 1]
            child = space.mutate(space.parse(archs[int(rng.choice(top))]), rng)
        key = str(child)
        if key in seen:
            continue
        seen.add(key)
        if not fits(child):
            rejected += 1
            continue
        if initial is None:
            initial = child
        archs.append(key)
        values.append(evaluate(child))
        if on_candidate:
            on_candidate(len(archs))
    return archs, values, rejected
