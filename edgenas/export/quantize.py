"""INT8 ONNX models: onnxruntime static quantization and evaluation through onnxruntime.

Post-training static quantization in onnxruntime's QDQ format (Jacob et al., CVPR 2018,
the integer-arithmetic scheme every edge runtime follows): weights int8, symmetric, one
scale per output channel; activations uint8 with ranges calibrated on a seeded sample of
training images (MinMax, Entropy or Percentile, `CALIBRATION_METHODS`). The float32 file
of `edgenas.export.onnx.export_onnx` goes in, a QDQ file comes out; onnxruntime fuses the
QDQ pairs into integer kernels (QLinearConv ...) when it loads it. Accuracy is measured on
the same runtime that will run the model, not on PyTorch's simulation of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.core.errors import ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.export.onnx import ExportError, _one_line, input_spec, onnx_session

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32


def calibration_sample(images: Any, n: int = DEFAULT_CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """`n` training images drawn without replacement with a seeded generator (all if fewer), float32 NCHW."""
    x = np.asarray(images, dtype=np.float32)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"calibration images must be a positive int, got {n!r}")
    if len(x) <= n:
        return x
    idx = np.sort(numpy_rng(seed, "int8-calibration").choice(len(x), size=n, replace=False))
    return x[idx]


class _Reader:
    """onnxruntime's `CalibrationDataReader`: the calibration images in batches."""

    def __init__(self, name: str, images: np.ndarray, batch: int) -> None:
        self._batches: Iterator[np.ndarray] = iter([images[i : i + batch] for i in range(0, len(images), batch)])
        self._name = name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._batches, None)
        return None if x is None else {self._name: x}


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice per tensor through the root logger (dozens of lines per
    model, e.g. "consider pre-processing"); a user sees only our one report, so hold those back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(
    fp32_path: str | Path,
    out: str | Path,
    calibration: np.ndarray,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    quantize_inputs: bool = False,
) -> Path:
    """Write the INT8 (QDQ) version of the float32 ONNX file `fp32_path` to `out`; returns `out`.

    `calibration`: float32 images (N, C, H, W) as the model sees them (normalised). The
    file is written beside `out` and renamed into place. A bad method is a `ConfigError`;
    a model onnxruntime cannot quantize an `ExportError` with its one-line reason.
    `quantize_inputs`: quantize ops such as pooling even where their input is float (onnxruntime's
    `ForceQuantizeNoInputCheck`): a one-op graph then runs the integer kernel it runs inside a network.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    methods["percentile"] = CalibrationMethod.Percentile
    if method not in methods:
        raise ConfigError(f"calibration method {method!r}: choose one of {', '.join(CALIBRATION_METHODS)}")
    fp32_path, out = Path(fp32_path), Path(out)
    name, static_batch, _dtype = input_spec(onnx_session(fp32_path))
    batch = static_batch or CALIBRATION_BATCH
    if len(calibration) == 0:
        raise ConfigError("no calibration images")
    if static_batch is not None:  # a static-batch file is calibrated at its own batch
        calibration = calibration[: max(static_batch, len(calibration) // static_batch * static_batch)]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet_quantizer():
            quantize_static(
                str(fp32_path),
                str(tmp),
                _Reader(name, np.ascontiguousarray(calibration, dtype=np.float32), batch),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                extra_options={"WeightSymmetric": True, "ForceQuantizeNoInputCheck": quantize_inputs},
            )
        os.replace(tmp, out)
    except (ConfigError, ExportError):
        raise
    except Exception as e:
        raise ExportError(f"INT8 quantization of {fp32_path} failed: {_one_line(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out


def random_calibration(input_shape: tuple[int, ...], n: int = 8, seed: int = 0, *tags: object) -> np.ndarray:
    """`n` seeded standard-normal inputs of `input_shape` (C, H, W): calibration for timing, not for accuracy."""
    return numpy_rng(seed, "int8-random-calibration", *tags).standard_normal((n, *input_shape)).astype(np.float32)


def quantized_latency_ms(
    model: Any, input_shape: tuple[int, ...], *, threads: int, warmup: int, repeats: int, seed: int = 0
) -> float:
    """Median batch-1 latency (ms) here of `model` exported and quantized as `edgenas export --int8` does,
    calibrated on `random_calibration` (the ranges do not change which kernels run)."""
    from edgenas.cost.latency import measure_onnx_latency
    from edgenas.cost.measure import TIMING_EXPORTER
    from edgenas.export.onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgenas-int8-") as tmp:
        path = Path(tmp) / "model.onnx"
        fp32 = export_onnx(model, input_shape, path, dynamic_batch=False, prefer=TIMING_EXPORTER)
        int8 = quantize_onnx(fp32, Path(tmp) / "model.int8.onnx", random_calibration(input_shape, seed=seed))
        stats = measure_onnx_latency(int8, input_shape, threads=threads, warmup=warmup, repeats=repeats)
    return stats.median_ms


def onnx_accuracy(path: str | Path, images: Any, labels: Any, *, batch: int = 256, threads: int = 1) -> float:
    """Top-1 accuracy (fraction) of the ONNX model at `path` on `images` (N, C, H, W) through onnxruntime."""
    session = onnx_session(path, threads=threads)
    name, static_batch, dtype = input_spec(session)
    x = np.asarray(images, dtype=dtype)
    y = np.asarray(labels)
    step = static_batch or batch
    correct = 0
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        pad = step - len(chunk) if static_batch else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), dtype)])
        logits = session.run(None, {name: chunk})[0][: step - pad]
        correct += int((logits.argmax(axis=1) == y[i : i + step]).sum())
    return correct / max(1, len(y))


def max_output_diff(fp32_path: str | Path, int8_path: str | Path, images: Any) -> float:
    """Largest |float32 - INT8| logit difference over `images`, both through onnxruntime."""
    outs = []
    for path in (fp32_path, int8_path):
        session = onnx_session(path)
        name, _, dtype = input_spec(session)
        outs.append(session.run(None, {name: np.asarray(images, dtype=dtype)})[0])
    return float(np.abs(outs[0] - outs[1]).max())
