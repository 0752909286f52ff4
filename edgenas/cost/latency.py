"""Latency: onnxruntime (what ships to a device) and eager PyTorch, under one protocol.

Protocol: a fixed thread count, `warmup` untimed runs (allocator, caches, lazy init), then
`repeats` runs each timed with `time.perf_counter`. The median is the headline figure
because it shrugs off the odd slow run of a shared machine; p10/p90 and their spread say
how noisy the measurement was, so a reader can judge whether two medians really differ.
All settings are recorded in the result so a number never travels without its protocol.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.cost._runtime import check_batch, check_input_shape, eval_mode, model_device, probe_input


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings of one network with one backend."""

    backend: str
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    threads: int
    batch: int

    @property
    def spread_ms(self) -> float:
        """p90 - p10: the width of the bulk of the timings (noise), robust to outliers."""
        return self.p90_ms - self.p10_ms

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON results, `spread_ms` included."""
        return {**asdict(self), "spread_ms": self.spread_ms}

    @classmethod
    def from_times(
        cls, times_s: Sequence[float], *, backend: str, warmup: int, threads: int, batch: int
    ) -> LatencyStats:
        """Summarise per-run wall times in seconds (std is the sample std when there are 2+ runs)."""
        t = np.asarray(times_s, dtype=np.float64) * 1e3
        p10, median, p90 = np.percentile(t, [10, 50, 90])
        return cls(
            backend=backend,
            median_ms=float(median),
            mean_ms=float(t.mean()),
            std_ms=float(t.std(ddof=1)) if t.size > 1 else 0.0,
            p10_ms=float(p10),
            p90_ms=float(p90),
            min_ms=float(t.min()),
            max_ms=float(t.max()),
            repeats=int(t.size),
            warmup=warmup,
            threads=threads,
            batch=batch,
        )


def measure_onnx_latency(
    onnx_path: str | Path,
    input_shape: Sequence[int],
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
) -> LatencyStats:
    """Time one ONNX file with onnxruntime on the CPU (see `edgenas.export.onnx.onnx_session`)."""
    # Imported here: edgenas.export.onnx itself builds on edgenas.cost helpers.
    from edgenas.export.onnx import ExportError, input_spec, onnx_session

    _check_protocol(threads, warmup, repeats)
    shape = (check_batch(batch), *check_input_shape(input_shape))
    session = onnx_session(onnx_path, threads=threads)
    name, static_batch, dtype = input_spec(session)
    if static_batch is not None and static_batch != batch:
        raise ExportError(f"{onnx_path} was exported for batch {static_batch}; it cannot be timed at batch {batch}")
    feed = {name: numpy_rng(0, "latency").standard_normal(shape).astype(dtype)}
    try:
        session.run(None, feed)
    except Exception as e:
        raise ExportError(f"onnxruntime cannot run {onnx_path} on a {shape} input: {e}".splitlines()[0]) from e
    times = _time_runs(lambda: session.run(None, feed), warmup, repeats)
    return LatencyStats.from_times(times, backend="onnxruntime", warmup=warmup, threads=threads, batch=batch)


def measure_torch_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    device: str | torch.device = "cpu",
) -> LatencyStats:
    """Time eager PyTorch inference (eval, `torch.inference_mode`) on `device`.

    `torch.set_num_threads(threads)` applies for the duration only. A model living on
    another device is timed as a copy, so the caller's model never moves. On CUDA the
    stream is synchronised around each run, so a time covers the kernels, not the launch.
    """
    _check_protocol(threads, warmup, repeats)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available")
    net = model if model_device(model) == dev else copy.deepcopy(model).to(dev)
    x = probe_input(net, input_shape, batch, device=dev)
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def run() -> None:
        net(x)
        sync()

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with eval_mode(net), torch.inference_mode():
            sync()
            times = _time_runs(run, warmup, repeats)
    finally:
        torch.set_num_threads(old_threads)
    return LatencyStats.from_times(times, backend=f"torch-{dev.type}", warmup=warmup, threads=threads, batch=batch)


def _time_runs(run: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Wall time in seconds of each of `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _check_protocol(threads: int, warmup: int, repeats: int) -> None:
    for name, value, low in (("threads", threads, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"latency {name} must be an int >= {low}, got {value!r}")
