"""SynFlow (Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020), as a zero-cost NAS proxy (Abdelfattah et al., ICLR 2021).

On a private float64 copy of the context's re-initialised model:
  1. every parameter and buffer θ is replaced by |θ| (Abdelfattah et al.'s `linearize`, which takes
     the absolute value of the whole state dict);
  2. every BatchNorm layer is replaced by the identity (Abdelfattah et al. score synflow on a copy
     built with `bn=False`; AZ-NAS's rerun likewise bypasses BN), so the network is a product of
     non-negative linear maps, poolings and ReLUs (which are then the identity on its non-negative
     activations);
  3. the input is all ones of shape [1, *input_shape] and R = Σ of the output (logits);
  4. score = Σ over the weights θ of every Conv/Linear layer of |θ ⊙ ∂R/∂θ|.
Float64 keeps R from overflowing in deep networks. Higher = predicted better. `ctx.model` is not
modified.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register
from edgenas.proxies.snip import nonfinite_to_neg_inf, scoring_copy, weight_layers

_BN = nn.modules.batchnorm._BatchNorm


def _drop_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm (including itself) swapped for `nn.Identity`, in place."""
    if isinstance(module, _BN):
        return nn.Identity()
    for name, child in module.named_children():
        new = _drop_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def synflow_score(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The SynFlow score of `model` itself (it is modified: abs weights, BN removed, float64)."""
    model = _drop_batchnorm(model).double()
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point():
                t.abs_()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    weights = [m.weight for m in weight_layers(model)]
    if not weights:
        return 0.0
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    with torch.enable_grad():
        r = model(x).sum()
        grads = torch.autograd.grad(r, weights, allow_unused=True)
    total = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads, strict=True) if g is not None)
    return nonfinite_to_neg_inf(total)


@register("synflow")
def synflow(ctx: ProxyContext) -> float:
    """Σ |θ ⊙ ∂R/∂θ| over Conv/Linear weights, R = Σ f_|θ|,noBN(1) in float64 (higher = better)."""
    return synflow_score(scoring_copy(ctx), ctx.input_shape)
