"""Parameter count: the `params` field of `Cost` (see `edgenas.core.cost`)."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameter elements, trainable and frozen; buffers excluded.

    `Module.parameters()` yields each `Parameter` object once, so weights shared between
    layers (tied embeddings, reused blocks) are counted once, as they are stored once.
    """
    return sum(p.numel() for p in model.parameters())
