"""Parameter count."""

from __future__ import annotations

from torch import nn


def count_params(model: nn.Module) -> int:
    """All parameter elements (trainable and frozen); shared tensors once; buffers excluded."""
    return sum(p.numel() for p in model.parameters())
