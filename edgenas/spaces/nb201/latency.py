"""LUT kernels of the NB201 space: the per-op graphs a latency table times, and how they add up.

A network is costed by the kernels onnxruntime runs for it, as nn-Meter does (Zhang et al.,
MobiSys 2021): `stage_kernels` replays onnxruntime's sharing and folding on the cells, each
kernel is priced at its table entry for the stage's (C, H, W), and the frame (stem,
reductions, head) is timed whole. Which adds and ReLUs fold into convs depends on the CPU
(onnxruntime's blocked NCHWc layout on x86, its block size, the channel count), so the
profile reads it off onnxruntime's optimised graphs and records it (`fusion_record`).
What was tried and measured: docs/methods/lut.md.
"""

from __future__ import annotations

import functools
import itertools
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas.core.errors import ArchError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.lut.table import LatencyTable, ProfileSpec, profile_here
from edgenas.cost.lut.timing import (
    CHAIN_EXTRA,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    NCHWC_DOMAIN,
    check_settings,
    checked_profile_input,
    identity_model,
    onnx_model,
    optimized_graph,
)
from edgenas.spaces.nb201.arch import EDGES, OPS, NB201Arch

if TYPE_CHECKING:
    import onnx
    from torch import nn

# Cell-level entries, the kernels onnxruntime runs for a cell (see `stage_kernels`): the
# convs (BN folded; the ReLU before them is a kernel of its own), the pool, a plain ReLU,
# a plain add, an add folded into the conv that produces one of its inputs (accumulating
# in place into the other input's buffer, or into a copy of it when that input is still
# needed later), and a ReLU folded into the conv before it.
CELL_KERNELS = (
    "conv_1x1",
    "conv_3x3",
    "avg_pool_3x3",
    "relu",
    "add",
    "fused_add",
    "fused_add_copy",
    "fused_relu",
)
# Chains timed per stage shape (see `chain_model`); the fused kernels are conv_1x1 chains
# with the add / ReLU, less the plain conv_1x1 chain (twice for `conv_1x1x2+add`).
CHAINS = (
    "conv_1x1",
    "conv_3x3",
    "avg_pool_3x3",
    "relu",
    "add",
    "conv_1x1x2+add",
    "conv_1x1+add",
    "conv_1x1+relu",
)
FUSED_CHAINS = {
    "fused_add": ("conv_1x1x2+add", 2),
    "fused_add_copy": ("conv_1x1+add", 1),
    "fused_relu": ("conv_1x1+relu", 1),
}
# the identity cell: the network it builds is the frame alone (stem, reductions, head)
REFERENCE = NB201Arch(("none", "none", "none", "skip_connect", "none", "none"))
SUMMARY_COLUMNS = (
    "width",
    "stage",
    "C x H x W",
    "conv 1x1 µs",
    "conv 3x3 µs",
    "avg pool µs",
    "relu µs",
    "add µs",
    "conv+add copy µs",
    "frame µs",
)


# --------------------------------------------------------------------------- shapes and keys
def stage_shapes(shape: NetShape) -> list[tuple[int, int, int]]:
    """(C, H, W) of the cells of each of the 3 stages (widths C, 2C, 4C; each reduction halves H, W, rounding up)."""
    c, h = shape.width, shape.resolution
    out = []
    for mult in (1, 2, 4):
        out.append((c * mult, h, h))
        h = (h + 1) // 2
    return out


def dims(c: int, h: int, w: int) -> str:
    """`CxHxW`, as keys write a shape."""
    return f"{c}x{h}x{w}"


def cell_key(kernel: str, c: int, h: int, w: int) -> str:
    """Entry name of a cell-level kernel at (C, H, W), e.g. `conv_3x3:16x28x28`."""
    return f"{kernel}:{dims(c, h, w)}"


def frame_keys(shape: NetShape) -> dict[str, str]:
    """Entry names of the stem, the two reductions and the head of `shape`'s network."""
    (c0, h0, w0), (c1, h1, w1), (c2, h2, w2) = stage_shapes(shape)
    return {
        "stem": f"stem:{dims(shape.in_channels, h0, w0)}->{dims(c0, h0, w0)}",
        "reduce1": f"reduce:{dims(c0, h0, w0)}->{dims(c1, h1, w1)}",
        "reduce2": f"reduce:{dims(c1, h1, w1)}->{dims(c2, h2, w2)}",
        "head": f"head:{dims(c2, h2, w2)}->{shape.num_classes}",
    }


def required_keys(shape: NetShape) -> list[str]:
    """Every entry `predict_ms` reads for networks of `shape`."""
    keys = list(frame_keys(shape).values())
    for c, h, w in stage_shapes(shape):
        keys += [cell_key(k, c, h, w) for k in CELL_KERNELS]
    return keys


# --------------------------------------------------------------------------- the fusion record
# What onnxruntime fuses depends on where a value lives: its x86 NCHWc transformer runs
# convs and pools in a blocked layout depending on the channel count and the CPU's block
# (8 with AVX2, 16 with AVX-512; e.g. with AVX-512 at 8 channels convs are blocked, pools
# not), and folds an add into a conv only when both inputs are blocked. Without NCHWc
# ReLUs still fold into convs, adds do not (onnxruntime's generic conv+add fusion needs a
# conv bias, which the exported networks' convs, BN folded at zero shift, lack).
# The record holds, per stage shape, the layout of the cells' convs and pools, and per
# frame block what produces the next stage's input, all read off onnxruntime's graphs:
#   "conv:16x8x8": "nchwc"            "avg_pool_3x3:8x8x8": "nchw"
#   "stem:1x8x8->8x8x8": "nchwc conv"  "reduce:8x8x8->16x4x4": "nchwc conv+add"
LAYOUTS = ("nchwc", "nchw")
PRODUCERS = ("conv", "conv+add", "other")  # a conv; a conv with an add folded in; anything else
_INPUT_BLOCKS = ("stem", "reduce1", "reduce2")  # the frame block before each stage


@dataclass(frozen=True)
class StageFusion:
    """How onnxruntime treats one stage's cells: the layouts its kernels run in and what feeds the stage."""

    conv_blocked: bool = True  # convs run in the blocked NCHWc layout
    pool_blocked: bool = True  # so do the 3x3 average pools
    input: str = "conv+add"  # what produces the stage input (one of PRODUCERS)
    input_blocked: bool = True  # ... and whether it is blocked


# Tables made before the record (schema 1) were made and checked on x86 NCHWc throughout:
# stage 0 reads the stem conv, later stages a reduction's conv with its add folded in.
ASSUMED_FUSION = (StageFusion(input="conv"), StageFusion(), StageFusion())


def fusion_keys(shape: NetShape) -> list[str]:
    """Every fusion-record key `predict_ms` reads for networks of `shape`."""
    frame = frame_keys(shape)
    keys = [frame[b] for b in _INPUT_BLOCKS]
    for c, h, w in stage_shapes(shape):
        keys += [cell_key("conv", c, h, w), cell_key("avg_pool_3x3", c, h, w)]
    return keys


def check_fusion(fusion: Mapping[str, str]) -> None:
    """Raise `ValueError` naming the first record value that is not a layout or a `layout producer`."""
    for key, value in fusion.items():
        if key.startswith(("conv:", "avg_pool_3x3:")):
            ok = value in LAYOUTS
        else:
            layout, _, producer = value.partition(" ")
            ok = layout in LAYOUTS and producer in PRODUCERS
        if not ok:
            raise ValueError(f"fusion {key!r} is {value!r}")


def stage_fusion(fusion: Mapping[str, str], shape: NetShape) -> tuple[StageFusion, ...]:
    """The 3 stages' `StageFusion` from a table's record (`ASSUMED_FUSION` if it has none)."""
    if not fusion:
        return ASSUMED_FUSION
    frame = frame_keys(shape)
    out = []
    for block, (c, h, w) in zip(_INPUT_BLOCKS, stage_shapes(shape), strict=True):
        layout, _, producer = fusion[frame[block]].partition(" ")
        out.append(
            StageFusion(
                conv_blocked=fusion[cell_key("conv", c, h, w)] == "nchwc",
                pool_blocked=fusion[cell_key("avg_pool_3x3", c, h, w)] == "nchwc",
                input=producer,
                input_blocked=layout == "nchwc",
            )
        )
    return tuple(out)


def _layout(graph: onnx.GraphProto, op_type: str) -> str:
    """`nchwc` when onnxruntime runs the graph's `op_type` nodes in the blocked layout, else `nchw`."""
    return "nchwc" if any(n.op_type == op_type and n.domain == NCHWC_DOMAIN for n in graph.node) else "nchw"


def _output_producer(graph: onnx.GraphProto) -> str:
    """`layout producer` of the node that computes the graph's output (past layout conversions)."""
    by_output = {o: n for n in graph.node for o in n.output}
    node = by_output[graph.output[0].name]
    while node.op_type == "ReorderOutput" and node.input[0] in by_output:
        node = by_output[node.input[0]]
    layout = "nchwc" if node.domain == NCHWC_DOMAIN else "nchw"
    producer = "other"
    if node.op_type in ("Conv", "FusedConv") and not any(a.name == "activation" for a in node.attribute):
        producer = "conv+add" if len(node.input) > 3 and node.input[3] else "conv"
    return f"{layout} {producer}"


def fusion_record(shape: NetShape, optimized: Callable[[str], onnx.GraphProto]) -> dict[str, str]:
    """The record `fusion_keys(shape)` from onnxruntime's optimised graphs, as `profile_nb201` names them.

    `optimized(name)` returns the optimised graph of `chain_model(kernel, c, h, w, 1)` for
    `name` = `"conv_1x1:CxHxW#1"` or `"avg_pool_3x3:CxHxW#1"`, and of frame prefix `i`
    (`frame_modules`) for `"frame{i}@{width}"`.
    """
    record: dict[str, str] = {}
    frame = frame_keys(shape)
    for i, (block, (c, h, w)) in enumerate(zip(_INPUT_BLOCKS, stage_shapes(shape), strict=True)):
        record[cell_key("conv", c, h, w)] = _layout(optimized(f"conv_1x1:{dims(c, h, w)}#1"), "Conv")
        record[cell_key("avg_pool_3x3", c, h, w)] = _layout(optimized(f"avg_pool_3x3:{dims(c, h, w)}#1"), "AveragePool")
        record[frame[block]] = _output_producer(optimized(f"frame{i}@{shape.width}"))
    return record


def measure_fusion(
    shape: NetShape, *, workdir: str | Path | None = None, disabled_optimizers: Sequence[str] = ()
) -> dict[str, str]:
    """`fusion_record` of this machine for `shape`, building the graphs it reads (a profile reuses its own)."""
    import onnx

    from edgenas.export.onnx import export_onnx

    frames = frame_modules(shape)
    numbers = itertools.count()
    with tempfile.TemporaryDirectory(prefix="edgenas-fusion-", dir=workdir) as tmp:

        def optimized(name: str) -> onnx.GraphProto:
            path = Path(tmp) / f"g{next(numbers)}.onnx"
            if name.startswith("frame"):
                export_onnx(frames[int(name[5])], shape.input_shape, path, dynamic_batch=False)
            else:
                chain, _, rest = name.partition(":")
                c, h, w = map(int, rest.removesuffix("#1").split("x"))
                onnx.save(chain_model(chain, c, h, w, 1), str(path))
            return optimized_graph(path, disabled_optimizers=disabled_optimizers)

        return fusion_record(shape, optimized)


# --------------------------------------------------------------------------- kernels of a stage
@functools.lru_cache(maxsize=1 << 16)
def stage_kernels(ops: tuple[str, ...], cells: int, stage: int, fusion: StageFusion | None = None) -> tuple[int, ...]:
    """How many of each `CELL_KERNELS` kernel onnxruntime runs for the `cells` cells of one stage.

    `fusion` says how onnxruntime treats the stage on the table's machine (default: the
    x86 NCHWc assumption of tables without a record, `ASSUMED_FUSION[stage]`).
    The cells are laid out as the exporter writes them: only live edges; a conv edge is
    ReLU(node) -> Conv (BN folded); a pool edge AveragePool(node); skip_connect is the
    node itself; the inputs of a node are summed by Adds in edge order; a cell with no
    live edge outputs `x * 0` (counted as one `add`). Then onnxruntime's graph
    optimisations (level "all") are applied, in graph order:
    - common subexpressions are computed once: the ReLU of a node read by several conv
      edges, the pools of one node, an Add that two nodes both start with;
    - an Add whose inputs are both blocked (NCHWc), one of them (the first tried first) a
      blocked conv's output used only by that Add, the conv not yet having an add or
      activation folded in, becomes part of the conv, which accumulates into the other
      input's buffer (`fused_add`) or, when that input is read again later (in graph
      order, or by the next block), into a copy of it (`fused_add_copy`); else the Add is
      a plain `add` (blocked when both inputs are);
    - a ReLU whose input is a conv output used only by it, the conv not yet having an
      activation, becomes the conv's activation (`fused_relu`, in either layout); else a
      plain `relu` (in its input's layout).
    The stage's input is what `fusion.input` says: the stem conv, a reduction block's
    conv with the block's Add folded in, or another op; its output is read twice by the
    next reduction block (ReLU and pool) or once by the head. This matches onnxruntime's
    optimised graphs kernel for kernel (onnxruntime 1.32, blocked, partly blocked and
    plain stages; tests/test_cost_lut.py checks it on the CPU that runs them); one effect
    is left out: when the last node of the last cell is a single conv, onnxruntime also
    folds the head's BN into it, saving about a microsecond.
    """
    fusion = ASSUMED_FUSION[stage] if fusion is None else fusion
    live = NB201Arch(tuple(ops)).live_edges()
    nodes: list[tuple[str, tuple[int, ...], int]] = []  # (kind, inputs, output), values are ints
    shared: dict[tuple[str, tuple[int, ...]], int] = {}

    def emit(kind: str, inputs: tuple[int, ...], cse: bool = True) -> int:
        key = (kind, inputs)
        if cse and key in shared:
            return shared[key]
        out = len(nodes) + 1  # value 0 is the stage input
        nodes.append((kind, inputs, out))
        if cse:
            shared[key] = out
        return out

    x = 0
    for _ in range(cells):
        value: list[int | None] = [x, None, None, None]
        for k in live:
            (to, frm), op = EDGES[k], ops[k]
            src = value[frm]
            assert src is not None  # live edges leave reachable nodes
            if op == "skip_connect":
                out = src
            elif op == "avg_pool_3x3":
                out = emit("avg_pool_3x3", (src,))
            else:  # convs have their own weights: never shared
                out = emit("conv_1x1" if op == "nor_conv_1x1" else "conv_3x3", (emit("relu", (src,)),), cse=False)
            value[to] = out if value[to] is None else emit("add", (value[to], out))
        x = value[3] if value[3] is not None else emit("mul0", (x,))
    uses = dict.fromkeys(range(len(nodes) + 1), 0)
    for _kind, inputs, _out in nodes:
        for v in inputs:
            uses[v] += 1
    uses[x] += 1 if stage == 2 else 2
    last_use = {x: len(nodes)}  # the stage output is read after every node of the stage
    for i, (_kind, inputs, _out) in enumerate(nodes):
        for v in inputs:
            last_use[v] = max(last_use.get(v, i), i)
    # value -> [has_add, has_activation] of the conv that produces it (None: not a conv)
    conv: dict[int, list[bool] | None] = {0: None}
    if fusion.input != "other":
        conv[0] = [fusion.input == "conv+add", False]
    blocked = {0: fusion.input_blocked}  # value -> in the NCHWc layout
    counts = dict.fromkeys(CELL_KERNELS, 0)
    for i, (kind, inputs, out) in enumerate(nodes):
        if kind in ("conv_1x1", "conv_3x3"):
            counts[kind] += 1
            conv[out] = [False, False]
            blocked[out] = fusion.conv_blocked
        elif kind == "add":
            both = all(blocked[v] for v in inputs)
            target = None
            if both:  # only the NCHWc transformer folds adds, and only between blocked values
                target = next(
                    (v for v in inputs if uses[v] == 1 and conv.get(v) is not None and not any(conv[v])), None
                )
            if target is None:
                counts["add"] += 1
                conv[out] = None
            else:
                other = inputs[1] if target == inputs[0] else inputs[0]
                counts["fused_add" if last_use[other] == i and other != target else "fused_add_copy"] += 1
                conv[target][0] = True
                conv[out] = conv[target]
            blocked[out] = both
        elif kind == "relu":
            producer = conv.get(inputs[0])
            if uses[inputs[0]] == 1 and producer is not None and not producer[1]:
                counts["fused_relu"] += 1
                producer[1] = True
            else:
                counts["relu"] += 1
            conv[out] = None
            blocked[out] = blocked[inputs[0]]
        elif kind == "avg_pool_3x3":
            counts[kind] += 1
            conv[out] = None
            blocked[out] = fusion.pool_blocked
        else:  # mul0 (x * 0, a constant operand: never blocked) is an elementwise op like an add
            counts["add"] += 1
            conv[out] = None
            blocked[out] = False
    return tuple(counts[k] for k in CELL_KERNELS)


def _none_free_cells() -> list[tuple[str, ...]]:
    return list(itertools.product(OPS[1:], repeat=len(EDGES)))


@functools.cache
def _none_free_features() -> np.ndarray:
    """Per cell without a `none` edge: how many edges carry each op of `OPS[1:]`."""
    return np.array([[ops.count(op) for op in OPS[1:]] for ops in _none_free_cells()], dtype=np.float64)


@functools.cache
def _none_free_kernel_counts(cells: int, stage: int, fusion: StageFusion) -> np.ndarray:
    """`stage_kernels` of every cell without a `none` edge (rows as in `_none_free_features`)."""
    return np.array([stage_kernels(ops, cells, stage, fusion) for ops in _none_free_cells()], dtype=np.float64)


# --------------------------------------------------------------------------- predictions
def _as_nb201(arch: Any) -> NB201Arch:
    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Arch.parse(arch)
    raise ArchError(f"a latency table predicts NB201 architectures, not {type(arch).__name__}")


def frame_ms(table: LatencyTable, shape: NetShape) -> float:
    """Overhead, stem, reductions and head: what every network of `shape` costs."""
    return table.overhead_ms + sum(table.entries[k] for k in frame_keys(shape).values())


def predict_ms(table: LatencyTable, arch: Any, shape: NetShape) -> float:
    """Predicted batch-1 latency (ms) of `NB201Network(arch, shape)` on the table's device.

    `overhead + stem + reduction 1 + reduction 2 + head + the cells of the 3 stages`,
    where the `shape.cells` cells of a stage cost the kernels onnxruntime runs for them
    (`stage_kernels`: the conv, pool, ReLU and add kernels of the live edges, after
    onnxruntime shares identical ReLUs/pools/adds and folds adds and ReLUs into convs as
    the table's fusion record says), each at its entry for the stage's (C, H, W).
    skip_connect and none cost nothing themselves; joining k live edges at a node costs
    k - 1 adds (plain or folded); a cell with no live edge outputs `x * 0`, costed as one
    add. The table must cover `shape` (`LatencyTable.predict_ms` checks).
    """
    arch = _as_nb201(arch)
    fusions = stage_fusion(table.fusion, shape)

    def stage_ms(s: int, c: int, h: int, w: int) -> float:
        counts = stage_kernels(arch.ops, shape.cells, s, fusions[s])
        return sum(n * table.entries[cell_key(k, c, h, w)] for k, n in zip(CELL_KERNELS, counts, strict=True) if n)

    return frame_ms(table, shape) + sum(stage_ms(s, *d) for s, d in enumerate(stage_shapes(shape)))


def edge_terms(table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
    """Per-edge latency terms for a differentiable expected latency: `(fixed_ms, terms)`.

    `terms[s, j]` (shape `(3, len(OPS))`, columns in `OPS` order, `none` = 0) is the
    cost of one edge carrying `OPS[j]` in one cell of stage `s`, such that for an arch
        fixed_ms + shape.cells * sum_s sum_edges terms[s, op_index(edge)]
    approximates `predict_ms`; with softmax weights over each edge's ops in place of
    the one-hot choice it is the expected latency of a mixed-op supernet (FBNet).
    `fixed_ms` is the frame: overhead, stem, reductions and head.

    `predict_ms` is not additive over edges (adds depend on how many edges meet at a node,
    ReLUs, pools and adds of a node are shared, folding depends on the neighbours, dead
    edges cost nothing), so the terms are the least-squares fit, per stage, of
    `stage cost / cells = sum of the 6 edges' terms` over the 4**6 cells without a `none`
    edge; each edge carries its share of the adds and ReLUs. For cells with `none` edges
    the fit drops each `none` edge's share but still counts dead edges that are not
    `none`, so it over-estimates such cells (docs/methods/lut.md has the measured error).
    """
    features = _none_free_features()
    terms = np.zeros((3, len(OPS)), dtype=np.float64)
    fusions = stage_fusion(table.fusion, shape)
    for s, (c, h, w) in enumerate(stage_shapes(shape)):
        costs = np.array([table.entries[cell_key(k, c, h, w)] for k in CELL_KERNELS])
        y = _none_free_kernel_counts(shape.cells, s, fusions[s]) @ costs / shape.cells
        terms[s, 1:], *_ = np.linalg.lstsq(features, y, rcond=None)
    return frame_ms(table, shape), terms


def position_terms(table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
    """`edge_terms` over the choice points: an op costs the same on every edge, summed over the
    stages and times the cells per stage, so `(fixed_ms, (edges, ops))`."""
    fixed, per_stage = edge_terms(table, shape)
    return fixed, np.tile(shape.cells * np.asarray(per_stage).sum(axis=0), (len(EDGES), 1))


# --------------------------------------------------------------------------- graphs
def chain_model(
    chain: str, c: int, h: int, w: int, copies: int, seed: int = 0, *, between_convs: bool = False
) -> onnx.ModelProto:
    """A graph of `copies` copies of one cell-level kernel (a `CHAINS` name) at (C, H, W), each feeding the next.

    The nodes are those the exporter writes for the NB201 ops: Conv (its BN folded into
    weights and bias; distinct weights per copy), Relu, AveragePool (3x3, stride 1, pad 1,
    count_include_pad=0) and Add (the running value plus the chain's input: two tensors
    read, as at a node of a cell). onnxruntime folds the add / ReLU of the other chains
    into a conv where the CPU allows: `conv_1x1+relu` is ReLU(conv(x)); `conv_1x1+add` is
    conv(x) + x, whose sum goes into a copy of x (x is the conv's input too);
    `conv_1x1x2+add` is conv_a(x) + conv_b(x), accumulated in place into conv_b's output.
    `between_convs`: the chain sits between two 1x1 convs of its own (a constant that the
    slope drops), as ops sit between convs in a network; quantized, onnxruntime then runs
    the chain in the NHWC layout of its integer convs, as in a quantized network.
    """
    from onnx import helper, numpy_helper

    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r}")
    kernel, _, extra = chain.partition("+")
    twice = kernel.endswith("x2")
    kernel = kernel.removesuffix("x2")
    rng = numpy_rng(seed, "lut-weights", chain, c, h, w)
    nodes, inits = [], []

    def conv(src: str, dst: str, k: int, weight: str, bias: str, gen: np.random.Generator = rng) -> None:
        values = (gen.standard_normal((c, c, k, k)) / math.sqrt(c * k * k)).astype(np.float32)
        inits.extend([numpy_helper.from_array(values, weight), numpy_helper.from_array(np.zeros(c, np.float32), bias)])
        nodes.append(helper.make_node("Conv", [src, weight, bias], [dst], kernel_shape=[k, k], pads=[k // 2] * 4))

    wrap = numpy_rng(seed, "lut-wrap", c, h, w)
    source = x = "input"
    if between_convs:
        conv("input", "lead", 1, "w_lead", "b_lead", wrap)
        source = x = "lead"
    for i in range(copies):
        y = f"y{i}"
        out = f"k{i}" if extra else y
        if kernel in ("conv_1x1", "conv_3x3"):
            conv(x, out, 1 if kernel == "conv_1x1" else 3, f"w{i}", f"b{i}")
        elif kernel == "avg_pool_3x3":
            nodes.append(
                helper.make_node(
                    "AveragePool", [x], [out], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4, count_include_pad=0
                )
            )
        elif kernel == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        else:  # add
            nodes.append(helper.make_node("Add", [x, source], [out]))
        if twice:
            conv(x, f"m{i}", 1, f"v{i}", f"d{i}")
            nodes.append(helper.make_node("Add", [out, f"m{i}"], [y]))
        elif extra == "add":
            nodes.append(helper.make_node("Add", [out, x], [y]))
        elif extra == "relu":
            nodes.append(helper.make_node("Relu", [out], [y]))
        x = y
    if between_convs:
        conv(x, "trail", 1, "w_trail", "b_trail", wrap)
        x = "trail"
    return onnx_model(nodes, inits, (c, h, w), x, (c, h, w))


def frame_modules(shape: NetShape) -> list[nn.Module]:
    """Growing prefixes of an identity-cell `NB201Network`: stem; + reduction 1; + reduction 2; + head."""
    import torch
    from torch import nn

    from edgenas.spaces.nb201.network import NB201Network, ResNetBasicBlock

    net = NB201Network(REFERENCE, NetShape(shape.width, 1, shape.in_channels, shape.resolution, shape.num_classes))
    reductions = [b for b in net.blocks if isinstance(b, ResNetBasicBlock)]

    class Prefix(nn.Module):
        def __init__(self, upto: int) -> None:
            super().__init__()
            self.stem = net.stem
            self.reductions = nn.ModuleList(reductions[: min(upto, 2)])
            self.head = nn.Sequential(net.lastact, net.pool, nn.Flatten(1), net.classifier) if upto == 3 else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            for block in self.reductions:
                h = block(h)
            return h if self.head is None else self.head(h)

    return [Prefix(i).eval() for i in range(4)]


# --------------------------------------------------------------------------- profiling
def profile_spec(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    precision: str = "fp32",
    **_: Any,
) -> ProfileSpec:
    """The checked `ProfileSpec` of a profile of NB201 networks of these widths at this input (any cells)."""
    widths, _ = checked_profile_input(resolution, in_channels, num_classes, widths, example="--widths 8,16,32")
    return ProfileSpec("nb201", resolution, in_channels, num_classes, tuple(widths), precision=precision)


def profile_graphs(spec: ProfileSpec, folder: Path, *, bar: Any = None) -> dict[str, Path]:
    """Every graph a profile times, written to `folder`: the run overhead (an Identity graph), the
    cell kernels as chains of 1 and `1 + CHAIN_EXTRA` copies at every stage shape (`chain_model`;
    for an INT8 spec between two convs, so that quantized they run in the layout of a quantized
    network), and the frame as growing prefixes of the identity-cell network per width (`frame_modules`)."""
    import onnx

    from edgenas.export.onnx import export_onnx

    shapes = spec.shapes()
    files: dict[str, Path] = {}

    def add(gname: str, model: onnx.ModelProto) -> None:
        files[gname] = folder / f"g{len(files)}.onnx"
        onnx.save(model, str(files[gname]))

    add("overhead", identity_model(shapes[0].input_shape))
    for c, h, w in sorted({d for shape in shapes for d in stage_shapes(shape)}):
        for chain in CHAINS:
            for copies in (1, 1 + CHAIN_EXTRA):
                model = chain_model(chain, c, h, w, copies, between_convs=spec.precision == "int8")
                add(f"{chain}:{dims(c, h, w)}#{copies}", model)
    task = bar.add_task("export frame", total=4 * len(shapes), status="") if bar is not None else None
    for shape in shapes:
        for i, module in enumerate(frame_modules(shape)):
            if task is not None:
                bar.update(task, status=f"width {shape.width}, prefix {i + 1}/4")
            path = folder / f"w{shape.width}_p{i}.onnx"
            files[f"frame{i}@{shape.width}"] = export_onnx(module, shape.input_shape, path, dynamic_batch=False)
            if task is not None:
                bar.advance(task)
    return files


def profile_fusion(spec: ProfileSpec, optimized: Callable[[str], onnx.GraphProto]) -> dict[str, str]:
    """`fusion_record` of every width, from the optimised graphs of `profile_graphs`' files."""
    fusion: dict[str, str] = {}
    for shape in spec.shapes():
        fusion.update(fusion_record(shape, optimized))
    return fusion


def profile_entries(spec: ProfileSpec, ms: Mapping[str, float], fusion: Mapping[str, str]) -> dict[str, float]:
    """Entries from the timed graphs: cell kernels as chain slopes (folded kernels as the slope of
    their chain less the plain convs'), frame blocks as differences of consecutive prefixes."""
    overhead = ms["overhead"]
    entries: dict[str, float] = {}
    for c, h, w in sorted({d for shape in spec.shapes() for d in stage_shapes(shape)}):
        d = dims(c, h, w)
        slope = {chain: (ms[f"{chain}:{d}#{1 + CHAIN_EXTRA}"] - ms[f"{chain}:{d}#1"]) / CHAIN_EXTRA for chain in CHAINS}
        for kernel in CELL_KERNELS:
            if kernel in FUSED_CHAINS:
                chain, convs = FUSED_CHAINS[kernel]
                entries[cell_key(kernel, c, h, w)] = slope[chain] - convs * slope["conv_1x1"]
            else:
                entries[cell_key(kernel, c, h, w)] = slope[kernel]
    for shape in spec.shapes():
        keys = frame_keys(shape)
        prefix = [ms[f"frame{i}@{shape.width}"] for i in range(4)]
        entries[keys["stem"]] = prefix[0] - overhead
        entries[keys["reduce1"]] = prefix[1] - prefix[0]
        entries[keys["reduce2"]] = prefix[2] - prefix[1]
        entries[keys["head"]] = prefix[3] - prefix[2]
    return entries


def profile_nb201(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    precision: str = "fp32",
    quiet: bool = False,
    name: str = "",
    workdir: str | Path | None = None,
) -> LatencyTable:
    """Time every op of NB201 networks of these widths at this input on this machine, and record its fusions.

    The graphs are `profile_graphs`' (cell kernels as chains, the frame as growing
    prefixes of the identity-cell network, the run overhead as an Identity graph), timed
    interleaved (`profile_here`); `profile_entries` turns the timings into entries and
    `fusion_record` reads onnxruntime's optimised graphs of the same files. A profiling kit
    (`edgenas profile-device --kit`) carries the same graphs to the device. Takes about 5 s
    per width for the frame exports plus the timing (`repeats` runs of ~35 graphs per width).
    `precision="int8"` quantizes every graph first (`quantize_graphs`): a table of INT8 kernels.
    """
    check_settings(threads, warmup, repeats)
    spec = profile_spec(
        resolution, in_channels=in_channels, num_classes=num_classes, widths=widths, precision=precision
    )
    return profile_here(spec, threads=threads, warmup=warmup, repeats=repeats, quiet=quiet, name=name, workdir=workdir)


profile = profile_nb201  # the `LatencyKernels` name


# --------------------------------------------------------------------------- checking and summary
def check_archs(n: int, seed: int) -> list[NB201Arch]:
    """`n` random distinct connected cells (a cell with no path from input to output computes nothing)."""
    from edgenas.spaces.nb201 import NB201Space

    return NB201Space().sample_distinct(n, numpy_rng(seed, "lut-check"), accept=lambda a: a.is_connected)  # type: ignore[return-value]


def summary_rows(table: LatencyTable) -> list[tuple[object, ...]]:
    """Rows for a console summary: per width and stage, the main entries in microseconds."""
    rows: list[tuple[object, ...]] = []
    for width in table.widths:
        shape = NetShape(width, 1, table.in_channels, table.resolution, table.num_classes)
        frame = frame_keys(shape)
        for s, (c, h, w) in enumerate(stage_shapes(shape)):
            us = [f"{table.entries[cell_key(k, c, h, w)] * 1e3:.1f}" for k in ("conv_1x1", "conv_3x3", "avg_pool_3x3")]
            us += [f"{table.entries[cell_key(k, c, h, w)] * 1e3:.1f}" for k in ("relu", "add", "fused_add_copy")]
            block = _INPUT_BLOCKS[s]
            rows.append((width, s + 1, dims(c, h, w), *us, f"{block} {table.entries[frame[block]] * 1e3:.1f}"))
        rows.append((width, "", "", "", "", "", "", "", "", f"head {table.entries[frame['head']] * 1e3:.1f}"))
    return rows
