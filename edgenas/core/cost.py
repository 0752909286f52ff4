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
- `precision`: the number format the byte counts are for: `fp32` (4 bytes per activation
  and weight, what PyTorch measures) or `int8` (1 byte; `edgenas.core.device.at_precision`).
- `model_bytes`: size of the model file on disk when one was written (e.g. the INT8 ONNX
  file); None means "not measured", and budgets then judge `params` x bytes per weight.
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
    precision: str = "fp32"
    model_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON results (`precision` and `model_bytes` only when not the defaults,
        so float32 results read as before these fields existed)."""
        d = asdict(self)
        if d["precision"] == "fp32":
            d.pop("precision")
        if d["model_bytes"] is None:
            d.pop("model_bytes")
        return d
