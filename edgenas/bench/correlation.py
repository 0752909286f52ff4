"""Rank correlation between a proxy and trained accuracy (scipy.stats).

Values are turned into ranks first (NaN and -inf tie at the bottom, as in the aggregation),
so an undefined proxy value counts as "worst" instead of breaking the statistic.
"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import kendalltau, spearmanr

from edgenas.proxies.aggregate import rank_scores


def kendall(values: Sequence[float], accuracy: Sequence[float]) -> float:
    """Kendall tau-b (tie-aware) between proxy values and accuracy."""
    return float(kendalltau(rank_scores(values), rank_scores(accuracy)).statistic)


def spearman(values: Sequence[float], accuracy: Sequence[float]) -> float:
    """Spearman rho between proxy values and accuracy."""
    return float(spearmanr(rank_scores(values), rank_scores(accuracy)).statistic)
