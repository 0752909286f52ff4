"""`edgenas export` as a function: ONNX file, output check, latency with both backends.

`export_model` takes what a user names (a model file or run folder, or an untrained arch);
`export_and_measure` takes a built network (the pipeline's export stage uses it);
`export_model(..., int8=True)` adds the INT8 file and its comparison (`edgenas.export.int8`)
on the data the model was trained on (`training_data`).
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
    compact: bool = True,
) -> dict[str, Any]:
    """Export `model` to `out` (.onnx), check it against PyTorch, time it; write `<out>.json`.

    `compact`: the deployment-compact file (`edgenas.export.compact`); False keeps the exporter's names."""
    out = Path(out)
    model = model.eval().cpu()
    export_onnx(model, input_shape, out, compact=compact)
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
    int8: bool = False,
    calibration: str = "minmax",
    calibration_images: int | None = None,
    qat: int | None = None,
    qat_threshold: float | None = None,
    seed: int = 0,
    compact: bool = True,
) -> dict[str, Any]:
    """Export a model file (`model.pt` or its run folder), or the untrained `arch`, and measure it.

    The ONNX file goes to `out`, by default next to the model file (`model.onnx`), or to
    `./model.onnx` for an arch, which is built for the dataset's input at width/cells.
    Returns what `export_and_measure` writes to `<out>.json`. With `int8` (a model file
    only), also the INT8 file beside it and `int8`: `edgenas.export.int8.int8_export`'s
    comparison (calibration method and images, `qat` epochs and threshold as there).
    `compact=False` keeps the exporter's and quantizer's tensor names and annotations (debugging).
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
    if int8 and model is None:
        raise UserError("--int8 needs a trained MODEL file or run directory (calibration and accuracy need its data)")
    target = Path(out or default_out)
    res = export_and_measure(net, shape.input_shape, target, threads=threads, repeats=repeats, compact=compact)
    if int8:
        from edgenas.export.int8 import DEFAULT_QAT_THRESHOLD, int8_export
        from edgenas.export.quantize import DEFAULT_CALIBRATION_IMAGES

        data = training_data(Path(model), blob, dataset=dataset, data_dir=data_dir, resize=resize)
        res["int8"] = int8_export(
            net,
            data,
            target.parent,
            calibration=calibration,
            calibration_images=calibration_images or DEFAULT_CALIBRATION_IMAGES,
            seed=seed,
            threads=threads,
            repeats=repeats,
            qat_epochs=qat,
            qat_threshold=DEFAULT_QAT_THRESHOLD if qat_threshold is None else qat_threshold,
            stem=target.stem,
            compact=compact,
        )
    return res


def training_data(
    model: Path, blob: dict[str, Any], *, dataset: str, data_dir: str | Path | None, resize: int | None
) -> Any:
    """The data splits a model file was trained on, normalised with the model's own statistics.

    A run folder's `config.yaml` gives dataset, subset, held-out share, resize and seed;
    a bare model file its recorded dataset (else `dataset`), the whole training set.
    """
    import torch

    from edgenas.core.rundir import RunDir
    from edgenas.data import load_dataset

    folder = model if model.is_dir() else model.parent
    opts: dict[str, Any] = {}
    if (folder / "config.yaml").is_file():
        opts = RunDir(folder).read_config().get("options", {}) or {}
    meta = blob.get("meta", {})
    data = load_dataset(
        opts.get("dataset") or meta.get("dataset") or dataset,
        opts.get("data_dir") or data_dir,
        seed=int((opts.get("train") or {}).get("seed", 0)),
        val_fraction=opts.get("val_fraction", 0.1),
        subset=opts.get("subset"),
        resize=opts.get("resize", resize),
    )
    if (
        "mean" in meta
        and "std" in meta
        and (list(meta["mean"]), list(meta["std"]))
        != (
            list(data.mean),
            list(data.std),
        )
    ):
        have_m, have_s = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
        want_m, want_s = torch.tensor(meta["mean"])[:, None, None], torch.tensor(meta["std"])[:, None, None]
        for split in (data.train, data.val, data.test):
            split.images = ((split.images * have_s + have_m) - want_m) / want_s
    return data
