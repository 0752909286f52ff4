"""Deterministic stratified selection of sample indices.

Why stratified and seeded: subsets and validation splits of a few hundred images must
keep the class balance (or proxy rankings drift with the sampling), and the same seed must
give the same split in every process, so draws go through `numpy_rng(seed, purpose)`.
"""

from __future__ import annotations

import numpy as np

from edgenas.core.seeding import numpy_rng


def stratified_pick(labels: np.ndarray, count: int, seed: int, purpose: str) -> tuple[np.ndarray, np.ndarray]:
    """Pick `count` indices with per-class shares proportional to the class sizes.

    Returns `(picked, rest)`, both sorted. Quotas are floor(count * n_c / n) plus one for
    the classes with the largest remainders (ties broken by the seeded generator), so the
    total is exactly `count`.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= count <= n:
        raise ValueError(f"cannot pick {count} of {n} samples")
    rng = numpy_rng(seed, purpose)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    # Integer arithmetic for the largest-remainder quotas, so no float rounding decides ties.
    numer = count * counts
    quota, remainder = numer // max(n, 1), numer % max(n, 1)
    extra = int(count - quota.sum())
    by_remainder = np.lexsort((rng.random(len(counts)), -remainder))
    quota[by_remainder[:extra]] += 1
    # Rank each sample within its class in a random order; keep the first `quota` of each.
    order = np.lexsort((rng.random(n), inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    picked = rank < quota[inverse]
    return np.flatnonzero(picked), np.flatnonzero(~picked)


def fraction_count(n: int, fraction: float) -> int:
    """How many of `n` samples a fraction means: rounded, but at least 1 if fraction > 0."""
    k = round(n * fraction)
    return max(k, 1) if fraction > 0 else 0


TEST_FRACTION = 0.2  # held-out share for datasets without an official test split


def split_off_test(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a stratified test split (TEST_FRACTION) for datasets that ship without one."""
    test_idx, train_idx = stratified_pick(y, fraction_count(len(y), TEST_FRACTION), seed, "test-split")
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
