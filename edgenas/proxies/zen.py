"""Zen-score (Lin, Wang, Sun, Chen, Sun, Qian, Li & Jin, "Zen-NAS: A Zero-Shot NAS for High-Performance
Image Recognition", ICCV 2021), following the official `compute_zen_score` as closely as this repo's
networks allow.

On a private copy of the context's model:
  1. Gaussian re-init as the official `network_weight_gaussian_init`: Conv/Linear weights ~ N(0, 1)
     (drawn from `ctx.generator("zen", "init")`), biases 0, BN/GroupNorm γ = 1, β = 0;
  2. train mode; every BN's running statistics are reset and its momentum set to 1, so after a
     forward `running_var` holds that forward's (unbiased) batch variance — the "batch statistics"
     the score's BN term reads (with the default momentum 0.1 it would be mostly the initial 1s);
  3. x = `ctx.inputs` (N(0,1) noise), ε ~ N(0, 1) from `ctx.generator("zen", "eps")`, α = 0.01;
     f = the feature map right before global average pooling (the input of the model's last
     `AdaptiveAvgPool*` module; for NB201 that is lastact(BN+ReLU) of the last cell; falls back to
     the last `forward_features` output when the model has no adaptive pooling);
     forward f(x), then f(x + αε) (official order, so `running_var` ends up from the second pass);
  4. Δ = mean over samples of Σ_{c,h,w} |f(x) − f(x + αε)|   (official code: L1 sum per sample,
     batch mean; the paper writes a Frobenius norm; no division by α, as in the code);
  5. score = log Δ + Σ over BatchNorm2d layers of log sqrt(mean_c running_var_c).
One repeat (the official script averages `repeat` draws; the search uses one). Higher = predicted
better; log 0 or a non-finite value gives −inf.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register
from edgenas.proxies.snip import nonfinite_to_neg_inf, scoring_copy

ALPHA = 0.01
_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


@torch.no_grad()
def gaussian_init_(model: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS init: Conv/Linear weights N(0,1), biases 0; affine BN/GroupNorm γ 1, β 0 (CPU draws)."""
    for m in model.modules():
        if isinstance(m, (_ConvNd, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator, dtype=torch.float32))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()


def pre_gap_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last adaptive average pooling (the pre-GAP map) for batch `x`."""
    pools = [m for m in model.modules() if isinstance(m, _POOLS)]
    if not pools:
        _, feats = model.forward_features(x)
        return feats[-1]
    captured: list[torch.Tensor] = []
    handle = pools[-1].register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured[-1]


def _log_or_neg_inf(v: float) -> float:
    """ln v, or -inf where v <= 0 (a dead signal scores as badly as possible)."""
    return math.log(v) if v > 0 else -math.inf


def zen_score(model: nn.Module, x: torch.Tensor, eps: torch.Tensor, alpha: float = ALPHA) -> float:
    """log Δ + Σ_BN2d log sqrt(mean running_var) for `model` as given (its BN stats are overwritten)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = 1.0
    model.train()
    with torch.no_grad():
        f0 = pre_gap_features(model, x)
        f1 = pre_gap_features(model, x + alpha * eps)
        delta = (f0 - f1).abs().double().reshape(f0.shape[0], -1).sum(dim=1).mean()
        value = _log_or_neg_inf(float(delta))
        for bn in bns:
            if isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None:
                # a BN fed only zeros (a cell with no input-output path) has variance 0
                value += 0.5 * _log_or_neg_inf(float(bn.running_var.double().mean()))
    return nonfinite_to_neg_inf(value)


@register("zen")
def zen(ctx: ProxyContext) -> float:
    """Zen-score log Δ + Σ_BN log sqrt(mean running_var) with N(0,1) weights, α = 0.01 (higher = better)."""
    model = scoring_copy(ctx)
    gaussian_init_(model, ctx.generator("zen", "init"))
    eps = torch.randn(ctx.inputs.shape, generator=ctx.generator("zen", "eps")).to(ctx.inputs.device)
    return zen_score(model, ctx.inputs, eps)
