"""Training-free (zero-cost) proxies that score an untrained candidate network.

Importing the package registers every proxy; `available()` lists them. The AZ-NAS proxies
(expressivity, progressivity, trainability, complexity) share one forward pass through a
`ProxyContext`, and `az_aggregate` combines per-proxy values over a pool by log-rank sum. The
baselines (`BASELINE_PROXIES`: synflow, snip, grad_norm, naswot, zen, jacob_cov, params, flops)
each work on a private copy of the context's model, so they never disturb each other or AZ.
"""

from __future__ import annotations

from edgenas.proxies import (  # noqa: F401 (register the AZ proxies and the baselines)
    az_complexity,
    az_expressivity,
    az_progressivity,
    az_trainability,
    flops,
    grad_norm,
    jacob_cov,
    naswot,
    params,
    snip,
    synflow,
    zen,
)
from edgenas.proxies.aggregate import az_aggregate, linear_rank_sum, rank_scores
from edgenas.proxies.az_expressivity import block_expressivity
from edgenas.proxies.context import ProxyContext, reinit_
from edgenas.proxies.registry import available, get, register
from edgenas.proxies.score import score_network

AZ_PROXIES: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
BASELINE_PROXIES: tuple[str, ...] = ("synflow", "snip", "grad_norm", "naswot", "zen", "jacob_cov", "params", "flops")

__all__ = [
    "AZ_PROXIES",
    "BASELINE_PROXIES",
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
