"""FLOPs with PyTorch's own counter (`torch.utils.flop_counter`).

Why not an analytic formula per layer: the counter sees the ops that actually run, so
any network from any space is counted the same way. Convention: `edgenas.core.cost`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _first_param(model: nn.Module) -> torch.Tensor | None:
    return next(iter(model.parameters()), None)


def example_input(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1) -> torch.Tensor:
    """A random input on the model's device and dtype."""
    p = _first_param(model)
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    return torch.randn(batch, *input_shape, device=device, dtype=dtype)


def count_flops(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1) -> int:
    """FLOPs of one forward pass (eval mode) at `batch`; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example_input(model, input_shape, batch))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
