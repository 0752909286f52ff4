"""FLOPs baseline: the FLOPs of one inference at batch 1, higher = predicted better.

Listed among the baselines of AZ-NAS (Lee & Ham, CVPR 2024; τ = 0.578 on NB201 C10). The value
equals AZ's complexity proxy s^C and the cost model's `count_flops(model, input_shape, batch=1)`;
it is registered under its own name so benchmarks can report it as a stand-alone baseline.
"""

from __future__ import annotations

from edgenas.cost.flops import count_flops
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register


@register("flops")
def flops(ctx: ProxyContext) -> float:
    """FLOPs of one forward pass at batch 1 (eval mode, no autograd), as `count_flops` counts them;
    `ctx.flops` when the caller gave them."""
    if ctx.flops is not None:
        return float(ctx.flops)
    return float(count_flops(ctx.model, ctx.input_shape, batch=1))
