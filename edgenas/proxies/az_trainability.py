"""AZ-NAS trainability s^T: each primary block's Jacobian should have spectral norm ≈ 1 (spec az-nas.md §1.3).

Why: a block that shrinks or blows up signals (σ far from 1) makes gradients vanish or explode.
Each block is treated as a per-position linear map f_l ≈ A_l f_{l−1}; with a Rademacher v
(E[v vᵀ] = I) one VJP u = J_lᵀ v gives M = UᵀV / n ≈ A_lᵀ, whose top singular value is σ_l.

Why last → first without `retain_graph`: each `autograd.grad` call then walks and frees only the
f_{l−1} → f_l segment, so the whole chain costs about one backward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgenas.core.errors import UserError
from edgenas.proxies._util import channel_rows_f64, finite_or_neg_inf, gram_f64
from edgenas.proxies.context import ProxyContext
from edgenas.proxies.registry import register

_CACHE_KEY = "az_trainability.blocks"


def rademacher(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """i.i.d. ±1 entries (probability ½ each), drawn on CPU for device-independent values.

    The 0/1 draws are those of an int8 `randint` (the same stream whatever the integer or float
    dtype), made in float32 directly and mapped to ±1 in place.
    """
    bits = torch.randint(0, 2, tuple(shape), generator=generator, dtype=torch.float32)
    return bits.mul_(2.0).sub_(1.0).to(device)


def align_positions(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """PixelUnshuffle u = [B, C_in, s·H, s·W] to [B, C_in·s², H, W] so its positions line up with v.

    An odd input size (e.g. 9 -> 5 with ceil-mode pooling) is zero-padded bottom/right to s·H first;
    the padded positions carry no gradient, so they add nothing to UᵀV. (The official code only
    meets sizes that divide exactly; the padding is a robustness addition.)
    """
    if u.dim() != 4 or u.shape[-2:] == v.shape[-2:]:
        return u
    (h_in, w_in), (h_out, w_out) = u.shape[-2:], v.shape[-2:]
    s = math.ceil(h_in / h_out)
    if s < 2 or math.ceil(w_in / w_out) != s or h_in > s * h_out or w_in > s * w_out:
        raise UserError(
            f"trainability cannot align a block mapping {h_in}x{w_in} to {h_out}x{w_out}: only equal "
            "down-sampling of height and width is supported"
        )
    u = F.pad(u, (0, s * w_out - w_in, 0, s * h_out - h_in))
    return F.pixel_unshuffle(u, s)


def block_score(sigma: float) -> float:
    """t = 2 − σ − 1/(σ + 1e-6): 0 at σ = 1, symmetric in log σ, ≈ −1e6 for a zero Jacobian."""
    return 2.0 - sigma - 1.0 / (sigma + 1e-6)


def block_values(ctx: ProxyContext) -> list[float]:
    """Per-transition scores t_1..t_{L−1} (index l−1 holds the f_{l−1} → f_l block), computed once.

    The VJPs consume the graph, so the result is cached: a second call must not backpropagate again.
    """
    if _CACHE_KEY in ctx.cache:
        return list(ctx.cache[_CACHE_KEY])
    feats = ctx.features
    if len(feats) < 2:
        raise UserError(f"trainability needs at least 2 primary blocks, the model gives {len(feats)}")
    gen = ctx.generator("az_trainability", "rademacher")
    scores: list[float] = [0.0] * (len(feats) - 1)
    for l in range(len(feats) - 1, 0, -1):  # noqa: E741 (l is the block index of the spec)
        out, inp = feats[l], feats[l - 1]
        v = rademacher(out.shape, gen, out.device)
        if out.requires_grad and inp.requires_grad:
            (u,) = torch.autograd.grad(out, inp, grad_outputs=v, allow_unused=True)
        else:
            u = None
        if u is None:  # the block does not depend on its input at all: a zero Jacobian
            u = torch.zeros_like(inp)
        if u.shape == v.shape and torch.equal(u, v):  # exact identity block (e.g. skip-only NB201 cell)
            scores[l - 1] = -math.inf
            continue
        u = align_positions(u, v)
        mat_u, mat_v = channel_rows_f64(u), channel_rows_f64(v)  # [G, C, m]
        if mat_u.shape[0] != mat_v.shape[0] or mat_u.shape[2] != mat_v.shape[2]:
            raise UserError(f"trainability cannot align block {l}: shapes {tuple(inp.shape)} -> {tuple(out.shape)}")
        m = gram_f64(mat_u, mat_v) / (mat_u.shape[0] * mat_u.shape[2])
        if m.shape[0] < m.shape[1]:  # same singular values; tall is cheaper
            m = m.T
        sigma = float(torch.linalg.svdvals(m).max())
        scores[l - 1] = block_score(sigma)
    ctx.cache[_CACHE_KEY] = scores
    return list(scores)


@register("az_trainability")
def az_trainability(ctx: ProxyContext) -> float:
    """s^T = mean over the L−1 transitions of t_l; any −inf block makes it −inf; NaN -> −inf."""
    values = block_values(ctx)
    if any(v == -math.inf for v in values):
        return -math.inf
    return finite_or_neg_inf(sum(values) / len(values))
