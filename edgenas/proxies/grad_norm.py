"""grad_norm (Abdelfattah, Mehrotra, Dudziak & Lane, "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

score = Σ over Conv/Linear layers l of ‖∂L/∂W_l‖_2 — the *sum of per-layer* Euclidean (Frobenius)
norms, as in Abdelfattah et al.'s code (per-layer `weight.grad.norm()`, then summed), not the norm
of the one concatenated gradient vector. L is the mean cross-entropy of the model (train mode, the
context's re-initialised weights) on the labelled batch: `ctx.real_batch` when given, else the
noise batch with seeded uniform labels (see `snip`). Higher = predicted better.
"""

from __future__ import annotations

import torch

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register
from edgenas.proxies.snip import loss_weight_grads, nonfinite_to_neg_inf


@register("grad_norm")
def grad_norm(ctx: ProxyContext) -> float:
    """Σ_l ‖∂L/∂W_l‖_2 over Conv/Linear weights, L = mean CE on the labelled batch (higher = better)."""
    _, grads = loss_weight_grads(ctx)
    total = sum(float(torch.linalg.vector_norm(g.double())) for g in grads)
    return nonfinite_to_neg_inf(total)
