"""AZ-NAS expressivity s^E: how isotropic each primary block's feature space is (spec az-nas.md §1.1).

Why: a block whose features spread variance over many principal directions can represent more;
the entropy of the normalised PCA spectrum measures that (max ln C, ~0 when collapsed).
"""

from __future__ import annotations

import torch

from edgenas.proxies._util import channel_rows_f64, finite_or_neg_inf, gram_f64
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register

EPS = 1e-8
_CACHE_KEY = "az_expressivity.blocks"


@torch.no_grad()
def block_expressivity(feature: torch.Tensor) -> float:
    """Eigen-entropy of one feature tensor: −Σ p_i ln(p_i + 1e-8), p = normalised covariance eigenvalues.

    Samples are the B·H·W positions, variables the C channels; biased covariance, no clamping of
    tiny negative eigenvalues (the eps inside the log absorbs them). Computed in float64 so that
    rounding in a rank-deficient covariance stays far below that eps. A constant feature gives
    0/0 = NaN, which the proxy maps to −inf.
    """
    x = channel_rows_f64(feature.detach())  # [G, C, m]: a fresh float64 copy, centred in place
    n = x.shape[0] * x.shape[2]
    x.sub_(x.mean(dim=(0, 2), keepdim=True))
    cov = gram_f64(x, x) / n
    eig = torch.linalg.eigvalsh(cov)
    p = eig / eig.sum()
    return float(-(p * torch.log(p + EPS)).sum())


def block_values(ctx: ProxyContext) -> list[float]:
    """Per-block expressivity s^E_0..s^E_{L-1}, computed once per context (progressivity reuses it)."""
    if _CACHE_KEY not in ctx.cache:
        ctx.cache[_CACHE_KEY] = [block_expressivity(f) for f in ctx.features]
    return list(ctx.cache[_CACHE_KEY])


@register("az_expressivity")
def az_expressivity(ctx: ProxyContext) -> float:
    """s^E = Σ_l s^E_l (a sum, so it grows with depth and width, as in the official code)."""
    return finite_or_neg_inf(sum(block_values(ctx)))
