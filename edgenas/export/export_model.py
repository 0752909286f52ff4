"""`edgenas export` as a function: ONNX file, output check, latency with both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgenas.core.atomic import atomic_write_json
from edgenas.cost.latency import measure_onnx_latency, measure_torch_latency
from edgenas.cost.measure import measure_cost
from edgenas.export.onnx import export_onnx, verify_onnx


def export_and_measure(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    out: str | Path,
    *,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Export `model` to `out` (.onnx), check it against PyTorch, time it; write `<out>.json`."""
    out = Path(out)
    model = model.eval().cpu()
    export_onnx(model, input_shape, out)
    max_abs_diff = verify_onnx(model, out, input_shape, atol=atol)
    onnx_lat = measure_onnx_latency(out, input_shape, threads=threads, warmup=warmup, repeats=repeats)
    torch_lat = measure_torch_latency(model, input_shape, threads=threads, warmup=warmup, repeats=repeats)
    cost = measure_cost(model, input_shape)
    result = {
        "onnx_path": str(out),
        "input_shape": list(input_shape),
        "max_abs_diff": max_abs_diff,
        "atol": atol,
        "latency": {"onnxruntime": onnx_lat.to_dict(), "torch": torch_lat.to_dict()},
        "cost": {**cost.to_dict(), "latency_ms": onnx_lat.median_ms},
    }
    atomic_write_json(out.with_suffix(".json"), result)
    return result
