"""Timing for latency tables: onnxruntime sessions, interleaved block timing, small ONNX graphs.

Every graph of a table (and every network `check_table` measures) is timed by
`time_interleaved` (it lives in `runner`, which the profiling kit carries to the device):
graphs take turns block by block so that the slow spells of a shared machine hit all of
them alike, and the figure kept is the lowest block median. Per-op graphs are timed as
chains of 1 and `1 + CHAIN_EXTRA` copies of the op; the slope is the op's marginal cost
inside a graph (see docs/methods/lut.md). `optimized_graph` returns the
graph onnxruntime actually runs, from which a table records what it fuses. For an INT8
table `quantize_graphs` quantizes the graphs as `edgenas export --int8` quantizes networks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgenas.core.errors import ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.cost.lut.runner import BLOCK, Feed, processor, round_count, time_interleaved  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    import onnx

CHAIN_EXTRA = 4  # a chain of 1 and of 1 + CHAIN_EXTRA copies; the slope is the entry
DEFAULT_WARMUP = 20
DEFAULT_REPEATS = 1000
OPSET = 18
STATISTIC = f"lowest median of blocks of {BLOCK} runs, graphs interleaved block by block"
NCHWC_DOMAIN = "com.microsoft.nchwc"  # onnxruntime's blocked-layout (x86) kernels


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


def checked_profile_input(
    resolution: int,
    in_channels: int,
    num_classes: int,
    widths: Sequence[int],
    *,
    example: str,
    cells: Sequence[int] | None = None,
) -> tuple[list[int], list[int] | None]:
    """The sorted distinct widths (and cell counts, for spaces whose frame depends on them) of a
    profile, its input checked; a `ConfigError` names the bad value, `example` the flags to give."""
    widths = sorted({int(w) for w in widths})
    counts = sorted({int(n) for n in cells}) if cells is not None else None
    for label, value, low in (
        ("resolution", resolution, 4),
        ("in_channels", in_channels, 1),
        ("classes", num_classes, 1),
        *(("width", w, 1) for w in widths),
        *(("cells", n, 1) for n in counts or ()),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"profile-device: {label} must be an int >= {low}, got {value!r}")
    if not widths or counts == []:
        what = "one width and one cell count" if counts is not None else "one width"
        raise ConfigError(f"profile-device: give at least {what} ({example})")
    return widths, counts


def check_settings(threads: int, warmup: int, repeats: int) -> None:
    """The timing protocol's checks (`ConfigError` naming the bad setting)."""
    from edgenas.cost.latency import _check_protocol

    _check_protocol(threads, warmup, repeats)


def quantize_graphs(files: dict[str, Path], *, bar: Any = None) -> dict[str, Path]:
    """Every graph of `files` (name -> float32 ONNX file) replaced in place by its INT8 version.

    `edgenas.export.quantize.quantize_onnx` (static QDQ, per-channel int8 weights, uint8
    activations, MinMax) calibrated on seeded random inputs (ranges do not change which
    kernels run), with `quantize_inputs` so that an op whose input is the graph's float input
    (a pool chain) runs the integer kernel it runs between quantized ops in a network.
    """
    from edgenas.export.onnx import onnx_session
    from edgenas.export.quantize import quantize_onnx, random_calibration

    task = bar.add_task("quantize ops", total=len(files), status="int8") if bar is not None else None
    for name, path in files.items():
        sess = onnx_session(path)
        shape = tuple(d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape[1:])
        calibration = random_calibration(shape, 8, 0, name)
        quantize_onnx(path, path, calibration, quantize_inputs=True)
        if task is not None:
            bar.advance(task)
    return files


def quantize_network(path: Path, input_shape: Sequence[int], *tags: object) -> Path:
    """The whole-network ONNX file at `path` replaced by its INT8 version, quantized exactly as
    `edgenas export --int8` quantizes (calibrated on seeded random inputs, `tags` seed them)."""
    from edgenas.export.quantize import quantize_onnx, random_calibration

    return quantize_onnx(path, path, random_calibration(tuple(input_shape), 8, 0, *tags))


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
