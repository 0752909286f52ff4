"""FLOPs of one forward pass: the `flops` field of `Cost`.

The count comes from `torch.utils.flop_counter.FlopCounterMode`, so it follows the
`FLOPS_CONVENTION` of `edgenas.core.cost` by construction instead of by a hand-kept table
of layer formulas that drifts from what PyTorch actually executes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgenas.cost._runtime import eval_mode, probe_input


def count_flops(model: nn.Module, input_shape: Sequence[int], batch: int = 1) -> int:
    """FLOPs of one inference forward pass of `model` on a `(batch, *input_shape)` input.

    Runs on the model's own device and dtype, in eval mode without autograd (so no
    backward FLOPs), and restores the model's train/eval flags afterwards.
    """
    x = probe_input(model, input_shape, batch)
    counter = FlopCounterMode(display=False)
    with eval_mode(model), torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())
