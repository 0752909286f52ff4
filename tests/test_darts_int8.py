"""INT8 latency tables of the DARTS space: which pools onnxruntime runs in NCHW, and what they cost.

A quantized network runs its convs in NHWC; a pool of a value computed from a factorized
reduction (its BN stays float, NCHW), or an average pool whose output reaches no conv in the
last cell, runs the slow NCHW kernel (`int8_pool_layouts`). Scripted cells check the rule and
the entries it picks; a slow test checks the rule against onnxruntime's optimised graphs.
"""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest

from edgenas.core.space import NetShape
from edgenas.spaces.darts import DartsArch
from edgenas.spaces.darts import latency as dl
from edgenas.spaces.darts.network import cell_layout

SHAPE = NetShape(width=8, cells=5, in_channels=1, resolution=12, num_classes=10)
SPECS = cell_layout(SHAPE)
FIRST, AFTER_REDUCE, LAST = SPECS[0], SPECS[2], SPECS[4]  # normal cells: inputs two convs; s0 a reduction; last


def test_pool_layouts_follow_the_factorized_reduction() -> None:
    # node 2 = max(s0) + max(s1); node 3 = avg(node 2) + sep(s1)
    cell = (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("sep_conv_3x3", 1)) + (
        ("skip_connect", 0),
        ("skip_connect", 1),
    ) * 2
    assert AFTER_REDUCE.reduction_prev and not FIRST.reduction_prev
    # after a reduction s0 is the factorized reduction's NCHW output: its pool is NCHW, and node 2
    # (an add of an NCHW and an NHWC value) stays NCHW, so the pool of node 2 is NCHW too
    assert dl.int8_pool_layouts(cell, AFTER_REDUCE, False) == {
        ("max_pool_3x3", 0): False,
        ("max_pool_3x3", 1): True,
        ("avg_pool_3x3", 2): False,
    }
    assert all(dl.int8_pool_layouts(cell, FIRST, False).values())


def test_average_pool_in_the_last_cell_needs_a_conv_downstream() -> None:
    # node 2 = avg(s1) + skip(s1): read only by the concatenation in the last cell -> NCHW there
    alone = (("avg_pool_3x3", 1), ("skip_connect", 1)) + (("skip_connect", 1),) * 6
    assert dl.int8_pool_layouts(alone, LAST, True) == {("avg_pool_3x3", 1): False}
    assert dl.int8_pool_layouts(alone, LAST, False) == {("avg_pool_3x3", 1): True}
    # a conv reading node 2 (through a max pool of it) makes the average pool's output reach a Transpose
    read = (("avg_pool_3x3", 1), ("skip_connect", 1), ("max_pool_3x3", 2), ("skip_connect", 1))
    read += (("sep_conv_3x3", 3), ("skip_connect", 1)) + (("skip_connect", 1),) * 2
    assert dl.int8_pool_layouts(read, LAST, True) == {("avg_pool_3x3", 1): True, ("max_pool_3x3", 2): True}
    # max pools take the NHWC kernel whenever their input is NHWC
    assert dl.int8_pool_layouts((("max_pool_3x3", 1), *alone[1:]), LAST, True) == {("max_pool_3x3", 1): True}


def test_int8_cells_price_nchw_pools_at_their_own_entries() -> None:
    cell = (("max_pool_3x3", 0), ("max_pool_3x3", 1), ("avg_pool_3x3", 2), ("sep_conv_3x3", 1)) + (
        ("skip_connect", 0),
        ("skip_connect", 1),
    ) * 2
    record = tuple((k, "nchw" if not k.startswith("skip") else "nchw other") for k in dl.fusion_keys(SHAPE))
    c, h = AFTER_REDUCE.c, AFTER_REDUCE.side
    fp32 = dict(dl.cell_kernels(cell, AFTER_REDUCE, record))
    int8 = dict(dl.cell_kernels(cell, AFTER_REDUCE, record, "int8", False))
    assert fp32[dl.key("max_pool_3x3", c, h)] == 2 and fp32[dl.key("avg_pool_3x3", c, h)] == 1
    moved = {dl.key("max_pool_3x3_nchw", c, h): 1, dl.key("avg_pool_3x3_nchw", c, h): 1}
    assert {k: v for k, v in int8.items() if k.endswith(f":{dl.dims(c, h)}") and "pool" in k} == {
        dl.key("max_pool_3x3", c, h): 1,
        **moved,
    }
    assert {k: v for k, v in int8.items() if k not in moved and "pool" not in k} == {
        k: v for k, v in fp32.items() if "pool" not in k
    }


def test_int8_entries_and_keys() -> None:
    c, h = 16, 14
    ms = {}
    for i, chain in enumerate(dl.NODE_CHAINS):
        ms[f"{dl.key(chain, c, h)}#1"] = 0.01 + 0.001 * i
        ms[f"{dl.key(chain, c, h)}#{1 + dl.CHAIN_EXTRA}"] = 0.01 + 0.001 * i + dl.CHAIN_EXTRA * 0.002 * (i + 1)
    for slope, pool in ((0.2, "max_pool_3x3_nchw"), (0.1, "avg_pool_3x3_nchw")):
        ms[f"{dl.key(pool, c, h)} distinct#1"] = 0.3
        ms[f"{dl.key(pool, c, h)} distinct#{1 + dl.CHAIN_EXTRA}"] = 0.3 + dl.CHAIN_EXTRA * slope
    fp32, int8 = dl.node_entries(ms, c, h), dl.node_entries(ms, c, h, "int8")
    add = fp32[dl.key("add", c, h)]  # a fan-out's copy is a pool and two adds
    assert int8[dl.key("max_pool_3x3_nchw", c, h)] == pytest.approx(0.2 - 2 * add)
    assert int8[dl.key("avg_pool_3x3_nchw", c, h)] == pytest.approx(0.1 - 2 * add)
    assert {k: v for k, v in int8.items() if "_nchw" not in k} == fp32
    extra = set(dl.required_keys(SHAPE, "int8")) - set(dl.required_keys(SHAPE))
    assert extra == {dl.key(p, c_, h_) for c_, h_ in dl.node_shapes(SHAPE) for p in dl.NCHW_POOLS}


def test_int8_graphs_end_in_a_conv_and_nchw_pools_read_the_input() -> None:
    def ops(model: onnx.ModelProto) -> list[str]:
        return [n.op_type for n in model.graph.node]

    assert ops(dl.chain_model("avg_pool_3x3", 8, 6, 2)) == ["Conv", "AveragePool", "AveragePool"]
    assert ops(dl.chain_model("avg_pool_3x3", 8, 6, 2, int8=True)) == ["Conv", "AveragePool", "AveragePool", "Conv"]
    assert ops(dl.fanout_model("avg_pool_3x3", 8, 6, 1, True, int8=True))[-1] == "Conv"
    # distinct inputs u_k = u_(k-1) + x off the graph input (no conv: NCHW), the pools summed
    fan = dl.nchw_pool_model("max_pool_3x3", 8, 6, 2)
    assert ops(fan) == ["Add", "MaxPool", "Add", "MaxPool", "Add"]
    assert list(fan.graph.node[0].input) == ["input", "input"]
    assert set(dl._node_models([(8, 6)], copies=(1,), int8=True)) - set(dl._node_models([(8, 6)], copies=(1,))) == {
        f"{dl.key(p, 8, 6)} distinct#1" for p in dl.NCHW_POOLS
    }


@pytest.mark.slow  # exports and quantizes 4 networks (about 80 s on 2 shared cores)
def test_pool_layouts_match_onnxruntime(tmp_path: Path) -> None:
    """Every pool's layout in onnxruntime's optimised graph of a quantized network is the predicted one."""
    from edgenas.cost.lut.timing import optimized_graph, quantize_network
    from edgenas.export.onnx import export_onnx
    from edgenas.spaces.darts import DartsNetwork

    archs = dl.check_archs(4, 3)
    for n, arch in enumerate(archs):
        assert isinstance(arch, DartsArch)
        path = export_onnx(DartsNetwork(arch, SHAPE).eval(), SHAPE.input_shape, tmp_path / f"n{n}.onnx")
        graph = optimized_graph(quantize_network(path, SHAPE.input_shape, n))
        seen = {}
        for node in graph.node:
            m = re.match(r"node_(max|avg)_pool2d(?:_(\d+))?", node.name)
            if m:
                last = [a.i for a in node.attribute if a.name == "channels_last"]
                seen[m.group(1), int(m.group(2) or 0)] = node.op_type == "NhwcMaxPool" or last == [1]
        if not any(seen.values()) and seen:
            pytest.skip("onnxruntime runs no quantized pool in NHWC on this CPU")
        count = {"max": 0, "avg": 0}
        for i, spec in enumerate(SPECS):
            layouts = dl.int8_pool_layouts(arch.cell(spec.kind), spec, i == len(SPECS) - 1)
            for op, j in arch.cell(spec.kind):
                if op in dl.POOLS:
                    name = (op[:3], count[op[:3]])
                    count[op[:3]] += 1
                    if name in seen:  # the others were computed once with an identical pool
                        assert seen[name] == layouts[op, j], (str(arch), i, op, j)
