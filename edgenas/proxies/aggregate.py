"""Rank aggregation of proxy values over a candidate pool (spec az-nas.md §2).

Why ranks in log space: AZ-NAS sums ln(rank/m), the log of a product of normalised ranks, so a
candidate that is poor on any one proxy is pulled down hard ("weakest stave"); a linear rank sum
(TE-NAS style, kept here as the ablation baseline) lets one strong proxy hide a weak one. Scores
are relative to the pool: recompute them whenever the pool changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import rankdata

from edgenas.core.errors import UserError


def rank_scores(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ascending ranks (1 = worst, m = best), ties averaged; NaN counts as −inf, so both tie at the bottom."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = np.where(np.isnan(arr), -np.inf, arr)
    return rankdata(arr, method="average").astype(np.float64)


def _pool_size(table: Mapping[str, Sequence[float]]) -> int:
    if not table:
        raise UserError("rank aggregation needs at least one proxy column")
    sizes = {name: len(col) for name, col in table.items()}
    if len(set(sizes.values())) != 1:
        raise UserError(f"every proxy must score the same candidates; column lengths differ: {sizes}")
    return next(iter(sizes.values()))


def az_aggregate(table: Mapping[str, Sequence[float]]) -> np.ndarray:
    """s_AZ(i) = Σ_M ln(rank_M(i) / m) over the proxies (columns) of `table`; higher is better."""
    m = _pool_size(table)
    total = np.zeros(m, dtype=np.float64)
    for col in table.values():
        total += np.log(rank_scores(col) / m)
    return total


def linear_rank_sum(table: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Σ_M rank_M(i): the TE-NAS-style linear aggregation of the AZ-NAS ablation; higher is better."""
    m = _pool_size(table)
    total = np.zeros(m, dtype=np.float64)
    for col in table.values():
        total += rank_scores(col)
    return total
