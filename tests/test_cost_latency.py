"""Latency statistics and the `measure_cost` entry point.

Timings themselves are machine-dependent, so the tests check the protocol: what is run,
what is recorded, that the summary is internally consistent, and that nothing leaks
(thread count, train mode, temp files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.cost import Cost, LatencyStats, measure_cost, measure_onnx_latency, measure_torch_latency
from edgenas.export.onnx import ExportError


def _matmul_relu_onnx(path: Path, batch: int | str) -> Path:
    """A tiny ONNX model (input [batch, 16] -> MatMul -> Relu -> logits) built without an exporter."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["h"]), helper.make_node("Relu", ["h"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 8])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _assert_consistent(stats: LatencyStats) -> None:
    assert 0 < stats.min_ms <= stats.p10_ms <= stats.median_ms <= stats.p90_ms <= stats.max_ms
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms and stats.std_ms >= 0
    assert stats.spread_ms == pytest.approx(stats.p90_ms - stats.p10_ms)


def test_stats_from_known_times() -> None:
    stats = LatencyStats.from_times([i / 1000 for i in range(10, 0, -1)], backend="x", warmup=3, threads=2, batch=1)
    assert stats.median_ms == pytest.approx(5.5) and stats.mean_ms == pytest.approx(5.5)
    assert stats.p10_ms == pytest.approx(1.9) and stats.p90_ms == pytest.approx(9.1)
    assert (stats.min_ms, stats.max_ms) == pytest.approx((1.0, 10.0))
    assert stats.std_ms == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    d = stats.to_dict()
    assert d["spread_ms"] == pytest.approx(7.2) and d["repeats"] == 10 and d["warmup"] == 3 and d["threads"] == 2


def test_onnx_latency_records_protocol(tmp_path: Path) -> None:
    path = _matmul_relu_onnx(tmp_path / "m.onnx", "batch")
    stats = measure_onnx_latency(path, (16,), threads=1, warmup=2, repeats=15)
    _assert_consistent(stats)
    assert (stats.backend, stats.repeats, stats.warmup, stats.threads, stats.batch) == ("onnxruntime", 15, 2, 1, 1)
    assert measure_onnx_latency(path, (16,), batch=3, threads=2, warmup=0, repeats=3).threads == 2


def test_onnx_latency_refuses_wrong_batch_and_missing_file(tmp_path: Path) -> None:
    static = _matmul_relu_onnx(tmp_path / "static.onnx", 1)
    with pytest.raises(ExportError, match="batch 1"):
        measure_onnx_latency(static, (16,), batch=4, repeats=2)
    with pytest.raises(ExportError, match="no such ONNX file"):
        measure_onnx_latency(tmp_path / "missing.onnx", (16,))
    with pytest.raises(ExportError, match="cannot run"):
        measure_onnx_latency(static, (15,), repeats=2)


def test_torch_latency_restores_threads_and_mode() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
    threads_before = torch.get_num_threads()
    stats = measure_torch_latency(net, (1, 16, 16), threads=1, warmup=2, repeats=20)
    _assert_consistent(stats)
    assert (stats.backend, stats.repeats, stats.threads, stats.batch) == ("torch-cpu", 20, 1, 1)
    assert torch.get_num_threads() == threads_before
    assert net.training and net[1].training
    assert int(net[1].num_batches_tracked) == 0  # ran in eval: BN statistics untouched


@pytest.mark.parametrize("bad", [{"repeats": 0}, {"threads": 0}, {"warmup": -1}, {"repeats": 2.5}])
def test_bad_protocol_is_a_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        measure_torch_latency(nn.Identity(), (4,), **bad)


def test_measure_cost_without_and_with_torch_latency() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    cost = measure_cost(net, (1, 8, 8))
    assert isinstance(cost, Cost) and cost.latency_ms is None
    assert cost.params == 36 + 144 * 3 + 3
    assert cost.flops == 2 * 9 * 4 * 36 + 2 * 144 * 3
    # input 256 B, conv out 576 B, relu out 576 B (conv out freed after), flatten is a view, logits 12 B
    assert cost.peak_memory_bytes == 256 + 576 + 576
    timed = measure_cost(net, (1, 8, 8), latency="torch", repeats=5, warmup=1)
    assert timed.latency_ms is not None and timed.latency_ms > 0
    assert (timed.params, timed.flops, timed.peak_memory_bytes) == (cost.params, cost.flops, cost.peak_memory_bytes)
    with pytest.raises(ConfigError, match="latency"):
        measure_cost(net, (1, 8, 8), latency="stopwatch")


def test_measure_cost_onnx_latency_cleans_workdir(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    cost = measure_cost(net, (1, 8, 8), latency="onnx", repeats=5, warmup=1, workdir=tmp_path / "work")
    assert cost.latency_ms is not None and cost.latency_ms > 0
    assert list((tmp_path / "work").iterdir()) == []
