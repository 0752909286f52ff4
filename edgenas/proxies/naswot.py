"""NASWOT (Mellor, Turner, Storkey & Crowley, "Neural Architecture Search without Training", ICML 2021).

For one batch of N inputs, every ReLU module's *input* is binarised, c = (x > 0), and flattened
per sample; the codes of all ReLUs are concatenated into one binary vector c_i per sample. Then
  K = C Cᵀ + (1 − C)(1 − C)ᵀ      (K_ij = number of units on which samples i and j agree)
which equals the sum over ReLUs of the per-ReLU kernels, as the official code accumulates it, and
  score = log |det K|   (`slogdet`, float64).
A singular K (e.g. two samples with identical codes) gives −inf. Higher = predicted better.

Batch: the noise batch `ctx.inputs` (spec az-nas.md §3.1: in AZ-NAS's rerun only ZiCo, SNIP,
GraSP, TE-NAS and GradSign get real images; NASWOT uses noise). The paper uses a real batch of
128; the real batch is deliberately not used here, to match the AZ protocol. The forward runs in
train mode on a private copy of the context's model, so `ctx.model` is not disturbed.
ReLUs are found as `nn.ReLU` modules (forward pre-hooks, so in-place ReLUs are read before they
overwrite their input); functional `F.relu` calls are not seen.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register
from edgenas.proxies.snip import scoring_copy


def relu_code_kernel(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """K = Σ_ReLUs [c cᵀ + (1−c)(1−c)ᵀ] (float64, N×N) for the binary ReLU-input codes c of batch `x`."""
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        c = (args[0].detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1.0 - c) @ (1.0 - c).T)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return kernel


def logdet_score(kernel: torch.Tensor) -> float:
    """log|det K|; −inf for a singular (or non-finite) K."""
    if not bool(torch.isfinite(kernel).all()):
        return -math.inf
    sign, logabsdet = torch.linalg.slogdet(kernel)
    value = float(logabsdet)
    if float(sign) == 0.0 or not math.isfinite(value):
        return -math.inf
    return value


@register("naswot")
def naswot(ctx: ProxyContext) -> float:
    """slogdet log|det K| of the ReLU-code agreement kernel on the noise batch (higher = better)."""
    return logdet_score(relu_code_kernel(scoring_copy(ctx), ctx.inputs))
