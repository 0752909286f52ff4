"""Score one candidate with named proxies: the entry point for search loops and benchmarks."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import get


def score_network(
    model: nn.Module,
    input_shape: Sequence[int],
    names: Sequence[str],
    *,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    real_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    copy_model: bool = True,
    flops: int | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Proxy values and wall-clock seconds per proxy for one candidate.

    One `ProxyContext` serves all names, so the AZ proxies share one forward pass and one VJP
    chain. Seconds are per proxy call, the lazily shared work landing on whichever proxy needs it
    first, and the context's set-up (copy, re-init, noise batch) is added to the first name, so the
    seconds sum to the whole call. Names are checked before any work, so a typo fails fast.
    `real_batch` (images, int64 labels) is passed to the context for the proxies that use a
    labelled batch (snip, grad_norm); the AZ proxies ignore it. `copy_model=False` lets the
    context score `model` itself (re-initialising it) instead of a copy; `flops`, the model's
    exact batch-1 FLOPs if known, spares complexity its counting pass (`ProxyContext`).
    """
    fns = {name: get(name) for name in names}
    t0 = time.perf_counter()
    ctx = ProxyContext(
        model,
        input_shape,
        batch=batch,
        seed=seed,
        device=device,
        real_batch=real_batch,
        copy_model=copy_model,
        flops=flops,
    )
    setup = time.perf_counter() - t0
    values: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for i, (name, fn) in enumerate(fns.items()):
        t0 = time.perf_counter()
        values[name] = float(fn(ctx))
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        seconds[name] = time.perf_counter() - t0 + (setup if i == 0 else 0.0)
    return values, seconds
