"""LUT kernels of the DARTS space: the graphs a latency table times for it, and how they add up.

A DARTS network (`DartsNetwork`) is costed, as NB201's is (`edgenas.spaces.nb201.latency`,
after nn-Meter: Zhang et al., MobiSys 2021), by the kernels onnxruntime runs for it: each op
of a genotype at its position (op, width, side, stride) is priced at its table entry, and
`cell_kernels` replays what onnxruntime shares and folds in a cell (one ReLU per input
state, pools of one state computed once, adds folded into the conv before them, a ReLU
folded into the preprocessing conv), pricing those kernels too. What every genotype shares
(stem, each cell's preprocessing and concatenation, global pool and classifier) is timed
whole on the cheapest genotype's network, prefix by prefix. Which values run in the
blocked NCHWc layout (and so which adds can fold) is read off onnxruntime's optimised
graphs and recorded. In an INT8 table a pool of a value onnxruntime leaves in NCHW (from a
factorized reduction) has entries of its own (`int8_pool_layouts`). What was tried and
measured: docs/methods/lut.md.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
from edgenas.spaces.darts.arch import CELL_TYPES, EDGES, INPUTS_PER_NODE, NODES, OPS, REAL_OPS, DartsArch
from edgenas.spaces.darts.network import STEM_MULTIPLIER, CellSpec, cell_layout

if TYPE_CHECKING:
    import onnx

POOLS = ("max_pool_3x3", "avg_pool_3x3")
CONVS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
# The op bodies: an op less the ReLU it starts with (that ReLU is one per input state, see
# `cell_kernels`). Timed at stride 1 on every cell shape and at stride 2 on every reduction
# cell's input; skip_connect has a body at stride 2 only (the factorized reduction's convs,
# concatenation and BN; its input shift is `fr_input`, one per state).
BODIES = (*POOLS, *CONVS)
# Kernels around the ops at a node shape: a plain ReLU, a ReLU folded into the conv before it,
# a plain add, an add folded into a conv accumulating in place or into a copy of its other
# input (as in NB201's tables). At a reduction input: the ReLUs, and the factorized
# reduction's shifted-input slicing (`fr_input/s2`, with its layout conversions).
NODE_KERNELS = ("relu", "fused_relu", "add", "fused_add", "fused_add_copy")
# Chains timed at each cell shape, as in NB201 (`chain_model`): the bodies, plus the graphs
# the node kernels are read from (`conv_1x1x2+add` less two 1x1 convs is `fused_add` ...).
NODE_CHAINS = (*BODIES, "relu", "add", "conv_1x1", "conv_1x1x2+add", "conv_1x1+add", "conv_1x1+relu")
INPUT_CHAINS = ("relu", "add", "conv_1x1", "conv_1x1+relu")
# INT8 only: the stride-1 pools as onnxruntime runs them on an NCHW value (`int8_pool_layouts`),
# `max_pool_3x3_nchw:16x28x28`, timed as fan-outs on distinct inputs (`nchw_pool_model`).
NCHW = "_nchw"
NCHW_POOLS = tuple(f"{p}{NCHW}" for p in POOLS)
# Fan-outs timed at each reduction input (`fanout_model`): copies of a stride-2 body on one
# input ("same"), or on distinct inputs ("distinct": pools, whose copies on one input
# onnxruntime computes once, and the factorized reduction with its own input shift).
SAME_FANOUTS = (*CONVS, "skip_connect")
DISTINCT_FANOUTS = (*POOLS, "skip_connect")
SUMMARY_COLUMNS = (
    "width",
    "where",
    "C x H x W",
    "sep 3x3 µs",
    "sep 5x5 µs",
    "dil 3x3 µs",
    "dil 5x5 µs",
    "max pool µs",
    "avg pool µs",
    "skip µs",
    "relu µs",
    "add µs",
)
DEFAULT_CELLS = (5, 8)  # the cell counts a profile covers unless told (each cell position has a frame entry)
DEFAULT_CHECK_CELLS = 5  # the depth `profile-device --check` measures unless told
LAYOUTS = ("nchwc", "nchw")
PRODUCERS = ("conv", "other")
FIT_CELLS = 600  # random cells per cell type that `position_terms` fits its shares on


def _reference() -> DartsArch:
    from edgenas.spaces.darts import DartsSpace

    return DartsSpace().cheapest()


# the cheapest genotype (identities, and max-pooling where a cell reduces): its network is the frame
REFERENCE = _reference()


# --------------------------------------------------------------------------- shapes and keys
def dims(c: int, h: int) -> str:
    """`CxHxW` of a square map, as keys write a shape."""
    return f"{c}x{h}x{h}"


def key(kernel: str, c: int, h: int, stride: int = 1) -> str:
    """Entry name of a kernel on a (C, H, H) input, e.g. `sep_conv_3x3:16x28x28`, `max_pool_3x3/s2:32x28x28`."""
    return f"{kernel}{'/s2' if stride == 2 else ''}:{dims(c, h)}"


def half(h: int) -> int:
    """The side after a reduction (`CellSpec.side_out`: rounded up)."""
    return -(-h // 2)


def node_shapes(shape: NetShape) -> list[tuple[int, int]]:
    """(C, H) of the nodes of the cells of `shape`'s network: of the stride-1 ops and the adds."""
    return sorted({(s.c, s.side_out) for s in cell_layout(shape)})


def input_shapes(shape: NetShape) -> list[tuple[int, int]]:
    """(C, H) of the inputs of `shape`'s reduction cells: of the stride-2 ops."""
    return sorted({(s.c, s.side) for s in cell_layout(shape) if s.reduction})


def stage_shapes(width: int, resolution: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Node and reduction-input shapes of the three stages at `width`: what covers any number of cells."""
    h1, h2 = half(resolution), half(half(resolution))
    return [(width, resolution), (2 * width, h1), (4 * width, h2)], [(2 * width, resolution), (4 * width, h1)]


def stem_key(shape: NetShape) -> str:
    """The stem's frame entry (3x3 conv to 3C channels, BN folded)."""
    r = shape.resolution
    return f"stem:{dims(shape.in_channels, r)}->{dims(STEM_MULTIPLIER * shape.width, r)}"


def cell_key(spec: CellSpec) -> str:
    """The frame entry of a cell: preprocessing, concatenation, layout conversions (what every genotype pays)."""
    return (
        f"{spec.kind}_cell:{dims(spec.c_pp, spec.side_pp)}+{dims(spec.c_p, spec.side)}"
        f"->{dims(len(NODES) * spec.c, spec.side_out)}"
    )


def head_key(shape: NetShape) -> str:
    """The head's frame entry (global pooling and the classifier)."""
    last = cell_layout(shape)[-1]
    return f"head:{dims(len(NODES) * last.c, last.side_out)}->{shape.num_classes}"


def frame_keys(shape: NetShape) -> list[str]:
    """The stem, every cell's frame (in order) and the head of `shape`'s network."""
    return [stem_key(shape), *(cell_key(s) for s in cell_layout(shape)), head_key(shape)]


def required_keys(shape: NetShape, precision: str = "fp32") -> list[str]:
    """Every entry `predict_ms` reads for networks of `shape` from a table of this precision."""
    keys = list(dict.fromkeys(frame_keys(shape)))
    for c, h in node_shapes(shape):
        keys += [key(k, c, h) for k in (*BODIES, *NODE_KERNELS, *(NCHW_POOLS if precision == "int8" else ()))]
    for c, h in input_shapes(shape):
        keys += [key(k, c, h, 2) for k in (*BODIES, "skip_connect", "fr_input")]
        keys += [key(k, c, h) for k in ("relu", "fused_relu")]
    return keys


# --------------------------------------------------------------------------- the fusion record
# What runs blocked (NCHWc, x86) depends on the CPU's block and the channel count, and an add
# folds into a conv only when both its inputs are blocked. The record holds, per node shape,
# the layout of 1x1 convs and of the two pools; per reduction input, that of 1x1 convs, of
# the stride-2 pools, and what produces a factorized reduction's output (its BN becomes a
# blocked conv under NCHWc), e.g.
#   "conv:16x28x28": "nchwc"   "max_pool_3x3/s2:32x28x28": "nchwc"
#   "skip_connect/s2:32x28x28": "nchwc conv"


def fusion_keys(shape: NetShape) -> list[str]:
    """Every fusion-record key `predict_ms` reads for networks of `shape`."""
    keys = []
    for c, h in node_shapes(shape):
        keys += [key("conv", c, h), *(key(p, c, h) for p in POOLS)]
    for c, h in input_shapes(shape):
        keys += [key("conv", c, h), *(key(p, c, h, 2) for p in POOLS), key("skip_connect", c, h, 2)]
    return list(dict.fromkeys(keys))


def check_fusion(fusion: Mapping[str, str]) -> None:
    """Raise `ValueError` naming the first record value that is not a layout or a `layout producer`."""
    for k, value in fusion.items():
        if k.startswith("skip_connect"):
            layout, _, producer = value.partition(" ")
            ok = layout in LAYOUTS and producer in PRODUCERS
        else:
            ok = value in LAYOUTS
        if not ok:
            raise ValueError(f"fusion {k!r} is {value!r}")


def _layout(graph: onnx.GraphProto, op_type: str) -> str:
    """`nchwc` when onnxruntime runs every `op_type` node of the graph in the blocked layout, else `nchw`."""
    nodes = [n for n in graph.node if n.op_type == op_type]
    return "nchwc" if nodes and all(n.domain == NCHWC_DOMAIN for n in nodes) else "nchw"


def _output_producer(graph: onnx.GraphProto) -> str:
    """`layout producer` of the node computing the graph's output (past layout conversions)."""
    by_output = {o: n for n in graph.node for o in n.output}
    node = by_output[graph.output[0].name]
    while node.op_type == "ReorderOutput" and node.input[0] in by_output:
        node = by_output[node.input[0]]
    layout = "nchwc" if node.domain == NCHWC_DOMAIN else "nchw"
    return f"{layout} {'conv' if node.op_type in ('Conv', 'FusedConv') else 'other'}"


def fusion_record(
    nodes: Sequence[tuple[int, int]], inputs: Sequence[tuple[int, int]], optimized: Callable[[str], onnx.GraphProto]
) -> dict[str, str]:
    """The record for these node and reduction-input shapes from onnxruntime's optimised graphs.

    `optimized(name)` returns the optimised graph of the one-copy graph `name` of a profile
    (`"conv_1x1:16x28x28#1"`, `"max_pool_3x3/s2:32x28x28 distinct#1"` ...).
    """
    record: dict[str, str] = {}
    for c, h in nodes:
        record[key("conv", c, h)] = _layout(optimized(f"{key('conv_1x1', c, h)}#1"), "Conv")
        record[key("max_pool_3x3", c, h)] = _layout(optimized(f"{key('max_pool_3x3', c, h)}#1"), "MaxPool")
        record[key("avg_pool_3x3", c, h)] = _layout(optimized(f"{key('avg_pool_3x3', c, h)}#1"), "AveragePool")
    for c, h in inputs:
        record[key("conv", c, h)] = _layout(optimized(f"{key('conv_1x1', c, h)}#1"), "Conv")
        for pool, op_type in zip(POOLS, ("MaxPool", "AveragePool"), strict=True):
            record[key(pool, c, h, 2)] = _layout(optimized(f"{key(pool, c, h, 2)} distinct#1"), op_type)
        record[key("skip_connect", c, h, 2)] = _output_producer(optimized(f"{key('skip_connect', c, h, 2)} same#1"))
    return record


def measure_fusion(
    shape: NetShape, *, workdir: str | Path | None = None, disabled_optimizers: Sequence[str] = ()
) -> dict[str, str]:
    """`fusion_record` of this machine for `shape`'s shapes, building the graphs it reads (a profile reuses its own)."""
    import onnx

    nodes, inputs = node_shapes(shape), input_shapes(shape)
    models = {**_node_models(nodes, copies=(1,)), **_input_models(inputs, copies=(1,))}
    with tempfile.TemporaryDirectory(prefix="edgenas-fusion-", dir=workdir) as tmp:

        def optimized(name: str) -> onnx.GraphProto:
            path = Path(tmp) / "g.onnx"
            onnx.save(models[name], str(path))
            return optimized_graph(path, disabled_optimizers=disabled_optimizers)

        return fusion_record(nodes, inputs, optimized)


# --------------------------------------------------------------------------- kernels of a cell
@functools.lru_cache(maxsize=1 << 16)
def cell_kernels(
    pairs: tuple[tuple[str, int], ...],
    spec: CellSpec,
    record: tuple[tuple[str, str], ...],
    precision: str = "fp32",
    last: bool = False,
) -> tuple[tuple[str, int], ...]:
    """The genotype-dependent kernels onnxruntime runs for one cell: `(entry key, count)` pairs.

    `record` holds the table's fusion record (`fusion_keys` items). The cell is laid out as
    the exporter writes it: per node its two ops, then their Add; a conv op (sep/dil) is
    ReLU(state) -> its body; a pool its body; skip_connect the state itself, or at stride 2
    ReLU(state) -> shifted-input slicing (`fr_input`) -> the factorized reduction's body.
    Then onnxruntime's graph optimisations, in graph order:
    - common subexpressions are computed once: the ReLU of a state read by several conv or
      reducing skip ops, its `fr_input`, the pools of one state, an Add of the same two values;
    - an Add whose inputs are both blocked (NCHWc), one of them (the first tried first) a conv
      output used only by that Add with no add or activation folded in yet, becomes part of
      that conv (`fused_add`, in place into the other input's buffer, or `fused_add_copy` when
      that input is read again later, by a later kernel or the cell's concatenation); else a
      plain `add`. Conv outputs: the ops' last 1x1 convs, the factorized reduction's BN where
      onnxruntime made it a conv, and the preprocessing convs (the cell's two input states);
    - a ReLU whose input is a conv output used only by it, with no activation yet, becomes that
      conv's activation (`fused_relu`: a state read only by conv ops); else a plain `relu`.
    The preprocessing, the concatenation and what the sep convs fold inside themselves are
    the same for every genotype: the frame's and the bodies' entries hold them.
    At `precision="int8"` a stride-1 pool that onnxruntime leaves in NCHW (`int8_pool_layouts`;
    `last`: the network's last cell) is priced at its `_nchw` entry.
    """
    rec = dict(record)
    nhwc = int8_pool_layouts(pairs, spec, last) if precision == "int8" else {}
    c, side, side_out = spec.c, spec.side, spec.side_out
    nodes: list[tuple[str, tuple[int, ...], int, str]] = []  # (kind, inputs, output value, entry key)
    shared: dict[tuple[str, tuple[int, ...]], int] = {}
    shape_of: dict[int, int] = {0: side, 1: side}  # value -> side of the (C, side, side) map

    def emit(kind: str, inputs: tuple[int, ...], entry: str, out_side: int, cse: bool = True) -> int:
        k = (kind, inputs)
        if cse and k in shared:
            return shared[k]
        out = len(nodes) + 2  # values 0 and 1 are the preprocessed inputs
        nodes.append((kind, inputs, out, entry))
        shape_of[out] = out_side
        if cse:
            shared[k] = out
        return out

    value = [0, 1]
    for n in range(len(NODES)):
        outs = []
        for op, j in pairs[INPUTS_PER_NODE * n : INPUTS_PER_NODE * (n + 1)]:
            src, stride = value[j], spec.stride(j)
            h = shape_of[src]
            if op == "skip_connect" and stride == 1:
                out = src
            elif op in POOLS:
                kernel = op if nhwc.get((op, j), True) or stride == 2 else f"{op}{NCHW}"
                out = emit(op, (src,), key(kernel, c, h, stride), side_out)
            else:
                r = emit("relu", (src,), "", h)
                if op == "skip_connect":
                    f = emit("fr_input", (r,), key("fr_input", c, h, 2), half(h))
                    out = emit("conv", (r, f), key("skip_connect", c, h, 2), side_out, cse=False)
                else:
                    out = emit("conv", (r,), key(op, c, h, stride), side_out, cse=False)
            outs.append(out)
        value.append(emit("add", tuple(outs), "", side_out))
    end = len(nodes)  # the concatenation reads the 4 nodes after every kernel of the cell
    uses: Counter[int] = Counter(v for _k, inputs, _o, _e in nodes for v in inputs)
    uses.update(value[2:])
    last_use = dict.fromkeys(value[2:], end)
    for i, (_k, inputs, _o, _e) in enumerate(nodes):
        for v in inputs:
            last_use[v] = max(last_use.get(v, i), i)

    # value -> [has_add, has_activation] of the conv producing it (None: not a conv); value -> blocked
    conv: dict[int, list[bool] | None] = {}
    blocked: dict[int, bool] = {}
    for v, producer in enumerate((_preprocess0(spec, rec), f"{rec.get(key('conv', c, side), 'nchwc')} conv")):
        layout, _, what = producer.partition(" ")
        conv[v] = [False, False] if what == "conv" else None
        blocked[v] = layout == "nchwc"
    counts: Counter[str] = Counter()
    for i, (kind, inputs, out, entry) in enumerate(nodes):
        if kind == "conv":  # a conv op, or a factorized reduction (its BN a conv where onnxruntime made it one)
            counts[entry] += 1
            if entry.startswith("skip_connect"):
                layout, _, producer = rec.get(entry, "nchwc conv").partition(" ")
            else:
                layout, producer = rec.get(key("conv", c, side_out), "nchwc"), "conv"
            conv[out] = [False, False] if producer == "conv" else None
            blocked[out] = layout == "nchwc"
        elif kind in POOLS:
            counts[entry] += 1
            conv[out], blocked[out] = None, rec.get(entry, "nchwc") == "nchwc"
        elif kind == "fr_input":
            counts[entry] += 1
            conv[out], blocked[out] = None, False
        elif kind == "relu":
            v = inputs[0]
            producer = conv.get(v)
            h = shape_of[v]
            if uses[v] == 1 and producer is not None and not producer[1]:
                counts[key("fused_relu", c, h)] += 1
                producer[1] = True
            else:
                counts[key("relu", c, h)] += 1
            conv[out], blocked[out] = None, blocked[v]
        else:  # add
            both = all(blocked[v] for v in inputs)
            target = None
            if both:
                target = next(
                    (v for v in inputs if uses[v] == 1 and conv.get(v) is not None and not any(conv[v])), None
                )
            if target is None:
                counts[key("add", c, side_out)] += 1
                conv[out] = None
            else:
                other = inputs[1] if target == inputs[0] else inputs[0]
                inplace = last_use[other] == i and other != target
                counts[key("fused_add" if inplace else "fused_add_copy", c, side_out)] += 1
                conv[target][0] = True  # type: ignore[index]
                conv[out] = conv[target]
            blocked[out] = both
    return tuple(sorted(counts.items()))


def int8_pool_layouts(pairs: tuple[tuple[str, int], ...], spec: CellSpec, last: bool) -> dict[tuple[str, int], bool]:
    """(pool, input state) -> whether onnxruntime runs that pool of a quantized cell in NHWC.

    onnxruntime runs a quantized network's convs in NHWC (`NhwcTransformer`): each QLinearConv
    is wrapped in Transposes, which its transpose optimizer then pushes through later nodes in
    graph order when its cost check says so (onnxruntime/core/optimizer/transpose_optimization):
    a MaxPool always (it becomes NhwcMaxPool), a QLinearAveragePool only when its output also
    leads to a Transpose (to a conv, through pools, adds and concatenations), a QLinearAdd only
    when both its inputs come transposed. So a value is NHWC when it is a conv's output (a
    preprocessing conv, a sep/dil conv op), an NHWC pool's, or an add of two NHWC values; a
    factorized reduction's output (its BatchNormalization is not quantized and runs in NCHW)
    is NCHW, and so is what is computed from it. A pool on an NCHW value runs the (much slower)
    NCHW integer kernel. In a cell before the last, every value leads to the next cells'
    preprocessing convs; in the last cell only a value read, through pools and adds, by a conv op.
    Checked against onnxruntime 1.32's optimised graphs of quantized networks: docs/methods/lut.md.
    """
    states = len(NODES) + 2
    leads = [not last] * states  # value -> it reaches a conv (a Transpose) through pools, skips and adds
    for v in reversed(range(states)):
        for m, (op, j) in enumerate(pairs):
            reduces = op == "skip_connect" and spec.stride(v) == 2
            if j == v and (op in CONVS or reduces or leads[2 + m // INPUTS_PER_NODE]):
                leads[v] = True
    is_nhwc = [not spec.reduction_prev, True] + [False] * len(NODES)
    pools: dict[tuple[str, int], bool] = {}
    for n in range(len(NODES)):
        both = True
        for op, j in pairs[INPUTS_PER_NODE * n : INPUTS_PER_NODE * (n + 1)]:
            if op in POOLS:
                if (op, j) not in pools:  # one pool per (pool, state); its output feeds every node reading it
                    read_by = [2 + m // INPUTS_PER_NODE for m, pair in enumerate(pairs) if pair == (op, j)]
                    pools[op, j] = is_nhwc[j] and (op == "max_pool_3x3" or any(leads[u] for u in read_by))
                both &= pools[op, j]
            elif op == "skip_connect":
                both &= is_nhwc[j] and spec.stride(j) == 1
        is_nhwc[2 + n] = both
    return pools


def _preprocess0(spec: CellSpec, rec: Mapping[str, str]) -> str:
    """`layout producer` of a cell's first input state: a 1x1 conv, or after a reduction a factorized
    reduction to the cell's width, as recorded for the reducing skips of that width (its output
    halves decide whether onnxruntime blocks its concatenation and BN)."""
    conv = f"{rec.get(key('conv', spec.c, spec.side), 'nchwc')} conv"
    if not spec.reduction_prev:
        return conv
    same = rec.get(key("skip_connect", spec.c, spec.side_pp, 2))
    width = f"skip_connect/s2:{spec.c}x"
    return same or next((v for k, v in sorted(rec.items()) if k.startswith(width)), conv)


# --------------------------------------------------------------------------- predictions
def _as_darts(arch: Any) -> DartsArch:
    if isinstance(arch, DartsArch):
        return arch
    if isinstance(arch, str):
        return DartsArch.parse(arch)
    raise ArchError(f"a darts latency table predicts DARTS genotypes, not {type(arch).__name__}")


def _record(table: LatencyTable, shape: NetShape) -> tuple[tuple[str, str], ...]:
    return tuple((k, table.fusion[k]) for k in fusion_keys(shape))


def frame_ms(table: LatencyTable, shape: NetShape) -> float:
    """Overhead, stem, every cell's frame and the head: what every network of `shape` costs."""
    return table.overhead_ms + sum(table.entries[k] for k in frame_keys(shape))


def cell_ms(
    table: LatencyTable, pairs: tuple[tuple[str, int], ...], spec: CellSpec, record: tuple, last: bool = False
) -> float:
    """The genotype-dependent part of one cell: its `cell_kernels`, each at its entry (`last`: the network's last)."""
    return sum(n * table.entries[k] for k, n in cell_kernels(pairs, spec, record, table.precision, last))


def predict_ms(table: LatencyTable, arch: Any, shape: NetShape) -> float:
    """Predicted batch-1 latency (ms) of `DartsNetwork(arch, shape)` on the table's device.

    `overhead + stem + Σ cells (frame + kernels) + head`: each cell's frame (preprocessing,
    concatenation) is the entry of its position (`cell_key`), its genotype's kernels are
    `cell_kernels` (op bodies at their width, side and stride; the ReLUs, the factorized
    reductions' input slicing and the node adds as onnxruntime shares and folds them, by the
    table's fusion record), each at its entry. The table must cover `shape`.
    """
    arch = _as_darts(arch)
    record = _record(table, shape)
    specs = cell_layout(shape)
    return frame_ms(table, shape) + sum(cell_ms(table, arch.cell(s.kind), s, record, s is specs[-1]) for s in specs)


def _body_ms(table: LatencyTable, op: str, spec: CellSpec, j: int) -> float:
    """The body entry of `op` on input `j` of a cell at `spec` (0 for `none` and a stride-1 skip)."""
    stride = spec.stride(j)
    if op == "none" or (op == "skip_connect" and stride == 1):
        return 0.0
    return table.entries[key(op, spec.c, spec.side if stride == 2 else spec.side_out, stride)]


@functools.cache
def _fit_cells(kind: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """`FIT_CELLS` seeded random cells of one type (`position_terms` fits on them)."""
    from edgenas.spaces.darts import DartsSpace

    rng = numpy_rng(0, "darts-lut-fit", kind)
    space = DartsSpace()
    return tuple(space.sample(rng).cell(kind) for _ in range(FIT_CELLS))


def _edge_onehot(pairs: tuple[tuple[str, int], ...]) -> np.ndarray:
    """(edges × real ops) one-hot of a cell's pairs."""
    x = np.zeros((len(EDGES), len(REAL_OPS)))
    for m, (op, j) in enumerate(pairs):
        x[EDGES.index((NODES[m // INPUTS_PER_NODE], j)), REAL_OPS.index(op)] = 1.0
    return x


def position_terms(table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
    """`(fixed_ms, (28, 8) terms)` over DARTS' choice points (normal then reduction edges, `OPS` columns).

    `fixed_ms` is the frame (`frame_ms`); `terms[p, o]` is the cost of op `o` on edge `p`,
    summed over the cells of that type, such that fixed + Σ over a genotype's 16 edges of
    terms[edge, op] approximates `predict_ms` (`none` = 0): the op's body entries (exact),
    plus its share of the ReLUs, input slicing and node adds, which are not additive over
    edges (shared per state, folded by neighbours); the shares are the least-squares fit,
    per cell type, of those kernels' cost over `FIT_CELLS` seeded random cells. With softmax
    weights in place of the one-hot choice it is the expected latency of the supernet
    (DCA-NAS, FBNet). docs/methods/lut.md has the fit's measured error.
    """
    record = _record(table, shape)
    specs = cell_layout(shape)
    terms = np.zeros((len(CELL_TYPES) * len(EDGES), len(OPS)))
    for t, kind in enumerate(CELL_TYPES):
        mine = [s for s in specs if s.kind == kind]
        if not mine:
            continue
        block = terms[t * len(EDGES) : (t + 1) * len(EDGES)]  # a view
        for e, (_node, j) in enumerate(EDGES):
            for o, op in enumerate(OPS):
                block[e, o] = sum(_body_ms(table, op, s, j) for s in mine)
        cells = _fit_cells(kind)
        x = np.stack([_edge_onehot(p).ravel() for p in cells])
        bodies = x @ block[:, 1:].ravel()
        y = np.array([sum(cell_ms(table, p, s, record, s is specs[-1]) for s in mine) for p in cells]) - bodies
        share, *_ = np.linalg.lstsq(x, y, rcond=None)
        block[:, 1:] += share.reshape(len(EDGES), len(REAL_OPS))
    return frame_ms(table, shape), terms


edge_terms = position_terms  # the `LatencyKernels` name (per edge = per choice point here)


# --------------------------------------------------------------------------- graphs
_CONV_OPS = {"sep_conv_3x3": (3, 1), "sep_conv_5x5": (5, 1), "dil_conv_3x3": (3, 2), "dil_conv_5x5": (5, 2)}


class _Graph:
    """ONNX nodes as the exporter writes DARTS ops (BN folded into conv weights, no bias), seeded weights."""

    def __init__(self, *name: object) -> None:
        self.nodes: list = []
        self.inits: list = []
        self.rng = numpy_rng(0, "darts-lut-weights", *name)

    def _name(self, prefix: str) -> str:
        return f"{prefix}{len(self.nodes) + len(self.inits)}"

    def node(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        from onnx import helper

        out = self._name("t")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name("c")
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int = 1, stride: int = 1, dil: int = 1, groups: int = 1) -> str:
        fan_in = c_in // groups * k * k
        w = (self.rng.standard_normal((c_out, c_in // groups, k, k)) / math.sqrt(fan_in)).astype(np.float32)
        pad = dil * (k - 1) // 2
        return self.node(
            "Conv",
            x,
            self.const(w),
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride] * 2,
            dilations=[dil] * 2,
            group=groups,
        )

    def shift(self, x: str, h: int) -> str:
        """The factorized reduction's shifted input `x[:, :, 1:, 1:]`, padded back to an even side."""
        one, end = self.const(np.array([1], np.int64)), self.const(np.array([2**62], np.int64))
        for axis in (2, 3):
            x = self.node("Slice", x, one, end, self.const(np.array([axis], np.int64)), one)
        if h % 2:
            x = self.node("Pad", x, self.const(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64)))
        return x

    def body(self, op: str, x: str, c: int, h: int, stride: int) -> str:
        """An op less its leading ReLU, on `x` (C, h, h); skip_connect (stride 2) is the factorized reduction."""
        if op in _CONV_OPS:
            k, d = _CONV_OPS[op]
            y = self.conv(self.conv(x, c, c, k, stride, d, c), c, c)
            if op.startswith("sep"):
                y = self.conv(self.conv(self.node("Relu", y), c, c, k, 1, 1, c), c, c)
            return y
        if op == "max_pool_3x3":
            return self.node("MaxPool", x, kernel_shape=[3, 3], pads=[1] * 4, strides=[stride] * 2)
        if op == "avg_pool_3x3":
            return self.node(
                "AveragePool", x, kernel_shape=[3, 3], pads=[1] * 4, strides=[stride] * 2, count_include_pad=0
            )
        if op == "skip_connect" and stride == 2:
            a, b = self.conv(x, c, c // 2, 1, 2), self.conv(self.shift(x, h), c, c // 2, 1, 2)
            ones, zeros = self.const(np.ones(c, np.float32)), self.const(np.zeros(c, np.float32))
            return self.node("BatchNormalization", self.node("Concat", a, b, axis=1), ones, zeros, zeros, ones)
        raise ValueError(f"no body for {op} at stride {stride}")

    def model(self, c: int, h: int, out: str, h_out: int) -> onnx.ModelProto:
        return onnx_model(self.nodes, self.inits, (c, h, h), out, (c, h_out, h_out))


def chain_model(chain: str, c: int, h: int, copies: int, int8: bool = False) -> onnx.ModelProto:
    """`copies` copies of one stride-1 kernel (a `NODE_CHAINS` name) at (C, h, h), each feeding the next.

    The graph input first goes through a 1x1 conv, so that the chain runs in the layout it
    runs in inside a network (blocked, where onnxruntime blocks convs); the conv is in every
    graph, so the slope over `CHAIN_EXTRA` copies holds only the chain's kernels. `add` adds
    the conv's output to the running value; `conv_1x1x2+add` is conv_a(x) + conv_b(x) (the add
    folds into a conv, in place), `conv_1x1+add` conv(x) + x (into a copy of x, which the
    conv reads), `conv_1x1+relu` ReLU(conv(x)) (the ReLU folds into the conv).
    `int8`: the graph is for an INT8 table and ends in a 1x1 conv of its own (also dropped by the
    slope), so that quantized, each pool's output leads to a conv as in a cell before the last and
    onnxruntime runs the pools in NHWC (`int8_pool_layouts`).
    """
    if chain not in NODE_CHAINS:
        raise ValueError(f"unknown chain {chain!r}")
    g = _Graph("chain", chain, c, h)
    x = base = g.conv("input", c, c)
    for _ in range(copies):
        if chain == "relu":
            x = g.node("Relu", x)
        elif chain == "add":
            x = g.node("Add", x, base)
        elif chain == "conv_1x1":
            x = g.conv(x, c, c)
        elif chain == "conv_1x1x2+add":
            x = g.node("Add", g.conv(x, c, c), g.conv(x, c, c))
        elif chain == "conv_1x1+add":
            x = g.node("Add", g.conv(x, c, c), x)
        elif chain == "conv_1x1+relu":
            x = g.node("Relu", g.conv(x, c, c))
        else:
            x = g.body(chain, x, c, h, 1)
    if int8:
        x = g.conv(x, c, c)
    return g.model(c, h, x, h)


def fanout_model(op: str, c: int, h: int, copies: int, distinct: bool, int8: bool = False) -> onnx.ModelProto:
    """`copies` stride-2 bodies of `op` on (C, h, h), their outputs summed (each add folds into a conv body).

    Same input (`distinct=False`): every copy reads ReLU(x) (computed once, as in a cell), so
    the slope is a body and an add folded into it. Distinct inputs (pools, whose copies on one
    input onnxruntime computes once, and the factorized reduction with its input slicing):
    copy k reads u_k = u_(k-1) + x, a plain add, through a ReLU for the factorized reduction.
    x is the output of a 1x1 conv of the graph input, as in `chain_model`; `int8`: the sum goes
    through a last 1x1 conv, as in `chain_model`.
    """
    g = _Graph("fanout", op, c, h, distinct)
    x = u = g.conv("input", c, c)
    shared = None if distinct or op in POOLS else g.node("Relu", x)
    total = None
    for _ in range(copies):
        if distinct:
            u = g.node("Add", u, x)
            src = u if op in POOLS else g.node("Relu", u)
        else:
            src = shared if shared is not None else x
        y = g.body(op, src, c, h, 2)
        total = y if total is None else g.node("Add", y, total)
    assert total is not None
    if int8:
        total = g.conv(total, c, c)
    return g.model(c, h, total, half(h))


def nchw_pool_model(pool: str, c: int, h: int, copies: int) -> onnx.ModelProto:
    """INT8 only: `copies` stride-1 pools (a `POOLS` name) on distinct NCHW inputs, their outputs summed.

    Copy k reads u_k = u_(k-1) + x, x the graph input, which onnxruntime leaves in NCHW as it leaves
    a factorized reduction's output, so the pools and the adds run in NCHW. Not a chain: onnxruntime's
    NCHW integer MaxPool is faster on already pooled (smoother) data (copies 1 to 5 of a chain took
    102, 81, 67, 61 and 57 µs at 32x14x14), and a network pools fresh values. The slope is a pool
    and two adds.
    """
    g = _Graph("nchw", pool, c, h)
    x = u = "input"
    total = None
    for _ in range(copies):
        u = g.node("Add", u, x)
        y = g.body(pool, u, c, h, 1)
        total = y if total is None else g.node("Add", y, total)
    assert total is not None
    return g.model(c, h, total, h)


def _node_models(
    shapes: Sequence[tuple[int, int]], copies: Sequence[int] = (1, 1 + CHAIN_EXTRA), int8: bool = False
) -> dict:
    """The chains at each node shape, named `KEY#copies` (`int8`: as `chain_model`'s, plus the
    `NCHW_POOLS` fan-outs, `KEY distinct#copies`)."""
    out = {
        f"{key(chain, c, h)}#{n}": chain_model(chain, c, h, n, int8)
        for c, h in shapes
        for chain in NODE_CHAINS
        for n in copies
    }
    if int8:
        for c, h in shapes:
            for pool in POOLS:
                for n in copies:
                    out[f"{key(pool + NCHW, c, h)} distinct#{n}"] = nchw_pool_model(pool, c, h, n)
    return out


def _input_models(
    shapes: Sequence[tuple[int, int]], copies: Sequence[int] = (1, 1 + CHAIN_EXTRA), int8: bool = False
) -> dict:
    """The chains and fan-outs at each reduction input, named `KEY#copies` / `KEY same|distinct#copies`."""
    out = {}
    for c, h in shapes:
        for n in copies:
            for chain in INPUT_CHAINS:
                out[f"{key(chain, c, h)}#{n}"] = chain_model(chain, c, h, n, int8)
            for op in SAME_FANOUTS:
                out[f"{key(op, c, h, 2)} same#{n}"] = fanout_model(op, c, h, n, False, int8)
            for op in DISTINCT_FANOUTS:
                out[f"{key(op, c, h, 2)} distinct#{n}"] = fanout_model(op, c, h, n, True, int8)
    return out


def _slope(ms: Mapping[str, float], name: str) -> float:
    """The marginal cost of one copy: timed `name#1` and `name#(1 + CHAIN_EXTRA)`."""
    return (ms[f"{name}#{1 + CHAIN_EXTRA}"] - ms[f"{name}#1"]) / CHAIN_EXTRA


def node_entries(ms: Mapping[str, float], c: int, h: int, precision: str = "fp32") -> dict[str, float]:
    """Entries at a node shape from the timed chains (`ms` by graph name): slopes, folded kernels as differences
    (INT8: the `NCHW_POOLS` too)."""
    out = {key(b, c, h): _slope(ms, key(b, c, h)) for b in (*BODIES, "relu", "add")}
    if precision == "int8":
        for pool in NCHW_POOLS:  # fan-outs on distinct inputs: a pool and two adds per copy
            out[key(pool, c, h)] = _slope(ms, f"{key(pool, c, h)} distinct") - 2 * out[key("add", c, h)]
    conv = _slope(ms, key("conv_1x1", c, h))
    out[key("fused_add", c, h)] = _slope(ms, key("conv_1x1x2+add", c, h)) - 2 * conv
    out[key("fused_add_copy", c, h)] = _slope(ms, key("conv_1x1+add", c, h)) - conv
    out[key("fused_relu", c, h)] = _slope(ms, key("conv_1x1+relu", c, h)) - conv
    return out


def input_entries(ms: Mapping[str, float], c: int, h: int, fused_add_out: float, add_out: float) -> dict[str, float]:
    """Entries at a reduction input (C, h, h): stride-2 bodies from the fan-outs, less the adds summing them.

    `fused_add_out` / `add_out`: the folded and plain add entries at the output shape.
    """
    relu, add = _slope(ms, key("relu", c, h)), _slope(ms, key("add", c, h))
    fused_relu = _slope(ms, key("conv_1x1+relu", c, h)) - _slope(ms, key("conv_1x1", c, h))
    out = {key("relu", c, h): relu, key("fused_relu", c, h): fused_relu}
    for op in SAME_FANOUTS:
        out[key(op, c, h, 2)] = _slope(ms, f"{key(op, c, h, 2)} same") - fused_add_out
    for op in POOLS:
        out[key(op, c, h, 2)] = _slope(ms, f"{key(op, c, h, 2)} distinct") - add - add_out
    fr = key("skip_connect", c, h, 2)
    out[key("fr_input", c, h, 2)] = _slope(ms, f"{fr} distinct") - _slope(ms, f"{fr} same") - add - relu
    return out


def frame_prefixes(shape: NetShape, folder: Path) -> list[Path]:
    """ONNX files of growing prefixes of the cheapest genotype's network at `shape`: the stem alone, the
    stem and the first k cells for k = 1..N, then the whole network (one export, cut with onnx.utils)."""
    import onnx
    import onnx.utils

    from edgenas.export.onnx import export_onnx
    from edgenas.spaces.darts.network import DartsNetwork

    tag = f"{shape.width}x{shape.cells}"
    net = DartsNetwork(REFERENCE, shape).eval()
    whole = export_onnx(net, shape.input_shape, folder / f"frame_{tag}.onnx", dynamic_batch=False)
    graph = onnx.load(str(whole)).graph
    stem = next(n.output[0] for n in graph.node if n.op_type == "Conv" and n.input[0] == graph.input[0].name)
    cells = [n.output[0] for n in graph.node if n.op_type == "Concat" and len(n.input) == len(NODES)]
    if len(cells) != shape.cells:
        raise RuntimeError(f"found {len(cells)} cell outputs in the exported {tag} network, expected {shape.cells}")
    paths = []
    for k, out in enumerate([stem, *cells]):
        path = folder / f"frame_{tag}_{k}.onnx"
        onnx.utils.extract_model(str(whole), str(path), [graph.input[0].name], [out])
        paths.append(path)
    return [*paths, whole]


# --------------------------------------------------------------------------- profiling
def profile_spec(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    cells: Sequence[int] = DEFAULT_CELLS,
    precision: str = "fp32",
    **_: Any,
) -> ProfileSpec:
    """The checked `ProfileSpec` of a profile of DARTS networks of these widths and cell counts at this input."""
    widths, cells = checked_profile_input(
        resolution, in_channels, num_classes, widths, example="--widths 16 --cells 5", cells=cells
    )
    return ProfileSpec("darts", resolution, in_channels, num_classes, tuple(widths), tuple(cells), precision)


def _spec_shapes(spec: ProfileSpec) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The node shapes and reduction-input shapes of every width of `spec`."""
    nodes = sorted({s for w in spec.widths for s in stage_shapes(w, spec.resolution)[0]})
    inputs = sorted({s for w in spec.widths for s in stage_shapes(w, spec.resolution)[1]})
    return nodes, inputs


def profile_graphs(spec: ProfileSpec, folder: Path, *, bar: Any = None) -> dict[str, Path]:
    """Every graph a profile times, written to `folder`: the run overhead (an Identity graph), op
    bodies and node kernels as chains at each node shape (`chain_model`), stride-2 bodies as fan-outs
    at each reduction input (`fanout_model`), and growing prefixes of the cheapest genotype's network
    for every (width, cells) (`frame_prefixes`)."""
    import onnx

    nodes, inputs = _spec_shapes(spec)
    files: dict[str, Path] = {}

    def add(gname: str, model: onnx.ModelProto) -> None:
        files[gname] = folder / f"g{len(files)}.onnx"
        onnx.save(model, str(files[gname]))

    add("overhead", identity_model((spec.in_channels, spec.resolution, spec.resolution)))
    int8 = spec.precision == "int8"
    for gname, model in {**_node_models(nodes, int8=int8), **_input_models(inputs, int8=int8)}.items():
        add(gname, model)
    nets = spec.shapes()
    task = bar.add_task("export frames", total=len(nets), status="") if bar is not None else None
    for shape in nets:
        if task is not None:
            bar.update(task, status=f"width {shape.width}, {shape.cells} cells")
        for k, path in enumerate(frame_prefixes(shape, folder)):
            files[f"frame{k}@{shape.width}x{shape.cells}"] = path
        if task is not None:
            bar.advance(task)
    return files


def profile_fusion(spec: ProfileSpec, optimized: Callable[[str], onnx.GraphProto]) -> dict[str, str]:
    """`fusion_record` of every node and reduction-input shape, from `profile_graphs`' optimised graphs."""
    return fusion_record(*_spec_shapes(spec), optimized)


def profile_entries(spec: ProfileSpec, ms: Mapping[str, float], fusion: Mapping[str, str]) -> dict[str, float]:
    """Entries from the timed graphs: chain slopes at node shapes, fan-out slopes at reduction inputs
    (less the adds summing them), and per cell position its frame: its prefix's increment less its
    genotype's kernels; a cell position met in several networks keeps the mean of its frames."""
    nodes, inputs = _spec_shapes(spec)
    entries: dict[str, float] = {}
    for c, h in nodes:
        entries.update(node_entries(ms, c, h, spec.precision))
    for c, h in inputs:
        out = half(h)
        entries.update(input_entries(ms, c, h, entries[key("fused_add", c, out)], entries[key("add", c, out)]))
    table = LatencyTable(
        space="darts",
        resolution=spec.resolution,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        widths=list(spec.widths),
        threads=1,
        warmup=0,
        repeats=1,
        overhead_ms=ms["overhead"],
        entries=entries,
        fusion=dict(fusion),
        precision=spec.precision,
    )
    frames: dict[str, list[float]] = {}
    for shape in spec.shapes():
        prefix = [ms[f"frame{k}@{shape.width}x{shape.cells}"] for k in range(shape.cells + 2)]
        record = _record(table, shape)
        frames.setdefault(stem_key(shape), []).append(prefix[0] - table.overhead_ms)
        for i, cell in enumerate(cell_layout(shape)):
            step = (
                prefix[i + 1]
                - prefix[i]
                - cell_ms(table, REFERENCE.cell(cell.kind), cell, record, i == shape.cells - 1)
            )
            frames.setdefault(cell_key(cell), []).append(step)
        frames.setdefault(head_key(shape), []).append(prefix[-1] - prefix[-2])
    entries.update({k: float(np.mean(v)) for k, v in frames.items()})
    return entries


def profile_darts(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    cells: Sequence[int] = DEFAULT_CELLS,
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    precision: str = "fp32",
    quiet: bool = False,
    name: str = "",
    workdir: str | Path | None = None,
) -> LatencyTable:
    """Time every kernel of DARTS networks of these widths and cell counts at this input here; record its fusions.

    The graphs are `profile_graphs`' (op bodies and node kernels as chains, stride-2
    bodies as fan-outs, the frame as growing prefixes of the cheapest genotype's network,
    the run overhead as an Identity graph), timed interleaved (`profile_here`);
    `profile_entries` turns the timings into entries and `fusion_record` reads
    onnxruntime's optimised graphs of the same files. A profiling kit
    (`edgenas profile-device --kit`) carries the same graphs to the device. `precision="int8"`
    quantizes every graph first (`quantize_graphs`): a table of INT8 kernels.
    """
    check_settings(threads, warmup, repeats)
    spec = profile_spec(
        resolution, in_channels=in_channels, num_classes=num_classes, widths=widths, cells=cells, precision=precision
    )
    return profile_here(spec, threads=threads, warmup=warmup, repeats=repeats, quiet=quiet, name=name, workdir=workdir)


profile = profile_darts  # the `LatencyKernels` name


# --------------------------------------------------------------------------- checking and summary
def check_archs(n: int, seed: int) -> list[DartsArch]:
    """`n` random distinct genotypes."""
    from edgenas.spaces.darts import DartsSpace

    return DartsSpace().sample_distinct(n, numpy_rng(seed, "lut-check"))  # type: ignore[return-value]


def summary_rows(table: LatencyTable) -> list[tuple[object, ...]]:
    """Rows for a console summary: per width, the op entries at each node shape and reduction input (µs)."""

    def us(k: str) -> str:
        return f"{table.entries[k] * 1e3:.1f}" if k in table.entries else ""

    rows: list[tuple[object, ...]] = []
    for width in table.widths:
        nodes, inputs = stage_shapes(width, table.resolution)
        for where, (c, h), stride in [*(("node", s, 1) for s in nodes), *(("reduce in", s, 2) for s in inputs)]:
            ops = [us(key(op, c, h, stride)) for op in (*CONVS, *POOLS)]
            skip = us(key("skip_connect", c, h, 2)) if stride == 2 else "0"
            rows.append((width, where, dims(c, h), *ops, skip, us(key("relu", c, h)), us(key("add", c, h))))
    return rows
