"""Small helpers the AZ proxy modules share."""

from __future__ import annotations

import math

import torch


def finite_or_neg_inf(value: float) -> float:
    """NaN -> -inf, so a broken candidate sinks to the bottom of that proxy's ranking (spec §1.1)."""
    value = float(value)
    return -math.inf if math.isnan(value) else value


def channels_last_2d(t: torch.Tensor) -> torch.Tensor:
    """Reshape a feature to [n, C]: every position of every sample is one row.

    [B, C, H, W] -> [B*H*W, C]; [B, N, C] (tokens) -> [B*N, C]; [B, C] stays.
    """
    if t.dim() == 4:
        return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
    if t.dim() in (2, 3):
        return t.reshape(-1, t.shape[-1])
    raise ValueError(f"primary-block features must be 2-D, 3-D or 4-D, got shape {tuple(t.shape)}")
