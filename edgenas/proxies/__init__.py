"""Training-free (zero-cost) proxies that score an untrained candidate network.

Importing the package registers every proxy; `available()` lists them. The AZ-NAS proxies
(expressivity, progressivity, trainability, complexity) share one forward pass through a
`ProxyContext`, and `az_aggregate` combines per-proxy values over a pool by log-rank sum.
"""

from __future__ import annotations

from edgenas.proxies import az_complexity, az_expressivity, az_progressivity, az_trainability  # noqa: F401 (register)
from edgenas.proxies.aggregate import az_aggregate, linear_rank_sum, rank_scores
from edgenas.proxies.az_expressivity import block_expressivity
from edgenas.proxies.context import ProxyContext, reinit_
from edgenas.proxies.registry import available, get, register
from edgenas.proxies.score import score_network

AZ_PROXIES: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")

__all__ = [
    "AZ_PROXIES",
    "ProxyContext",
    "available",
    "az_aggregate",
    "block_expressivity",
    "get",
    "linear_rank_sum",
    "rank_scores",
    "register",
    "reinit_",
    "score_network",
]
