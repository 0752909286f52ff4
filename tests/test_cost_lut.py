"""Per-op latency tables: file round trip, the documented sums, device profiles, the CLI.

Timings are machine-dependent, so the prediction rules are tested on a synthetic table
with known entries; a tiny real profile (width 8 at 8 px) checks the measuring side and
the CLI end to end, and onnxruntime's own optimised graphs, on whatever CPU runs the
tests, check the fusion record and the kernel counts built on it.
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
from edgenas.cost import lut
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
from edgenas.cost.lut.timing import optimized_graph
from edgenas.export.onnx import export_onnx
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Network
from edgenas.spaces.nb201.latency import (
    ASSUMED_FUSION,
    StageFusion,
    check_archs,
    fusion_keys,
    measure_fusion,
    stage_fusion,
)

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


def fake_table(
    widths: tuple[int, ...] = (4, 8), resolution: int = 12, fusion: dict[str, str] | None = None
) -> LatencyTable:
    """A table with made-up but plausible entries (ms) for every key the shapes need.

    `fusion`: per key of each shape's `fusion_keys`, the value of the same name (`PLAIN`:
    a CPU without the NCHWc layout); None: no record, as tables made before one was kept.
    """
    entries: dict[str, float] = {}
    for width in widths:
        shape = NetShape(width, 1, SHAPE.in_channels, resolution, SHAPE.num_classes)
        for c, h, w in stage_shapes(shape):
            for kernel in CELL_KERNELS:
                scale = c if kernel.startswith("conv") else 1  # convs grow with C_in too
                entries[cell_key(kernel, c, h, w)] = 1e-3 * (0.5 + _PER_ELEMENT_US[kernel] * scale * c * h * w / 1e3)
        for i, key in enumerate(frame_keys(shape).values()):
            entries[key] = 0.01 * (i + 1) * width
    record = {}
    if fusion is not None:
        for width in widths:
            shape = NetShape(width, 1, SHAPE.in_channels, resolution, SHAPE.num_classes)
            record.update({k: fusion[k.partition(":")[0]] for k in fusion_keys(shape)})
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
        fusion=record,
        name="fake",
    )


# A CPU without onnxruntime's NCHWc layout: ReLUs fold into convs, adds do not; the
# reductions' adds stay plain ops (what onnxruntime does with NCHWc disabled).
PLAIN = {"conv": "nchw", "avg_pool_3x3": "nchw", "stem": "nchw conv", "reduce": "nchw other"}


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
    assert json.loads(path.read_text())["schema_version"] == 1  # no fusion record: as tables were before
    recorded = fake_table(fusion=PLAIN)
    path = recorded.save(tmp_path / "rec.lut.json")
    assert LatencyTable.load(path) == recorded and json.loads(path.read_text())["schema_version"] == 2

    with pytest.raises(ConfigError, match=r"nope\.json: no such file"):
        LatencyTable.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"

    def refused(text: str, message: str) -> None:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            LatencyTable.load(bad)

    refused("{not json", r"bad\.json: not readable JSON")
    doc = table.to_dict()
    doc["entries"]["conv_1x1:8x12x12"] = "fast"
    refused(json.dumps(doc), r"bad\.json: not an edgenas latency table .*conv_1x1:8x12x12")
    refused(json.dumps({"kind": "something else"}), "not an edgenas latency table")
    doc = recorded.to_dict()
    doc["fusion"]["conv:8x12x12"] = "blocked"
    refused(json.dumps(doc), r"fusion 'conv:8x12x12' is 'blocked'")
    doc["fusion"] = {}  # schema 2 tables carry a record
    refused(json.dumps(doc), "fusion record is empty")


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


@pytest.mark.parametrize("space", lut.SPACES)
def test_every_latency_space_supplies_the_kernels(space: str) -> None:
    """`lut.SPACES` comes from the spaces registry; each such space's `latency.py` has what tables call."""
    from edgenas.spaces import SPACES

    assert space in SPACES.names()
    kernels = lut.latency_kernels(space)
    members = [m for m in vars(lut.LatencyKernels) if not m.startswith("_")]
    members += list(lut.LatencyKernels.__annotations__)
    from edgenas.cost.lut.table import KIT_KERNELS, OPTIONAL_KERNELS

    # every space has the required kernels and the split profiler (kits, INT8 tables); NB201 and DARTS all
    optional = set(OPTIONAL_KERNELS) - set(KIT_KERNELS)
    needed = members if space in ("nb201", "darts") else [m for m in members if m not in optional]
    assert needed and all(hasattr(kernels, m) for m in needed), [m for m in needed if not hasattr(kernels, m)]
    with pytest.raises(ConfigError, match="no latency kernels for the 'nospace' space; latency tables exist for nb201"):
        lut.latency_kernels("nospace")


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


FIXTURES = Path(__file__).parent / "fixtures" / "lut"


def test_tables_without_a_fusion_record_keep_todays_sums(tmp_path: Path) -> None:
    """A table written before the fusion record (schema 1) predicts exactly as the code that wrote it did.

    The fixture table and its predictions were written by edgenas 02491f0 (`cost/lut.py`);
    such tables are read with the x86 NCHWc fusion that code assumed (`ASSUMED_FUSION`).
    """
    old = LatencyTable.load(FIXTURES / "v1_table.lut.json")
    assert old.fusion == {} and stage_fusion(old.fusion, SHAPE) == ASSUMED_FUSION
    expected = json.loads((FIXTURES / "v1_predictions.json").read_text())["cells"]
    for cells, want in expected.items():
        shape = NetShape(8, int(cells), 1, 8, 10)
        assert {a: old.predict_ms(a, shape) for a in want["predict_ms"]} == want["predict_ms"]
        fixed, terms = old.nb201_terms(shape)
        assert fixed == want["fixed_ms"] and np.allclose(terms, want["terms"], rtol=1e-12, atol=0)
    # saved again, it stays a schema 1 table without a record
    doc = json.loads(old.save(tmp_path / "again.lut.json").read_text())
    assert doc["schema_version"] == 1 and "fusion" not in doc
    # the record a profile writes on an NCHWc CPU whose block divides every width gives the same sums
    table = fake_table()
    nchwc = fake_table(
        fusion={"conv": "nchwc", "avg_pool_3x3": "nchwc", "stem": "nchwc conv", "reduce": "nchwc conv+add"}
    )
    assert stage_fusion(nchwc.fusion, SHAPE) == ASSUMED_FUSION
    arch = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    assert nchwc.predict_ms(arch, SHAPE) == table.predict_ms(arch, SHAPE)
    doc["fusion"] = {"conv:8x8x8": "nchw"}  # a record in a schema 1 file is a contradiction
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="schema_version 1 table has no fusion record"):
        LatencyTable.load(tmp_path / "bad.json")


def test_fusion_record_changes_the_sums() -> None:
    """Where onnxruntime runs no NCHWc, adds stay plain kernels; where pools are not blocked, adds with them too."""
    plain = fake_table(fusion=PLAIN)
    base = frame(plain, SHAPE)
    # node 3 = x0 + conv(node 1): the add is a plain kernel; node 1's ReLU still folds into conv a
    arch = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    expect = base + stage_sum(plain, SHAPE, {"relu": 1, "conv_3x3": 2, "fused_relu": 1, "add": 1})
    assert plain.predict_ms(arch, SHAPE) == pytest.approx(expect)
    # one conv edge from x0: its ReLU folds into the stem conv, not into the reductions' plain adds
    one_conv = NB201Arch.parse("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")
    first = stage_shapes(SHAPE)[0]
    expect = base + stage_sum(plain, SHAPE, {"conv_1x1": 1, "relu": 1})
    expect += plain.entries[cell_key("fused_relu", *first)] - plain.entries[cell_key("relu", *first)]
    assert plain.predict_ms(one_conv, SHAPE) == pytest.approx(expect)

    # node 2 = pool(x0) + conv(node 1): folds when pools are blocked, not when only convs are
    ops = NB201Arch.parse("|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|").ops
    counts = dict(zip(CELL_KERNELS, stage_kernels(ops, 1, 0, StageFusion(input="conv")), strict=True))
    assert counts["fused_add"] == 1 and counts["add"] == 0
    counts = dict(
        zip(CELL_KERNELS, stage_kernels(ops, 1, 0, StageFusion(pool_blocked=False, input="conv")), strict=True)
    )
    assert counts["fused_add"] == 0 and counts["add"] == 1
    assert stage_kernels(ops, 1, 0) == stage_kernels(ops, 1, 0, ASSUMED_FUSION[0])


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
def _ort_kernels(graph: onnx.GraphProto) -> collections.Counter:
    """Kernels in an optimised graph: convs (plain, NCHWc or fused), ReLUs, Adds, pools, folded adds/ReLUs."""
    counts: collections.Counter = collections.Counter()
    for node in graph.node:
        counts[node.op_type] += 1
        if node.op_type in ("Conv", "FusedConv"):
            counts["conv"] += 1
            counts["sum"] += len(node.input) > 3 and bool(node.input[3])
            counts["activation"] += any(a.name == "activation" for a in node.attribute)
    return counts


def _ends_in_one_conv(arch: NB201Arch) -> bool:
    """Node 3 fed by a single conv edge: onnxruntime then also folds the head's BN into it (not modelled)."""
    into_out = [k for k in arch.live_edges() if EDGES[k][0] == 3]
    return len(into_out) == 1 and arch.ops[into_out[0]].startswith("nor_conv")


CHECKED_SHAPE = NetShape(8, 2, 1, 8, 10)  # stages 8, 16, 32 channels: blocked, partly blocked or plain by CPU


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The identity-cell network and a few others of `CHECKED_SHAPE`, exported once."""
    folder = tmp_path_factory.mktemp("nets")
    archs = [
        NB201Arch.parse(
            "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
        )
    ]
    archs += [a for a in check_archs(12, seed=3) if not _ends_in_one_conv(a)][:3]
    paths = {}
    for i, arch in enumerate([lut.latency_kernels("nb201").REFERENCE, *archs]):
        net = NB201Network(arch, CHECKED_SHAPE)
        paths[str(arch)] = export_onnx(net, CHECKED_SHAPE.input_shape, folder / f"n{i}.onnx", dynamic_batch=False)
    return paths


@pytest.mark.parametrize("disabled", [(), ("NchwcTransformer",)], ids=["this-cpu", "without-nchwc"])
def test_stage_kernels_match_onnxruntime(exported: dict[str, Path], tmp_path: Path, disabled: tuple[str, ...]) -> None:
    """The fusion record read on this CPU, and the kernels counted with it, are what onnxruntime runs here.

    Also as a CPU without the NCHWc layout would (the transformer disabled). The frame is
    taken out by subtracting the identity-cell network's kernels.
    """
    shape = CHECKED_SHAPE
    record = measure_fusion(shape, workdir=tmp_path, disabled_optimizers=disabled)
    assert set(record) == set(fusion_keys(shape))
    if disabled:
        assert all(v.startswith("nchw") and not v.startswith("nchwc") for v in record.values())
    fusions = stage_fusion(record, shape)
    graphs = {
        text: _ort_kernels(optimized_graph(path, disabled_optimizers=disabled)) for text, path in exported.items()
    }
    base = graphs.pop(str(lut.latency_kernels("nb201").REFERENCE))
    for text, got in graphs.items():
        arch = NB201Arch.parse(text)
        k: collections.Counter = collections.Counter()
        for s in range(3):
            k.update(dict(zip(CELL_KERNELS, stage_kernels(arch.ops, shape.cells, s, fusions[s]), strict=True)))
        model = {
            "conv": k["conv_1x1"] + k["conv_3x3"],
            "Relu": k["relu"],
            "Add": k["add"],
            "AveragePool": k["avg_pool_3x3"],
            "sum": k["fused_add"] + k["fused_add_copy"],
            "activation": k["fused_relu"],
        }
        assert {key: got[key] - base[key] for key in model} == model, f"{text} with {record}"


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
    # the fusion record covers the shape and says what onnxruntime does here
    assert set(fusion_keys(shape)) <= set(table.fusion)
    assert table.fusion == measure_fusion(shape)


def test_profile_device_check(tiny_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "check.json"
    argv = ["profile-device", "--check", str(tiny_table), "--n", "3", "--width", "8", "--repeats", "20"]
    assert run([*argv, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "Kendall" in printed and "Spearman" in printed
    res = json.loads(out.read_text())
    assert res["n"] == 3 and len(res["rows"]) == 3 and res["same_machine"] and res["fusion"] == "recorded"
    assert {"mape_pct", "kendall_tau", "spearman_rho", "reference"} <= set(res)
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in res["rows"])
    assert out.with_suffix(".png").stat().st_size > 0


def test_a_kit_needs_the_split_profiler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every latency space has it now; a space without `profile_graphs` & co. is refused in one line."""
    from types import SimpleNamespace

    from edgenas.cost.lut import table as table_module

    monkeypatch.setattr(table_module, "latency_kernels", lambda space: SimpleNamespace(profile_spec=None))
    with pytest.raises(ConfigError, match="'toy' space's latency table is profiled in-process only") as e:
        table_module.kit_kernels("toy")
    assert "profile_graphs, profile_fusion, profile_entries" in str(e.value) and "\n" not in str(e.value)


MOBILE_ARGS = ["profile-device", "--name", "x", "--resolution", "8", "--space", "mobile"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["profile-device", "--resolution", "8"], "needs --name NAME"),
        ([*MOBILE_ARGS, "--kit", "KIT", "--check"], "check with --import FILE --check"),
        (["profile-device", "--check", "/nonexistent/t.lut.json"], "/nonexistent/t.lut.json: no such file"),
    ],
)
def test_profile_device_user_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    argv = [str(tmp_path / "kit") if a == "KIT" else a for a in argv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: ") and needle in err and "\n" not in err
