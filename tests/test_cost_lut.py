"""Per-op latency tables: file round trip, the documented sums, device profiles, the CLI.

Timings are machine-dependent, so the prediction rules are tested on a synthetic table
with known entries; a tiny real profile (width 8 at 8 px) checks the measuring side and
the CLI end to end, and onnxruntime's own optimised graph checks the fusion rules.
"""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgenas.cli import run
from edgenas.core.device import load_device
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.budget_check import measure_for_device
from edgenas.cost.lut import (
    CELL_KERNELS,
    LatencyTable,
    cell_key,
    frame_keys,
    latency_table_for,
    required_keys,
    stage_kernels,
    stage_shapes,
)
from edgenas.export.onnx import export_onnx
from edgenas.spaces.nb201 import OPS, NB201Arch, NB201Network

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=12, num_classes=10)
IDENTITY = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
# A cost model shaped like real tables: convs dominate, elementwise ops are cheap.
_PER_ELEMENT_US = {
    "conv_1x1": 1,
    "conv_3x3": 9,
    "avg_pool_3x3": 1.5,
    "relu": 0.2,
    "add": 0.3,
    "fused_add": 0.01,
    "fused_add_copy": 0.5,
    "fused_relu": 0.02,
}


def fake_table(widths: tuple[int, ...] = (4, 8), resolution: int = 12) -> LatencyTable:
    """A table with made-up but plausible entries (ms) for every key the shapes need."""
    entries: dict[str, float] = {}
    for width in widths:
        shape = NetShape(width, 1, SHAPE.in_channels, resolution, SHAPE.num_classes)
        for c, h, w in stage_shapes(shape):
            for kernel in CELL_KERNELS:
                scale = c if kernel.startswith("conv") else 1  # convs grow with C_in too
                entries[cell_key(kernel, c, h, w)] = 1e-3 * (0.5 + _PER_ELEMENT_US[kernel] * scale * c * h * w / 1e3)
        for i, key in enumerate(frame_keys(shape).values()):
            entries[key] = 0.01 * (i + 1) * width
    return LatencyTable(
        space="nb201",
        resolution=resolution,
        in_channels=SHAPE.in_channels,
        num_classes=SHAPE.num_classes,
        widths=list(widths),
        threads=1,
        warmup=2,
        repeats=20,
        overhead_ms=0.005,
        entries=entries,
        name="fake",
    )


def stage_sum(table: LatencyTable, shape: NetShape, kernels: dict[str, int]) -> float:
    """Sum over the 3 stages of `count * entry` for the given kernels."""
    return sum(n * table.entries[cell_key(k, *dims)] for dims in stage_shapes(shape) for k, n in kernels.items())


def frame(table: LatencyTable, shape: NetShape) -> float:
    return table.overhead_ms + sum(table.entries[k] for k in frame_keys(shape).values())


# --------------------------------------------------------------------------- file
def test_round_trip_and_load_errors(tmp_path: Path) -> None:
    table = fake_table()
    path = table.save(tmp_path / "dev.lut.json")
    back = LatencyTable.load(path)
    assert back == table and back.path == path
    assert json.loads(path.read_text())["schema_version"] == 1

    with pytest.raises(ConfigError, match=r"nope\.json: no such file"):
        LatencyTable.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not readable JSON"):
        LatencyTable.load(bad)
    doc = table.to_dict()
    doc["entries"]["conv_1x1:8x12x12"] = "fast"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"bad\.json: not an edgenas latency table .*conv_1x1:8x12x12"):
        LatencyTable.load(bad)
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(ConfigError, match="not an edgenas latency table"):
        LatencyTable.load(bad)


def test_covers_and_missing_shape_says_how_to_rerun() -> None:
    table = fake_table(widths=(8,))
    assert table.covers(SHAPE) and table.covers(NetShape(8, 5, 1, 12, 10))  # any number of cells
    assert not table.covers(NetShape(16, 1, 1, 12, 10))
    assert not table.covers(NetShape(8, 1, 3, 12, 10))
    arch = NB201Arch.parse(IDENTITY)
    with pytest.raises(ConfigError) as info:
        table.predict_ms(arch, NetShape(16, 1, 1, 12, 10))
    msg = str(info.value)
    assert "--widths 8,16" in msg and "--resolution 12" in msg and "edgenas profile-device" in msg
    assert "\n" not in msg
    with pytest.raises(ConfigError, match="--resolution 32 --in-channels 3"):
        table.nb201_terms(NetShape(8, 1, 3, 32, 10))
    table.entries.pop(required_keys(SHAPE)[-1])
    assert not table.covers(SHAPE)


# --------------------------------------------------------------------------- the sums
def test_predict_ms_adds_up_as_documented() -> None:
    table = fake_table()
    base = frame(table, SHAPE)
    assert table.predict_ms(NB201Arch.parse(IDENTITY), SHAPE) == pytest.approx(base)

    # one conv edge on the only path: its conv, and its ReLU folded into the conv before the cell
    one_conv = NB201Arch.parse("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    expect = base + stage_sum(table, SHAPE, {"conv_1x1": 1, "fused_relu": 1})
    assert table.predict_ms(one_conv, SHAPE) == pytest.approx(expect)

    # node 1 = conv(x0); node 3 = x0 + conv(node 1): x0 is read twice, so its ReLU is a kernel;
    # node 1's ReLU folds into conv a; the add folds into conv b, in place (x0 is not read later)
    arch = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    expect = base + stage_sum(table, SHAPE, {"relu": 1, "conv_3x3": 2, "fused_relu": 1, "fused_add": 1})
    assert table.predict_ms(arch, SHAPE) == pytest.approx(expect)

    # all avg_pool: the pools of one node and node 3's leading add are shared (CSE): 3 pools, 2 adds
    pools = NB201Arch(("avg_pool_3x3",) * 6)
    assert table.predict_ms(pools, SHAPE) == pytest.approx(
        base + stage_sum(table, SHAPE, {"avg_pool_3x3": 3, "add": 2})
    )

    # cells repeat: two cells cost more than one, less than the frame plus twice the cells
    two = NetShape(8, 2, 1, 12, 10)
    assert table.predict_ms(arch, SHAPE) < table.predict_ms(arch, two) <= base + 2 * (expect - base) + 1e-12
    # arch strings are accepted too
    assert table.predict_ms(str(arch), SHAPE) == table.predict_ms(arch, SHAPE)


def test_adding_a_conv_edge_adds_its_entry() -> None:
    """A conv edge joining a node that another conv already feeds: its conv, its folded add, nothing else."""
    table = fake_table()
    before = NB201Arch.parse("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|")
    after = NB201Arch.parse("|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_1x1~1|none~2|")
    step = table.predict_ms(after, SHAPE) - table.predict_ms(before, SHAPE)
    # x0 now feeds two conv edges (one shared ReLU, still folded into the block before); node 3 =
    # conv_3x3(x0) + conv_1x1(n1): the add folds into the conv_3x3, in place into the other's output
    assert step == pytest.approx(stage_sum(table, SHAPE, {"conv_3x3": 1, "fused_add": 1}))


def test_nb201_terms_track_predict_ms() -> None:
    table = fake_table()
    for shape in (SHAPE, NetShape(4, 2, 1, 12, 10)):
        fixed, terms = table.nb201_terms(shape)
        assert terms.shape == (3, len(OPS)) and np.all(terms[:, 0] == 0)
        assert fixed == pytest.approx(frame(table, shape))
        # conv 3x3 costs most, at every stage
        assert np.all(terms[:, OPS.index("nor_conv_3x3")] > terms[:, OPS.index("nor_conv_1x1")])

        def linear(arch: NB201Arch, fixed: float = fixed, terms: np.ndarray = terms, shape: NetShape = shape) -> float:
            return fixed + shape.cells * sum(terms[s, OPS.index(op)] for s in range(3) for op in arch.ops)

        for text in (
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
            "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
            "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|",
        ):
            arch = NB201Arch.parse(text)
            assert linear(arch) == pytest.approx(table.predict_ms(arch, shape), rel=0.05), text


# --------------------------------------------------------------------------- onnxruntime's own graph
def _ort_kernels(path: Path) -> collections.Counter:
    """Kernels in onnxruntime's optimised graph: convs, plain ReLUs/Adds, pools, folded adds/ReLUs."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(path.with_suffix(".opt.onnx"))
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    counts: collections.Counter = collections.Counter()
    for node in onnx.load(opts.optimized_model_filepath).graph.node:
        counts[node.op_type] += 1
        if node.op_type == "Conv":
            counts["sum"] += len(node.input) > 3 and bool(node.input[3])
            counts["activation"] += any(a.name == "activation" for a in node.attribute)
    return counts


def test_stage_kernels_match_onnxruntime(tmp_path: Path) -> None:
    """The fusion rules against onnxruntime's optimised graph (x86 NCHWc: channels a multiple of 8)."""
    shape = NetShape(8, 2, 1, 8, 10)
    arch = NB201Arch.parse(
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    )
    path = export_onnx(NB201Network(arch, shape), shape.input_shape, tmp_path / "net.onnx", dynamic_batch=False)
    got = _ort_kernels(path)
    if not any(n.domain == "com.microsoft.nchwc" for n in onnx.load(path.with_suffix(".opt.onnx")).graph.node):
        pytest.skip("onnxruntime does not use the NCHWc layout on this CPU")
    k = collections.Counter()
    for s in range(3):
        k.update(dict(zip(CELL_KERNELS, stage_kernels(arch.ops, shape.cells, s), strict=True)))
    # the frame: stem conv; per reduction 3 convs, 1 ReLU, 1 pool, its add and a ReLU folded; head BN as a conv
    assert got["Conv"] == k["conv_1x1"] + k["conv_3x3"] + 1 + 2 * 3 + 1
    assert got["Relu"] == k["relu"] + 2
    assert got["Add"] == k["add"]
    assert got["AveragePool"] == k["avg_pool_3x3"] + 2
    assert got["sum"] == k["fused_add"] + k["fused_add_copy"] + 2
    assert got["activation"] == k["fused_relu"] + 2 + 1


# --------------------------------------------------------------------------- device profiles
def write_profile(folder: Path, latency: str) -> Path:
    p = folder / "dev.yaml"
    p.write_text(f"name: dev\nbudgets:\n  max_latency_ms: 5\nlatency:\n{latency}")
    return p


def test_profile_with_table_predicts_latency(tmp_path: Path) -> None:
    table = fake_table(widths=(8,))
    (tmp_path / "tables").mkdir()
    table.save(tmp_path / "tables" / "dev.lut.json")
    profile = load_device(write_profile(tmp_path, "  source: table\n  table: tables/dev.lut.json\n"))
    assert Path(profile.latency.table) == tmp_path / "tables" / "dev.lut.json"
    assert latency_table_for(profile) == table
    arch = NB201Arch.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|")
    model = NB201Network(arch, SHAPE)
    cost = measure_for_device(model, SHAPE.input_shape, profile)
    assert cost.latency_ms == pytest.approx(table.predict_ms(arch, SHAPE))
    assert cost.params > 0 and cost.flops > 0
    assert latency_table_for(load_device(write_profile(tmp_path, "  threads: 1\n"))) is None


@pytest.mark.parametrize(
    ("latency", "needle"),
    [
        ("  source: table\n", "latency.source is 'table' but latency.table is not set"),
        ("  source: table\n  table: missing.lut.json\n", "missing.lut.json: no such file"),
        ("  source: tabel\n", "latency.source"),
    ],
)
def test_bad_table_profiles(tmp_path: Path, latency: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_device(write_profile(tmp_path, latency))
    assert "dev.yaml" in str(info.value) and needle in str(info.value)


def test_table_profile_rejects_other_models(tmp_path: Path) -> None:
    from torch import nn

    fake_table(widths=(8,)).save(tmp_path / "t.json")
    profile = load_device(write_profile(tmp_path, "  source: table\n  table: t.json\n"))
    with pytest.raises(ConfigError, match="not one"):
        measure_for_device(nn.Sequential(nn.Flatten(), nn.Linear(144, 10)), (1, 12, 12), profile)


# --------------------------------------------------------------------------- real profile + CLI
@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`edgenas profile-device` on a tiny shape, through the CLI."""
    out = tmp_path_factory.mktemp("lut") / "tiny.lut.json"
    argv = ["profile-device", "--name", "tiny", "--resolution", "8", "--widths", "8", "--warmup", "2"]
    assert run([*argv, "--repeats", "40", "--out", str(out), "--quiet"]) == 0
    return out


def test_profile_device_writes_a_full_table(tiny_table: Path) -> None:
    table = LatencyTable.load(tiny_table)
    shape = NetShape(8, 1, 1, 8, 10)
    assert table.covers(shape) and table.widths == [8] and table.name == "tiny"
    assert table.repeats == 40 and table.threads == 1 and table.onnxruntime == ort.__version__
    assert all(math.isfinite(v) for v in table.entries.values()) and table.overhead_ms > 0
    # whole-graph timings are positive; the frame adds up to the measured identity-cell network
    assert table.entries[cell_key("conv_3x3", 8, 8, 8)] > 0
    assert table.predict_ms(NB201Arch.parse(IDENTITY), shape) == pytest.approx(table.graphs["frame3@8"])


def test_profile_device_check(tiny_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "check.json"
    argv = ["profile-device", "--check", str(tiny_table), "--n", "3", "--width", "8", "--repeats", "20"]
    assert run([*argv, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "Kendall" in printed and "Spearman" in printed
    res = json.loads(out.read_text())
    assert res["n"] == 3 and len(res["rows"]) == 3 and res["same_machine"]
    assert {"mape_pct", "kendall_tau", "spearman_rho", "reference"} <= set(res)
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in res["rows"])
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile-device", "--resolution", "8"], "needs --name NAME"),
        (["profile-device", "--name", "x", "--resolution", "8", "--space", "darts"], "'darts'"),
        (["profile-device", "--check", "/nonexistent/t.lut.json"], "/nonexistent/t.lut.json: no such file"),
    ],
)
def test_profile_device_user_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: ") and needle in err and "\n" not in err
