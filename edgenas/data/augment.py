"""Batch-level augmentation, vectorised and driven by an explicit generator.

Why per batch rather than per sample: one gather over the whole batch costs about as much
as a single per-sample transform call, which keeps augmented training CPU-cheap, and the
explicit generator makes the draws reproducible per (seed, epoch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS: tuple[str | None, ...] = (None, "crop-flip")
CROP_PAD = 4


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = CROP_PAD) -> torch.Tensor:
    """Random crop after `pad`-pixel zero padding, plus a horizontal flip with p=0.5.

    `x` is a normalised [B, C, H, W] batch, so zero padding is mean-colour padding. The
    crop and flip are fused into one index gather; the input is not modified.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    top = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = top[:, None] + torch.arange(h)  # [B, H]
    col = torch.arange(w)
    # A flipped crop reads the crop window right to left.
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - col, col)  # [B, W]
    return padded[
        torch.arange(b)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
