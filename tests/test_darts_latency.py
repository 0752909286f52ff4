"""Latency tables of the DARTS space: keys, the documented sums, position terms, files, the CLI.

Timings depend on the machine, so the sums are tested on hand-made tables with known
entries; onnxruntime's optimised graphs, on whatever CPU runs the tests, check the kernel
replay (`cell_kernels`); a tiny real profile checks the measuring side end to end (slow).
"""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgenas.cli import run
from edgenas.core.device import Budgets
from edgenas.core.errors import ArchError, ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost import lut
from edgenas.cost.lut import LatencyTable
from edgenas.cost.lut.timing import optimized_graph
from edgenas.export.onnx import export_onnx
from edgenas.spaces.darts import DARTS_V2, DartsArch, DartsNetwork, DartsSpace
from edgenas.spaces.darts import latency as dl
from edgenas.spaces.darts.network import cell_layout

SPACE = DartsSpace()
SHAPE = NetShape(width=8, cells=5, in_channels=1, resolution=12, num_classes=10)
NONADDITIVE = ("relu", "fused_relu", "add", "fused_add", "fused_add_copy", "fr_input")
# A CPU without NCHWc: nothing blocked, a factorized reduction's BN stays a BatchNormalization.
PLAIN = {"conv": "nchw", "max_pool_3x3": "nchw", "avg_pool_3x3": "nchw", "skip_connect": "nchw other"}
BLOCKED = {"conv": "nchwc", "max_pool_3x3": "nchwc", "avg_pool_3x3": "nchwc", "skip_connect": "nchwc conv"}


def record_for(shape: NetShape, values: dict[str, str]) -> dict[str, str]:
    return {k: values[k.partition(":")[0].partition("/")[0]] for k in dl.fusion_keys(shape)}


def fake_table(shapes: tuple[NetShape, ...] = (SHAPE,), fusion: dict[str, str] = BLOCKED, **zero: bool) -> LatencyTable:
    """A table with distinct made-up entries (ms) for every key the shapes need, the shared and folded
    kernels a tenth of the ops (as in real tables); `zero[kernel]` sets that kernel's entries to 0."""
    rng = np.random.default_rng(5)
    entries: dict[str, float] = {}
    record: dict[str, str] = {}
    for shape in shapes:
        for k in dl.required_keys(shape):
            kernel = k.partition(":")[0].partition("/")[0]
            scale = 0.0 if zero.get(kernel) else 0.1 if kernel in NONADDITIVE else 1.0
            entries.setdefault(k, round(scale * float(rng.uniform(1e-3, 5e-2)), 7))
        record.update(record_for(shape, fusion))
    first = shapes[0]
    return LatencyTable(
        space="darts",
        resolution=first.resolution,
        in_channels=first.in_channels,
        num_classes=first.num_classes,
        widths=sorted({s.width for s in shapes}),
        threads=1,
        warmup=2,
        repeats=20,
        overhead_ms=0.004,
        entries=entries,
        fusion=record,
        name="fake",
    )


def archs(n: int, seed: int = 0) -> list[DartsArch]:
    return SPACE.sample_distinct(n, numpy_rng(seed, "test-darts-lut"))  # type: ignore[return-value]


# --------------------------------------------------------------------------- keys
@pytest.mark.parametrize(
    "shape",
    [SHAPE, NetShape(4, 1, 1, 12, 10), NetShape(4, 2, 3, 12, 10), NetShape(6, 8, 1, 14, 7), NetShape(16, 10, 1, 28)],
)
def test_keys_cover_every_op_at_every_shape_the_network_runs(shape: NetShape) -> None:
    """Every op module of built networks (hooked: its type, input shape, stride) has its entry,
    every kernel the replay counts is an entry, and the profile's three-stage shapes hold them."""
    required = set(dl.required_keys(shape))
    assert len(required) == len(dl.required_keys(shape))
    nodes, inputs = dl.stage_shapes(shape.width, shape.resolution)
    assert set(dl.node_shapes(shape)) <= set(nodes) and set(dl.input_shapes(shape)) <= set(inputs)
    assert set(dl.fusion_keys(shape)) == set(record_for(shape, BLOCKED))
    for arch in [dl.REFERENCE, SPACE.parse(DARTS_V2), *archs(6)]:
        seen = _op_keys(arch, shape)
        assert seen and set(seen) <= required, sorted(set(seen) - required)
        for fusion in (BLOCKED, PLAIN):
            record = tuple(record_for(shape, fusion).items())
            for spec in cell_layout(shape):
                counted = {k for k, _n in dl.cell_kernels(arch.cell(spec.kind), spec, record)}
                assert counted <= required, sorted(counted - required)
    assert set(dl.frame_keys(shape)) <= required


def _op_keys(arch: DartsArch, shape: NetShape) -> list[str]:
    """The entry of every op module of the built network, from its type and stride and the input it
    sees in a forward pass (a stride-1 skip, the identity, has none)."""
    net = DartsNetwork(arch, shape).eval()
    seen: list[str] = []

    def hook(op: str, stride: int):
        def record(_m: nn.Module, args: tuple, _out: object) -> None:
            if not (op == "skip_connect" and stride == 1):
                seen.append(dl.key(op, args[0].shape[1], args[0].shape[2], stride))

        return record

    for cell, spec in zip(net.cells, cell_layout(shape), strict=True):
        for (op, _j), module in zip(arch.cell(spec.kind), cell.ops, strict=True):
            module.register_forward_hook(hook(op, _stride(module)))
    net(torch.zeros(1, *shape.input_shape))
    return seen


def _stride(module: nn.Module) -> int:
    if isinstance(module, nn.Identity):
        return 1
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return int(module.stride if isinstance(module.stride, int) else module.stride[0])
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[0].stride[0])


# --------------------------------------------------------------------------- the sums
def test_prediction_is_the_sum_of_the_ops_entries_and_the_frame() -> None:
    """With the non-additive kernels at 0, a prediction is overhead + stem + cell frames + head + each op's
    body at its position (a pool of a state read twice computed once), walked here from the genotype."""
    table = fake_table(**dict.fromkeys(NONADDITIVE, True))
    for arch in [SPACE.parse(DARTS_V2), *archs(10)]:
        total = table.overhead_ms + table.entries[dl.stem_key(SHAPE)] + table.entries[dl.head_key(SHAPE)]
        for spec in cell_layout(SHAPE):
            total += table.entries[dl.cell_key(spec)]
            pairs = arch.cell(spec.kind)
            for m, (op, j) in enumerate(pairs):
                if op in dl.POOLS and (op, j) in pairs[:m]:
                    continue  # the same pool of one state: once
                if spec.reduction and j < 2:
                    total += table.entries[dl.key(op, spec.c, spec.side, 2)]
                elif op != "skip_connect":
                    total += table.entries[dl.key(op, spec.c, spec.side_out)]
        assert table.predict_ms(arch, SHAPE) == pytest.approx(total, rel=1e-12)
        assert table.predict_ms(str(arch), SHAPE) == table.predict_ms(arch, SHAPE)


def test_cell_kernels_of_hand_counted_cells() -> None:
    """DARTS-V2's normal cell and a reducing cell with factorized reductions, counted by hand."""
    shape = NetShape(8, 5, 1, 12, 10)
    normal, reduce = cell_layout(shape)[0], cell_layout(shape)[1]
    blocked = tuple(record_for(shape, BLOCKED).items())
    k = dl.key
    # s0' is read by 2 sep convs (one shared ReLU) and 2 skips: a plain ReLU; s1' by 3 sep convs only:
    # their ReLU folds into its preprocessing conv; node 2 by a dil conv and the concatenation.
    # Node adds: two seps (in place) twice; skip(s0') + sep into a copy (s0' read later); the last in place.
    want = {
        k("sep_conv_3x3", 8, 12): 5,
        k("dil_conv_3x3", 8, 12): 1,
        k("relu", 8, 12): 2,
        k("fused_relu", 8, 12): 1,
        k("fused_add", 8, 12): 3,
        k("fused_add_copy", 8, 12): 1,
    }
    assert dict(dl.cell_kernels(SPACE.parse(DARTS_V2).normal, normal, blocked)) == want
    cell = (
        ("skip_connect", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("skip_connect", 0),
        ("max_pool_3x3", 1), ("sep_conv_3x3", 2), ("avg_pool_3x3", 2), ("dil_conv_5x5", 4),
    )  # fmt: skip
    arch = DartsArch(SPACE.parse(DARTS_V2).normal, cell)
    c, h, o = 16, 12, 6  # the reduction cell: width 16 on 12x12 inputs, nodes at 6x6
    # three factorized reductions sharing two input slicings, one max pool (shared by two nodes);
    # s0' only feeds the reductions' ReLU (folded), s1' a ReLU and the pool (plain); nodes 2 and 4
    # feed convs and the concatenation (plain ReLUs); the pool is read again after node 3 (a copy)
    want = {
        k("skip_connect", c, h, 2): 3,
        k("fr_input", c, h, 2): 2,
        k("max_pool_3x3", c, h, 2): 1,
        k("sep_conv_3x3", c, o): 1,
        k("avg_pool_3x3", c, o): 1,
        k("dil_conv_5x5", c, o): 1,
        k("fused_relu", c, h): 1,
        k("relu", c, h): 1,
        k("relu", c, o): 2,
        k("fused_add", c, o): 3,
        k("fused_add_copy", c, o): 1,
    }
    assert dict(dl.cell_kernels(arch.reduce, reduce, blocked)) == want
    # without NCHWc no add folds (ReLUs still do)
    plain = tuple(record_for(shape, PLAIN).items())
    got = dict(dl.cell_kernels(arch.reduce, reduce, plain))
    assert got.pop(k("add", c, o)) == 4
    assert got == {n: v for n, v in want.items() if "fused_add" not in n}


def test_position_terms_are_exact_when_the_kernels_add_up_and_close_otherwise() -> None:
    """At one-hot genotypes fixed + Σ terms[point, op] is the prediction: exactly with the shared and
    folded kernels and the pools (shared per state) at 0, within a few percent with all entries set."""
    additive = fake_table(**dict.fromkeys((*NONADDITIVE, *dl.POOLS), True))
    for table, tol, mean in ((additive, 1e-9, 1e-9), (fake_table(), 0.08, 0.02)):
        fixed, terms = table.position_terms(SHAPE)
        assert terms.shape == (len(SPACE.choice_points()), len(SPACE.choice_ops)) and not terms[:, 0].any()
        assert fixed == pytest.approx(dl.frame_ms(table, SHAPE))
        errors = []
        for arch in archs(40, seed=1):
            index = SPACE.encode(arch)
            estimate = fixed + terms[np.arange(len(index)), index].sum()
            errors.append(abs(estimate - table.predict_ms(arch, SHAPE)) / table.predict_ms(arch, SHAPE))
        assert max(errors) < tol and np.mean(errors) < mean, (max(errors), np.mean(errors))
    latency = SPACE.cost_terms(Budgets(max_latency_ms=1.0), SHAPE, table)["max_latency_ms"]
    assert latency.kind == "latency_ms" and latency.fixed == fixed and np.array_equal(latency.weights, terms)


# --------------------------------------------------------------------------- file and validation
def test_darts_tables_load_validate_and_say_how_to_extend(tmp_path: Path) -> None:
    assert "darts" in lut.SPACES and lut.latency_kernels("darts") is dl
    table = fake_table()
    path = table.save(tmp_path / "t.lut.json")
    loaded = LatencyTable.load(path)
    assert loaded.space == "darts" and loaded.entries == table.entries and loaded.fusion == table.fusion
    assert loaded.predict_ms(DARTS_V2, SHAPE) == table.predict_ms(DARTS_V2, SHAPE)
    doc = json.loads(path.read_text())
    doc["fusion"][dl.key("conv", 8, 12)] = "blocked"
    (tmp_path / "bad.lut.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="fusion 'conv:8x12x12' is 'blocked'"):
        LatencyTable.load(tmp_path / "bad.lut.json")
    with pytest.raises(ArchError, match="predicts DARTS genotypes"):
        table.predict_ms(123, SHAPE)
    with pytest.raises(ArchError):
        table.predict_ms("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", SHAPE)
    deeper = NetShape(8, 8, 1, 12, 10)
    assert not table.covers(deeper) and table.covers(SHAPE)
    with pytest.raises(ConfigError, match=r"lacks \d+ entries, e.g. .*_cell:.*--widths 8 --cells 8 --threads 1"):
        table.predict_ms(DARTS_V2, deeper)
    assert fake_table((SHAPE, deeper)).covers(deeper)


# --------------------------------------------------------------------------- against onnxruntime
CHECKED = NetShape(8, 4, 1, 12, 10)  # 8 channels: convs blocked and pools not on AVX-512 machines


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("darts-nets")
    nets = [dl.REFERENCE, SPACE.parse(DARTS_V2), *archs(3, seed=4)]
    return {
        str(a): export_onnx(
            DartsNetwork(a, CHECKED).eval(), CHECKED.input_shape, folder / f"n{i}.onnx", dynamic_batch=False
        )
        for i, a in enumerate(nets)
    }


def _ort_kernels(graph: onnx.GraphProto) -> collections.Counter:
    got: collections.Counter = collections.Counter()
    for n in graph.node:
        if n.op_type in ("Conv", "FusedConv"):
            got["Conv"] += 1
            got["activation"] += any(a.name == "activation" for a in n.attribute) or n.op_type == "FusedConv"
            got["sum"] += len(n.input) > 3 and bool(n.input[3])
        else:
            got[n.op_type] += 1
    return got


ORT_NAMES = {
    "relu": "Relu",
    "fused_relu": "activation",
    "add": "Add",
    "fused_add": "sum",
    "fused_add_copy": "sum",
    "max_pool_3x3": "MaxPool",
    "avg_pool_3x3": "AveragePool",
}


@pytest.mark.slow  # exporting the networks takes about 30 s on 2 shared cores
@pytest.mark.parametrize("disabled", [(), ("NchwcTransformer",)], ids=["this-cpu", "without-nchwc"])
def test_cell_kernels_match_onnxruntime(exported: dict[str, Path], tmp_path: Path, disabled: tuple[str, ...]) -> None:
    """The fusion record read on this CPU, and the kernels the replay counts with it, are what onnxruntime
    runs here (and as a CPU without NCHWc would); the frame is taken out with the cheapest genotype's network."""
    record = dl.measure_fusion(CHECKED, workdir=tmp_path, disabled_optimizers=disabled)
    assert set(record) == set(dl.fusion_keys(CHECKED))
    if disabled:
        assert all(v.split()[0] == "nchw" for v in record.values())
    items = tuple(record.items())
    graphs = {text: _ort_kernels(optimized_graph(p, disabled_optimizers=disabled)) for text, p in exported.items()}

    def model(arch: DartsArch) -> collections.Counter:
        got: collections.Counter = collections.Counter()
        for spec in cell_layout(CHECKED):
            for entry, n in dl.cell_kernels(arch.cell(spec.kind), spec, items):
                kernel = entry.partition(":")[0]
                if kernel.startswith("sep_conv"):
                    got.update({"Conv": 4 * n, "activation": n})  # its inner ReLU always folds
                elif kernel.startswith("dil_conv"):
                    got["Conv"] += 2 * n
                elif kernel == "skip_connect/s2":  # two convs, a concatenation, a BN (a conv where blocked)
                    bn_conv = record[entry].endswith("conv")
                    got.update({"Conv": (2 + bn_conv) * n, "Concat": n, "BatchNormalization": (not bn_conv) * n})
                elif kernel == "fr_input/s2":
                    got["Slice"] += 2 * n
                else:
                    got[ORT_NAMES[kernel.partition("/")[0]]] += n
        return got

    kinds = ("Conv", "activation", "sum", "Relu", "Add", "MaxPool", "AveragePool", "Slice", "Concat")
    base, base_model = graphs.pop(str(dl.REFERENCE)), model(dl.REFERENCE)
    for text, got in graphs.items():
        want = model(SPACE.parse(text))
        assert {k: got[k] - base[k] for k in kinds} == {k: want[k] - base_model[k] for k in kinds}, text


# --------------------------------------------------------------------------- a real profile, the CLI
@pytest.mark.slow
def test_profile_device_darts_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edgenas profile-device --space darts` on a tiny shape, then `--check` (about 30 s on 2 shared cores)."""
    out = tmp_path / "tiny.lut.json"
    argv = ["profile-device", "--space", "darts", "--name", "tiny", "--resolution", "8", "--widths", "4"]
    assert run([*argv, "--cells", "3", "--warmup", "2", "--repeats", "20", "--out", str(out), "--quiet"]) == 0
    assert "tiny: darts op latencies" in capsys.readouterr().out
    table = LatencyTable.load(out)
    shape = NetShape(4, 3, 1, 8, 10)
    assert table.space == "darts" and table.covers(shape) and not table.covers(NetShape(4, 5, 1, 8, 10))
    assert all(math.isfinite(v) for v in table.entries.values()) and table.overhead_ms > 0
    # the frame adds up to the measured cheapest-genotype network; the record is what onnxruntime does here
    assert table.predict_ms(dl.REFERENCE, shape) == pytest.approx(table.graphs["frame4@4x3"])
    assert table.fusion == dl.measure_fusion(shape)
    check = tmp_path / "check.json"
    argv = ["profile-device", "--check", str(out), "--n", "3", "--width", "4", "--cells", "3", "--repeats", "20"]
    assert run([*argv, "--out", str(check), "--quiet"]) == 0
    assert "Kendall" in capsys.readouterr().out
    res = json.loads(check.read_text())
    assert res["n"] == 3 and res["shape"]["cells"] == 3 and res["fusion"] == "recorded"
    assert all(r["arch"].startswith("Genotype(") and r["measured_ms"] > 0 for r in res["rows"])


def test_profile_device_darts_user_errors(capsys: pytest.CaptureFixture) -> None:
    argv = ["profile-device", "--space", "darts", "--name", "x", "--resolution", "8"]
    with pytest.raises(SystemExit):
        run([*argv, "--cells", "0"])
    assert "'0' must list positive cell counts, like 5,8" in capsys.readouterr().err
    assert run(["profile-device", "--check", "t.lut.json", "--cells", "5,8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "measures networks of one depth" in err and "\n" not in err


@pytest.mark.slow
def test_dca_search_under_a_latency_budget_profiles_a_darts_table(tmp_path: Path) -> None:
    """A DCA-NAS search on darts with a latency budget profiles a table of its depth and searches with it
    (about 3 min on 2 shared cores)."""
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: lat\nbudgets:\n  max_latency_ms: 5\nlatency:\n  threads: 1\n  repeats: 20\n")
    out = tmp_path / "run"
    argv = ["search", "--method", "dca", "--space", "darts", "--device", str(dev), "--dataset", "digits"]
    argv += ["--subset", "600", "--epochs", "2", "--warmup-epochs", "1", "--width", "4", "--cells", "3"]
    assert run([*argv, "--search-width", "4", "--run-dir", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    table = LatencyTable.load(out / "latency_table.json")
    assert table.space == "darts" and table.covers(NetShape(4, 3, 1, 8, 10))
    assert res["expected_costs"]["max_latency_ms"] > 0 and res["costs"]["latency_ms"] > 0
