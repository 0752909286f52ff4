"""AZ-NAS complexity s^C: FLOPs, higher is better (spec az-nas.md §1.4).

Why FLOPs count as a *positive* proxy: inside a FLOPs budget, AZ-NAS prefers candidates that use
the budget. The count is the repo's own `count_flops` at batch 1, the same number the cost
model reports, so search constraints and the proxy agree.
"""

from __future__ import annotations

from edgenas.cost.flops import count_flops
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register


@register("az_complexity")
def az_complexity(ctx: ProxyContext) -> float:
    """FLOPs of one inference forward pass at batch 1 (independent of the re-init and the noise batch);
    `ctx.flops` when the caller gave them."""
    if ctx.flops is not None:
        return float(ctx.flops)
    return float(count_flops(ctx.model, ctx.input_shape, batch=1))
