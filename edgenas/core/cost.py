"""The `Cost` of a network: what device budgets are checked against.

Conventions (stated once, here):
- `params`: number of parameter elements (trainable and frozen), buffers excluded.
- `flops`: floating-point operations of one forward pass at batch 1, counted by
  `torch.utils.flop_counter.FlopCounterMode`: a multiply-add is 2 FLOPs; only
  convolutions and matrix products are counted (BatchNorm, activations, pooling and
  additions are not), which is the convention of FLOP tables in the NAS literature.
- `peak_memory_bytes`: the largest total size of activation tensors alive at the same
  time during one inference forward pass at batch 1, the input included, parameters and
  buffers excluded.
- `latency_ms`: median wall-clock time of one batch-1 inference (see `edgenas.cost.latency`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FLOPS_CONVENTION = (
    "FLOPs of one batch-1 forward pass, torch.utils.flop_counter: multiply-add = 2 FLOPs, conv/matmul only"
)


@dataclass(frozen=True)
class Cost:
    """Cost of one network at one input shape."""

    params: int
    flops: int
    peak_memory_bytes: int
    latency_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON results."""
        return asdict(self)
