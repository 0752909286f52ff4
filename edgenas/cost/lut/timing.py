"""Timing for latency tables: onnxruntime sessions, interleaved block timing, small ONNX graphs.

Every graph of a table (and every network `check_table` measures) is timed by
`time_interleaved`: graphs take turns block by block so that the slow spells of a shared
machine hit all of them alike, and the figure kept is the lowest block median. Per-op
graphs are timed as chains of 1 and `1 + CHAIN_EXTRA` copies of the op; the slope is the
op's marginal cost inside a graph (see docs/methods/lut.md). `optimized_graph` returns the
graph onnxruntime actually runs, from which a table records what it fuses.
"""

from __future__ import annotations

import math
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas.core.seeding import numpy_rng

if TYPE_CHECKING:
    import onnx

CHAIN_EXTRA = 4  # a chain of 1 and of 1 + CHAIN_EXTRA copies; the slope is the entry
BLOCK = 20  # timed runs per block; graphs take turns block by block
DEFAULT_WARMUP = 20
DEFAULT_REPEATS = 1000
OPSET = 18
STATISTIC = f"lowest median of blocks of {BLOCK} runs, graphs interleaved block by block"
NCHWC_DOMAIN = "com.microsoft.nchwc"  # onnxruntime's blocked-layout (x86) kernels

# a session and the seeded input it is run on
Feed = tuple[Any, dict[str, np.ndarray]]


def session(path: Path, threads: int) -> Feed:
    """An onnxruntime session (the timing setup of `onnx_session`) and a seeded input for it."""
    from edgenas.export.onnx import input_spec, onnx_session

    sess = onnx_session(path, threads=threads)
    name, _batch, dtype = input_spec(sess)
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    feed = {name: numpy_rng(0, "lut-input", path.name).standard_normal(shape).astype(dtype)}
    sess.run(None, feed)
    return sess, feed


def optimized_graph(path: str | Path, *, disabled_optimizers: Iterable[str] = ()) -> onnx.GraphProto:
    """The graph onnxruntime runs for the ONNX file at `path`: `onnx_session`'s optimisation level, on this CPU.

    `disabled_optimizers` names onnxruntime transformers to leave out (tests use
    `NchwcTransformer` to see what a CPU without the blocked layout runs).
    """
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # the "only valid on this machine" warning is the point here
    with tempfile.TemporaryDirectory(prefix="edgenas-opt-") as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(
            str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled_optimizers)
        )
        return onnx.load(opts.optimized_model_filepath).graph


def time_interleaved(
    graphs: Mapping[str, Feed],
    *,
    warmup: int,
    repeats: int,
    advance: Callable[[int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per graph: `ms` (lowest block median) and `median_ms` (median of all timed runs).

    `warmup` untimed runs per graph, then `repeats` timed runs per graph in blocks of
    `BLOCK`; each round runs one block of every graph, in a seeded order per round.
    `advance(1)` is called after each round.
    """
    names = list(graphs)
    block = min(BLOCK, repeats)
    for name in names:
        sess, feed = graphs[name]
        for _ in range(warmup):
            sess.run(None, feed)
    medians: dict[str, list[float]] = {n: [] for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = numpy_rng(0, "lut-order")
    clock = time.perf_counter
    for r in range(round_count(repeats)):
        runs = min(block, repeats - r * block)
        for i in rng.permutation(len(names)):
            name = names[int(i)]
            sess, feed = graphs[name]
            ts = []
            for _ in range(runs):
                start = clock()
                sess.run(None, feed)
                ts.append(clock() - start)
            medians[name].append(float(np.median(ts)))
            times[name].extend(ts)
        if advance is not None:
            advance(1)
    return {n: {"ms": min(medians[n]) * 1e3, "median_ms": float(np.median(times[n])) * 1e3} for n in names}


def round_count(repeats: int) -> int:
    """How many rounds `time_interleaved` makes of `repeats` runs (for progress bars)."""
    return math.ceil(repeats / min(BLOCK, repeats))


def check_settings(threads: int, warmup: int, repeats: int) -> None:
    """The timing protocol's checks (`ConfigError` naming the bad setting)."""
    from edgenas.cost.latency import _check_protocol

    _check_protocol(threads, warmup, repeats)


def processor() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- graphs
def onnx_model(
    nodes: list, inits: list, in_shape: Sequence[int], out: str, out_shape: Sequence[int]
) -> onnx.ModelProto:
    """A batch-1 float graph of `nodes` from the input "input" (C, H, W) to `out`."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "edgenas_lut",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, *out_shape])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)


def identity_model(in_shape: Sequence[int]) -> onnx.ModelProto:
    """A graph that only passes its input through: the fixed cost of one `session.run`."""
    from onnx import helper

    return onnx_model([helper.make_node("Identity", ["input"], ["output"])], [], in_shape, "output", in_shape)
