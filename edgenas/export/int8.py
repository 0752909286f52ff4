"""`edgenas export --int8` as a function: float32 and INT8 ONNX files of one trained network, side by side.

The INT8 file is onnxruntime's static quantization of the float32 export
(`edgenas.export.quantize`), calibrated on a seeded sample of the training images; both
files are evaluated through onnxruntime on the test set and timed the device profile's way.
Sizes are the files on disk, both written deployment-compact by default (`edgenas.export.compact`:
short tensor names, no shape annotations or doc strings, outputs unchanged bit for bit), so the
ratio compares tensors rather than names; peak activation memory is the float32 measurement
(`edgenas.cost.memory`) at one byte per activation (`edgenas.core.device.at_precision`).
When INT8 loses more than `qat_threshold` points and `qat_epochs` is given, the network is
fine-tuned with PyTorch's quantization-aware training (`edgenas.export.qat`) and quantized
again; both INT8 results are reported.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgenas.core.atomic import atomic_write_json
from edgenas.core.device import BYTES_PER_VALUE, at_precision
from edgenas.core.errors import ConfigError
from edgenas.cost.latency import measure_onnx_latency
from edgenas.cost.measure import measure_cost
from edgenas.export.compact import compact_onnx
from edgenas.export.onnx import export_onnx, verify_onnx
from edgenas.export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_IMAGES,
    calibration_sample,
    onnx_accuracy,
    quantize_onnx,
)

INT8_SCHEMA_VERSION = 1
DEFAULT_QAT_THRESHOLD = 1.0  # points of test accuracy


def int8_export(
    model: nn.Module,
    data: Any,
    out_dir: str | Path,
    *,
    calibration: str = "minmax",
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    qat_epochs: int | None = None,
    qat_threshold: float = DEFAULT_QAT_THRESHOLD,
    latency: bool = True,
    stem: str = "model",
    fp32_path: str | Path | None = None,
    compact: bool = True,
) -> dict[str, Any]:
    """Export `model` as `<stem>.onnx` (float32) and `<stem>.int8.onnx` in `out_dir`; compare them.

    `data`: the `DataSplits` the model was trained on (calibration from `data.train`,
    accuracy on `data.test`). Returns, and writes to `<stem>.int8.json`, per precision
    the file, its bytes, test accuracy, peak activation memory and latency (median ms at
    `threads`/`warmup`/`repeats`; skipped with `latency=False`), and the ratios
    `size_ratio` (fp32 / int8 bytes), `latency_ratio` (int8 / fp32) and `accuracy_drop_points`.
    With `qat_epochs`, a drop above `qat_threshold` points adds `qat`: the same for the
    quantization-aware fine-tuned network (`<stem>.qat.int8.onnx`). `fp32_path`: a float32
    export of `model` already written and checked (the pipeline's), used instead of a new one.
    `compact`: quantize the file as exported, then make both files deployment-compact (a given
    `fp32_path` in place); each precision's `uncompacted_model_bytes` is its file's size before.
    """
    if calibration not in CALIBRATION_METHODS:
        raise ConfigError(f"--calibration {calibration!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    if not qat_threshold >= 0:
        raise ConfigError(f"--qat-threshold must be >= 0 points, got {qat_threshold!r}")
    out_dir = Path(out_dir)
    model = model.eval().cpu()
    input_shape = tuple(data.train.images.shape[1:])
    fresh = fp32_path is None
    fp32_path = Path(export_onnx(model, input_shape, out_dir / f"{stem}.onnx") if fresh else fp32_path)
    calib = calibration_sample(data.train.images.numpy(), calibration_images, seed)
    int8_path = quantize_onnx(fp32_path, out_dir / f"{stem}.int8.onnx", calib, method=calibration)
    written = {p: _compacted(p, compact) for p in (fp32_path, int8_path)}
    if fresh:
        verify_onnx(model, fp32_path, input_shape)  # the file as deployed
    cost = measure_cost(model, input_shape)
    timing = {"threads": threads, "warmup": warmup, "repeats": repeats}
    test_x, test_y = data.test.images.numpy(), data.test.labels.numpy()

    def describe(path: Path, precision: str) -> dict[str, Any]:
        lat = measure_onnx_latency(path, input_shape, **timing).median_ms if latency else None
        deployed = replace(at_precision(cost, precision), model_bytes=path.stat().st_size, latency_ms=lat)
        return {
            "file": str(path),
            "model_bytes": deployed.model_bytes,
            "uncompacted_model_bytes": written[path],
            "weight_bytes": weight_bytes(path),
            "bytes_per_activation": BYTES_PER_VALUE[precision],
            "test_accuracy": onnx_accuracy(path, test_x, test_y, threads=threads),
            "peak_memory_bytes": deployed.peak_memory_bytes,
            "latency_ms": lat,
            "cost": deployed.to_dict(),
        }

    fp32, int8 = describe(fp32_path, "fp32"), describe(int8_path, "int8")
    result: dict[str, Any] = {
        "schema_version": INT8_SCHEMA_VERSION,
        "quantization": {
            "tool": "onnxruntime.quantization.quantize_static",
            "format": "QDQ",
            "weights": "int8, symmetric, per output channel",
            "activations": "uint8, asymmetric, per tensor",
            "calibration": calibration,
            "calibration_images": len(calib),
            "calibration_seed": seed,
        },
        "compact": compact,
        "latency_protocol": {**timing, "backend": "onnxruntime", "batch": 1, "statistic": "median"},
        "test_images": len(test_y),
        "fp32": fp32,
        "int8": int8,
        **_compare(fp32, int8),
        "qat_threshold_points": qat_threshold,
    }
    if qat_epochs is not None and result["accuracy_drop_points"] > qat_threshold:
        from edgenas.export.qat import qat_finetune

        tuned, qat_meta = qat_finetune(model, data, epochs=qat_epochs, seed=seed)
        qat_fp32 = export_onnx(tuned, input_shape, out_dir / f"{stem}.qat.onnx")
        qat_int8 = quantize_onnx(qat_fp32, out_dir / f"{stem}.qat.int8.onnx", calib, method=calibration)
        written |= {p: _compacted(p, compact) for p in (qat_fp32, qat_int8)}
        qat = describe(qat_int8, "int8")
        result["qat"] = {**qat_meta, "int8": qat, **_compare(fp32, qat)}
    elif qat_epochs is None and result["accuracy_drop_points"] > qat_threshold:
        result["advice"] = (
            f"INT8 loses {result['accuracy_drop_points']:.2f} points (> {qat_threshold:g}); "
            "try quantization-aware fine-tuning with --qat EPOCHS"
        )
    atomic_write_json(out_dir / f"{stem}.int8.json", result)
    return result


def weight_bytes(path: str | Path) -> int:
    """Bytes of the file's stored tensors (weights, biases, scales, zero points): the file less its graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    sizes = onnx.helper.tensor_dtype_to_np_dtype
    return sum(int(np.prod(t.dims, dtype=np.int64)) * np.dtype(sizes(t.data_type)).itemsize for t in graph.initializer)


def _compacted(path: Path, compact: bool) -> int:
    """Bytes of the file at `path` as written; with `compact`, it is then rewritten deployment-compact."""
    return compact_onnx(path) if compact else path.stat().st_size


def _compare(fp32: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    lat = (
        int8["latency_ms"] / fp32["latency_ms"]
        if fp32["latency_ms"] is not None and int8["latency_ms"] is not None
        else None
    )
    return {
        "accuracy_drop_points": 100 * (fp32["test_accuracy"] - int8["test_accuracy"]),
        "size_ratio": fp32["model_bytes"] / int8["model_bytes"],
        "uncompacted_size_ratio": fp32["uncompacted_model_bytes"] / int8["uncompacted_model_bytes"],
        "weight_bytes_ratio": fp32["weight_bytes"] / int8["weight_bytes"],
        "latency_ratio": lat,
    }
