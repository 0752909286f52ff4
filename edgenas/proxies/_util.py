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


def channel_rows_f64(t: torch.Tensor) -> torch.Tensor:
    """A float64 copy of `t` as [G, C, m]: channels in rows, every position a column (G groups).

    [B, C, H, W] -> [B, C, H*W] without the permute copy of `channels_last_2d`; [B, N, C] and
    [B, C] go through `channels_last_2d` and come back as [1, C, n]. Σ_g X_g X_gᵀ is then the same
    C×C sum of outer products over positions as `channels_last_2d(t).T @ channels_last_2d(t)`.
    Always a new tensor, so callers may modify it in place.
    """
    if t.dim() == 4:
        return t.reshape(t.shape[0], t.shape[1], -1).to(torch.float64, copy=True)
    return channels_last_2d(t).to(torch.float64, copy=True).T.unsqueeze(0)


def gram_f64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ over positions of a bᵀ for two `channel_rows_f64` tensors: [G, Ca, m] × [G, Cb, m] -> [Ca, Cb]."""
    return torch.matmul(a, b.transpose(1, 2)).sum(dim=0)
