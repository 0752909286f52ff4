"""#params baseline: the parameter count, higher = predicted better.

Listed among the baselines of AZ-NAS (Lee & Ham, CVPR 2024) and of Abdelfattah et al. (ICLR 2021).
Like AZ's complexity proxy, a bigger network inside the budget ranks higher. The count is the
repo's own `count_params` (every parameter element, counted once), the same number the cost model
reports.
"""

from __future__ import annotations

from edgenas.cost.params import count_params
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register


@register("params")
def params(ctx: ProxyContext) -> float:
    """Number of parameter elements of the candidate (independent of the re-init and of any batch)."""
    return float(count_params(ctx.model))
