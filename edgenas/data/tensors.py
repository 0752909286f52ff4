"""Turning on-disk pixel arrays into normalised float tensors.

Why chunked: resizing or taking statistics over a whole 50k-image dataset at once would
allocate several full-size temporaries; working in chunks bounds the extra memory to one
chunk while the result is still one contiguous tensor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHUNK = 4096  # images per chunk for resize and statistics


def to_unit_float(x: np.ndarray, scale: float) -> torch.Tensor:
    """[N, C, H, W] array with values in [0, scale] -> float32 tensor in [0, 1]."""
    if not x.flags.writeable:  # torch.from_numpy warns on read-only buffers
        x = x.copy()
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
    return t.div_(scale)


def resize_images(x: torch.Tensor, side: int) -> torch.Tensor:
    """Bilinear resize to `side`×`side`, antialiased when shrinking (avoids aliasing on thin strokes)."""
    n, c, h, w = x.shape
    if (h, w) == (side, side):
        return x
    antialias = side < max(h, w)
    out = torch.empty((n, c, side, side), dtype=x.dtype)
    for lo in range(0, n, CHUNK):
        out[lo : lo + CHUNK] = F.interpolate(
            x[lo : lo + CHUNK], size=(side, side), mode="bilinear", align_corners=False, antialias=antialias
        )
    return out


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std, accumulated in float64 for accuracy.

    A constant channel gets std 1.0 so normalising it cannot divide by zero.
    """
    n, c, h, w = x.shape
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for lo in range(0, n, CHUNK):
        chunk = x[lo : lo + CHUNK].to(torch.float64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = n * h * w
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


def normalise_(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """In place: (x - mean) / std per channel; returns `x`."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)
