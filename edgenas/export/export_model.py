"""`edgenas export` as a function: ONNX file, output check, latency with both backends.

`export_model` takes what a user names (a model file or run folder, or an untrained arch);
`export_and_measure` takes a built network (the pipeline's export stage uses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import UserError
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


def export_model(
    model: str | Path | None = None,
    *,
    arch: str | None = None,
    space: str = "nb201",
    width: int = 16,
    cells: int = 1,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    resize: int | None = None,
    out: str | Path | None = None,
    threads: int = 1,
    repeats: int = 100,
) -> dict[str, Any]:
    """Export a model file (`model.pt` or its run folder), or the untrained `arch`, and measure it.

    The ONNX file goes to `out`, by default next to the model file (`model.onnx`), or to
    `./model.onnx` for an arch, which is built for the dataset's input at width/cells.
    Returns what `export_and_measure` writes to `<out>.json`.
    """
    from edgenas.core.space import NetShape

    if model is not None:
        from edgenas.train.model_file import load_model_file

        net, blob = load_model_file(model)
        shape = NetShape(**blob["shape"])
        src = Path(model)
        default_out = (src if src.is_dir() else src.parent) / "model.onnx"
    elif arch is not None:
        from edgenas.data import dataset_info
        from edgenas.spaces import get_space

        sp = get_space(space)
        shape = NetShape.for_data(dataset_info(dataset, data_dir, resize=resize), width, cells)
        net = sp.build(sp.parse(arch), shape)
        default_out = Path("model.onnx")
    else:
        raise UserError("edgenas export needs a MODEL file / run directory, or --arch ARCH_STRING")
    return export_and_measure(net, shape.input_shape, out or default_out, threads=threads, repeats=repeats)
