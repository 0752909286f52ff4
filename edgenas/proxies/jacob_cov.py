"""jacob_cov (Mellor, Turner, Storkey & Crowley, "Neural Architecture Search without Training",
arXiv:2006.04647 v1, 2020 — the Jacobian-covariance score, replaced by NASWOT in later versions).

One forward of the batch x (train mode, as in the official code) through a private copy of the
context's model; J = ∂(Σ of all outputs)/∂x, one row per sample, flattened to [N, D] (the official
`get_batch_jacobian`: `y.backward(ones_like(y))`; with train-mode BN the rows are not strictly
per-sample Jacobians because BN couples samples — kept as in the official code). Then
  Σ_J = corrcoef(J)  (N×N, float64),  λ = eigenvalues of Σ_J (`eigvalsh`, symmetric),
  score = −Σ_i [log(λ_i + k) + 1/(λ_i + k)],  k = 1e-5.
Higher = predicted better. A NaN correlation (a sample with a constant Jacobian) or any other
non-finite value gives −inf. Batch: the noise batch `ctx.inputs` (as NASWOT in AZ-NAS's rerun;
the paper used real images).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register
from edgenas.proxies.snip import nonfinite_to_neg_inf, scoring_copy

K = 1e-5


def batch_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """∂(Σ model(x))/∂x reshaped to [N, D]."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = model(x)
        (jac,) = torch.autograd.grad(y.sum(), x)
    return jac.reshape(x.shape[0], -1)


def jacob_cov_from_jacobian(jac: torch.Tensor) -> float:
    """−Σ (log(λ + k) + 1/(λ + k)) over the eigenvalues λ of corrcoef(rows of `jac`)."""
    corr = torch.corrcoef(jac.double())
    if not bool(torch.isfinite(corr).all()):
        return -math.inf
    lam = torch.linalg.eigvalsh(corr)
    return nonfinite_to_neg_inf(-float(torch.sum(torch.log(lam + K) + 1.0 / (lam + K))))


@register("jacob_cov")
def jacob_cov(ctx: ProxyContext) -> float:
    """−Σ (log(λ+k) + 1/(λ+k)), λ = eigenvalues of the correlation of the per-sample input Jacobians."""
    return jacob_cov_from_jacobian(batch_jacobian(scoring_copy(ctx), ctx.inputs))
