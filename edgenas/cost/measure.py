"""All costs of one network in one call: the `Cost` that device budgets are checked against."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from edgenas.core.cost import Cost
from edgenas.core.errors import ConfigError
from edgenas.cost._runtime import model_device
from edgenas.cost.flops import count_flops
from edgenas.cost.latency import measure_onnx_latency, measure_torch_latency
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params

LATENCY_BACKENDS = ("onnx", "torch")
# The exporter tried first for the batch-1 timing file (`export_onnx(prefer=...)`): TorchScript exports
# an NB201/DARTS network in ~0.1 s where the dynamo exporter takes seconds; dynamo takes over on failure.
TIMING_EXPORTER = "torchscript"


def measure_cost(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    latency: str | None = None,
    threads: int = 1,
    repeats: int = 50,
    warmup: int = 10,
    workdir: str | Path | None = None,
) -> Cost:
    """Params, FLOPs and peak memory (batch 1, model's own device), and optionally latency.

    `latency`: None skips it (it is the slow part); "onnx" exports the model to a
    temporary static-batch ONNX file (under `workdir` if given, removed afterwards; exported
    with `TIMING_EXPORTER` first) and times it with onnxruntime on the CPU, which is what a
    device would run; "torch" times eager PyTorch
    on the model's device. The latency figure is the median of `repeats` batch-1 runs.
    """
    if latency is not None and latency not in LATENCY_BACKENDS:
        raise ConfigError(f"latency must be None, 'onnx' or 'torch', not {latency!r}")
    params = count_params(model)
    flops = count_flops(model, input_shape)
    peak = peak_activation_bytes(model, input_shape)
    latency_ms = None
    if latency == "onnx":
        # Imported here: edgenas.export.onnx itself builds on edgenas.cost helpers.
        from edgenas.export.onnx import export_onnx

        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="edgenas-cost-", dir=workdir) as tmp:
            # batch-1 timing only: a static batch exports faster than a dynamic one
            path = export_onnx(
                model, input_shape, Path(tmp) / "model.onnx", dynamic_batch=False, prefer=TIMING_EXPORTER
            )
            stats = measure_onnx_latency(path, input_shape, threads=threads, warmup=warmup, repeats=repeats)
        latency_ms = stats.median_ms
    elif latency == "torch":
        stats = measure_torch_latency(
            model, input_shape, threads=threads, warmup=warmup, repeats=repeats, device=model_device(model)
        )
        latency_ms = stats.median_ms
    return Cost(params=params, flops=flops, peak_memory_bytes=peak, latency_ms=latency_ms)
