"""Batch-level augmentation, vectorised and driven by an explicit generator.

Why per batch rather than per sample: one gather over the whole batch costs about as much
as a single per-sample transform call, which keeps augmented training CPU-cheap, and the
explicit generator makes the draws reproducible per (seed, epoch). Two policies:
`crop-flip` (pad-and-crop plus flip, the CIFAR recipe) and `rrc-flip` (random-resized
crop plus flip, the ImageNet recipe of Szegedy et al., "Going deeper with convolutions",
2015), written here because torchvision is not a dependency.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

AUGMENTATIONS: tuple[str | None, ...] = (None, "crop-flip", "rrc-flip")
CROP_PAD = 4
RRC_SCALE = (0.35, 1.0)  # crop area as a share of the image (torchvision's default is 0.08..1)
RRC_RATIO = (3 / 4, 4 / 3)  # crop aspect ratio range


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


def random_resized_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = RRC_RATIO,
) -> torch.Tensor:
    """Per image: a crop of random area share `scale` and aspect `ratio`, resized back to H×W, flipped with p=0.5.

    All crops are one batched bilinear `grid_sample` (an affine grid per image), so the
    cost is one resampling of the batch. A crop that would not fit is shrunk to fit.
    """
    b, _, h, w = x.shape
    area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = log_r.exp()
    # Crop width/height as fractions of the image's (aspect measured in pixels).
    cw = (area * r * h / w).sqrt().clamp(max=1.0)
    ch = (area / r * w / h).sqrt().clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - cw)  # centre in [-1+cw, 1-cw]
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - ch)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = cw * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = ch
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def apply_augment(name: str, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The augmentation policy `name` (one of AUGMENTATIONS but None) on a normalised batch."""
    if name == "crop-flip":
        return crop_flip(x, generator)
    if name == "rrc-flip":
        return random_resized_crop_flip(x, generator)
    raise ValueError(f"unknown augmentation {name!r}")
