"""SNIP (Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019),
as a zero-cost NAS proxy (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021).

score = Σ over the weights θ of every Conv/Linear layer of |θ ⊙ ∂L/∂θ|, L the mean cross-entropy
of the model (train mode, the context's re-initialised weights) on one labelled batch. This is
Abdelfattah et al.'s form: the gradient w.r.t. a multiplicative all-ones weight mask, which equals
θ ⊙ ∂L/∂θ. Higher = predicted better.

The labelled batch is `ctx.real_batch` when the context has one (spec az-nas.md §3.1: SNIP is
rerun on real images); otherwise the noise batch `ctx.inputs` with labels drawn uniformly from the
model's output classes by `ctx.generator("labels")`.

This module also holds the small helpers the baseline proxies share (`_util.py` belongs to AZ).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register


def nonfinite_to_neg_inf(value: float) -> float:
    """NaN and ±inf -> -inf: a failed score sinks to the bottom of its ranking."""
    value = float(value)
    return value if math.isfinite(value) else -math.inf


def scoring_copy(ctx: ProxyContext) -> nn.Module:
    """A private copy of `ctx.model` (same weights and mode), so a baseline's forward passes leave the
    shared model's BN statistics and gradients untouched for the other proxies."""
    return copy.deepcopy(ctx.model)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The Conv/Linear layers whose `weight` the gradient-based baselines score (Abdelfattah et al.)."""
    return [m for m in model.modules() if isinstance(m, (_ConvNd, nn.Linear))]


def labelled_inputs(ctx: ProxyContext) -> torch.Tensor:
    """The images of the labelled batch: `ctx.real_batch[0]` if present, else the noise batch `ctx.inputs`."""
    return ctx.inputs if ctx.real_batch is None else ctx.real_batch[0]


def labels_for(ctx: ProxyContext, logits: torch.Tensor) -> torch.Tensor:
    """`ctx.real_batch[1]` if present, else labels ~ U{0 .. classes-1} (classes = logits.shape[1]) from
    `ctx.generator("labels")`, one per row of `logits`."""
    if ctx.real_batch is not None:
        return ctx.real_batch[1]
    labels = torch.randint(0, int(logits.shape[1]), (int(logits.shape[0]),), generator=ctx.generator("labels"))
    return labels.to(logits.device)


def loss_weight_grads(ctx: ProxyContext) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(weights, ∂L/∂weights) of the Conv/Linear layers of a copy of the model, L = mean CE on the labelled batch."""
    model = scoring_copy(ctx)
    weights = [m.weight for m in weight_layers(model)]
    with torch.enable_grad():
        logits = model(labelled_inputs(ctx))
        loss = F.cross_entropy(logits, labels_for(ctx, logits))
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True)]
    return [w.detach() for w in weights], grads


@register("snip")
def snip(ctx: ProxyContext) -> float:
    """Σ_layers Σ |θ ⊙ ∂L/∂θ| over Conv/Linear weights, L = mean CE on the labelled batch (higher = better)."""
    weights, grads = loss_weight_grads(ctx)
    total = sum(float((w * g).abs().sum(dtype=torch.float64)) for w, g in zip(weights, grads, strict=True))
    return nonfinite_to_neg_inf(total)
