"""All costs of one network in one call."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from edgenas.core.cost import Cost
from edgenas.cost.flops import count_flops
from edgenas.cost.latency import measure_onnx_latency, measure_torch_latency
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params


def measure_cost(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    latency: str | None = None,
    threads: int = 1,
    repeats: int = 50,
    warmup: int = 10,
    workdir: str | Path | None = None,
) -> Cost:
    """Params, FLOPs, peak memory, and optionally latency ("onnx" or "torch", batch 1)."""
    latency_ms = None
    if latency == "onnx":
        from edgenas.export.onnx import export_onnx

        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            path = export_onnx(model, input_shape, Path(tmp) / "model.onnx")
            latency_ms = measure_onnx_latency(
                path, input_shape, threads=threads, warmup=warmup, repeats=repeats
            ).median_ms
    elif latency == "torch":
        latency_ms = measure_torch_latency(
            model, input_shape, threads=threads, warmup=warmup, repeats=repeats
        ).median_ms
    elif latency is not None:
        raise ValueError(f"latency must be None, 'onnx' or 'torch', not {latency!r}")
    return Cost(
        params=count_params(model),
        flops=count_flops(model, input_shape),
        peak_memory_bytes=peak_activation_bytes(model, input_shape),
        latency_ms=latency_ms,
    )
