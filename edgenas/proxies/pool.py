"""Scoring and ranking a pool of candidate archs: what the screen and the benchmark share.

The ranking is AZ-NAS's: the non-linear rank aggregation over the AZ proxies when they are
among the chosen proxies, else over every chosen proxy (one proxy = its own ranking). Other
proxies' raw values are kept per arch for reporting and correlation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from edgenas.core.errors import UserError
from edgenas.core.space import NetShape, SearchSpace
from edgenas.cost.static import additive_cost
from edgenas.proxies import AZ_PROXIES, available, az_aggregate, get, score_network

AZ_ALIAS = "az"
# Proxies that need labels: they score a real labelled batch when one is given.
LABELLED_PROXIES = ("snip", "grad_norm")


def expand_proxy_names(spec: str | Sequence[str]) -> list[str]:
    """'az,synflow' -> the four AZ proxies + synflow (validated, order kept, no repeats)."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if not item:
            continue
        for name in AZ_PROXIES if item == AZ_ALIAS else (item,):
            if name not in available():
                get(name)  # raises UserError listing the choices
            if name not in names:
                names.append(name)
    if not names:
        raise UserError(f"--proxies: no proxy named; choose from {AZ_ALIAS}, {', '.join(available())}")
    return names


def ranking_proxies(names: Sequence[str]) -> list[str]:
    """The proxies whose ranks are aggregated into the ranking score."""
    az = [n for n in names if n in AZ_PROXIES]
    return az if len(az) == len(AZ_PROXIES) else list(names)


def rank_pool(values: Sequence[dict[str, float]], names: Sequence[str]) -> np.ndarray:
    """Ranking score of every candidate of the pool (higher = better); relative to the pool."""
    keys = ranking_proxies(names)
    return az_aggregate({k: [v[k] for v in values] for k in keys})


def score_arch(
    space: SearchSpace,
    arch: str,
    shape: NetShape,
    names: Sequence[str],
    *,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    real_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    flops: int | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Proxy values and seconds for one arch (a fresh network; the same noise batch for every arch).

    The network is built here and scored itself, not a copy; complexity reads its FLOPs from the
    space's exact position costs (`flops`, if the caller has them, else computed here).
    """
    parsed = space.parse(arch)
    model = space.build(parsed, shape)
    if flops is None:
        flops = additive_cost(space, parsed, "flops", shape)
    kwargs: dict[str, Any] = {"real_batch": real_batch} if real_batch is not None else {}
    return score_network(
        model, shape.input_shape, names, batch=batch, seed=seed, device=device, copy_model=False, flops=flops, **kwargs
    )
