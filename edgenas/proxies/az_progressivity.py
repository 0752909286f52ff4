"""AZ-NAS progressivity s^P: the feature space should keep expanding with depth (spec az-nas.md §1.2).

Why the minimum: it scores the single worst step, so it is positive only if every block raises
the eigen-entropy; it costs nothing beyond expressivity's per-block values.
"""

from __future__ import annotations

import itertools
import math

from edgenas.core.errors import UserError
from edgenas.proxies._util import finite_or_neg_inf
from edgenas.proxies.az_expressivity import block_values
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register


@register("az_progressivity")
def az_progressivity(ctx: ProxyContext) -> float:
    """s^P = min_{l=1..L-1} (s^E_l − s^E_{l−1}); NaN anywhere -> −inf."""
    values = block_values(ctx)
    if len(values) < 2:
        raise UserError(f"progressivity needs at least 2 primary blocks, the model gives {len(values)}")
    diffs = [b - a for a, b in itertools.pairwise(values)]
    # builtin min() would skip over a NaN depending on its position; make NaN win explicitly
    if any(math.isnan(d) for d in diffs):
        return finite_or_neg_inf(float("nan"))
    return finite_or_neg_inf(min(diffs))
