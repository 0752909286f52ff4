"""Latency measurement: onnxruntime (what ships to a device) and plain PyTorch.

Protocol: batch 1 unless asked, a fixed thread count (recorded), `warmup` untimed runs,
then `repeats` timed runs with `time.perf_counter`; the median is the figure, p10/p90
the spread. The median resists the odd slow run from a busy machine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings of one network."""

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
        """p90 - p10: how noisy the measurement was."""
        return self.p90_ms - self.p10_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "spread_ms": self.spread_ms}

    @classmethod
    def from_times(cls, times_s: list[float], *, backend: str, warmup: int, threads: int, batch: int) -> LatencyStats:
        t = np.asarray(times_s) * 1e3
        p10, med, p90 = np.percentile(t, [10, 50, 90])
        return cls(
            backend=backend,
            median_ms=float(med),
            mean_ms=float(t.mean()),
            std_ms=float(t.std()),
            p10_ms=float(p10),
            p90_ms=float(p90),
            min_ms=float(t.min()),
            max_ms=float(t.max()),
            repeats=len(t),
            warmup=warmup,
            threads=threads,
            batch=batch,
        )


def measure_onnx_latency(
    onnx_path: str | Path,
    input_shape: tuple[int, int, int],
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
) -> LatencyStats:
    """Time an ONNX file with onnxruntime on the CPU."""
    from edgenas.export.onnx import INPUT_NAME, onnx_session

    session = onnx_session(onnx_path, threads=threads)
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return LatencyStats.from_times(times, backend="onnxruntime", warmup=warmup, threads=threads, batch=batch)


def measure_torch_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 50,
    device: str | torch.device = "cpu",
) -> LatencyStats:
    """Time eager PyTorch inference (`inference_mode`) at a fixed CPU thread count."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.randn(batch, *input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            sync()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    return LatencyStats.from_times(times, backend=f"torch-{device.type}", warmup=warmup, threads=threads, batch=batch)
