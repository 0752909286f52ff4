"""INT8 latency tables: op graphs quantized as the export quantizes, tables tagged by precision, kits of INT8 ops."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from test_lut_kit import RUN_BLOCKED

from edgenas.core.device import DeviceProfile, LatencySpec
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.lut import LatencyTable, latency_table_for
from edgenas.cost.lut.timing import quantize_graphs
from edgenas.cost.profile import check_latency_table, profile_device
from edgenas.spaces.nb201 import latency as nb201_latency

SHAPE = NetShape(4, 1, 1, 8, 10)  # the tiny space: 8x8 input, width 4


@pytest.fixture(scope="module")
def int8_table(tmp_path_factory: pytest.TempPathFactory) -> LatencyTable:
    """An INT8 table of the tiny space, profiled in-process (a few runs per graph: not for its numbers)."""
    out = tmp_path_factory.mktemp("int8") / "tiny8.lut.json"
    return profile_device(
        "tiny8", 8, widths=(4,), threads=1, warmup=1, repeats=3, precision="int8", out=out, quiet=True
    )


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_int8_profile_makes_int8_entries(int8_table: LatencyTable) -> None:
    assert int8_table.precision == "int8" and int8_table.covers(SHAPE)
    assert set(nb201_latency.required_keys(SHAPE)) <= set(int8_table.entries)
    assert int8_table.predict_ms(nb201_latency.REFERENCE, SHAPE) > 0
    doc = json.loads(int8_table.path.read_text())
    assert doc["schema_version"] == 3 and doc["precision"] == "int8"
    again = LatencyTable.load(int8_table.path)
    assert again.precision == "int8" and again.entries == int8_table.entries


def test_int8_op_graphs_are_quantized(tmp_path: Path) -> None:
    files = {}
    for chain in ("conv_1x1", "avg_pool_3x3", "add"):  # a pool chain too, though its input is the graph's float
        files[chain] = tmp_path / f"{chain}.onnx"
        onnx.save(nb201_latency.chain_model(chain, 4, 8, 8, 2), str(files[chain]))
    assert quantize_graphs(files) == files
    for name, path in files.items():
        ops = {n.op_type for n in onnx.load(str(path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, name


def test_int8_check_times_quantized_networks(int8_table: LatencyTable, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgenas.cost.lut import check, check_table

    quantized: list[Path] = []
    quantize = check.quantize_network

    def spy(path: Path, *args: object) -> Path:
        quantized.append(path)
        return quantize(path, *args)

    monkeypatch.setattr(check, "quantize_network", spy)
    res = check_table(int8_table, SHAPE, 2, 0, warmup=1, repeats=2)
    assert res["precision"] == "int8" and res["n"] == 2
    assert len(quantized) == 3  # the 2 networks and the reference network


def test_fp32_table_stays_schema_2(int8_table: LatencyTable, tmp_path: Path) -> None:
    fp32 = replace(int8_table, precision="fp32", path=None)
    doc = json.loads(fp32.save(tmp_path / "f.lut.json").read_text())
    assert doc["schema_version"] == 2 and "precision" not in doc
    assert LatencyTable.load(tmp_path / "f.lut.json").precision == "fp32"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"schema_version": 2}, "has no precision"),
        ({"precision": "int4"}, "precision is 'int4'"),
    ],
)
def test_bad_precision_in_file_is_one_line(int8_table: LatencyTable, tmp_path: Path, change, needle) -> None:
    doc = {**json.loads(int8_table.path.read_text()), **change}
    (tmp_path / "bad.lut.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        LatencyTable.load(tmp_path / "bad.lut.json")
    assert needle in _one_line(e)


def test_wrong_precision_table_refused(int8_table: LatencyTable, tmp_path: Path) -> None:
    fp32_file = replace(int8_table, precision="fp32", path=None).save(tmp_path / "f.lut.json")
    spec = {"source": "table"}
    ok = DeviceProfile(name="m", precision="int8", latency=LatencySpec(**spec, table=str(int8_table.path)))
    assert latency_table_for(ok).precision == "int8"
    for precision, table in (("fp32", int8_table.path), ("int8", fp32_file)):
        profile = DeviceProfile(name="m", precision=precision, latency=LatencySpec(**spec, table=str(table)))
        with pytest.raises(ConfigError) as e:
            latency_table_for(profile)
        assert f"runs {precision} networks" in _one_line(e) and "--precision" in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_latency_table(int8_table.path, width=4, precision="fp32")
    assert "holds int8 op latencies" in _one_line(e)


def test_wrong_precision_cli_exit_2(int8_table: LatencyTable, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    assert run(["profile-device", "--check", str(int8_table.path), "--precision", "fp32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds int8 op latencies" in err and len(err.splitlines()) == 1


def test_int8_device_selection_times_the_int8_network(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgenas.core.device import Budgets
    from edgenas.cost import budget_check
    from edgenas.export import quantize
    from edgenas.spaces import get_space

    space = get_space("nb201")
    arch = str(nb201_latency.REFERENCE)
    budgets = Budgets(max_latency_ms=1e6)
    calls: list[tuple] = []
    monkeypatch.setattr(quantize, "quantized_latency_ms", lambda *a, **k: calls.append(a) or 123.0)
    cost, _ = budget_check.check_arch_on_device(space, arch, SHAPE, DeviceProfile(name="m", budgets=budgets))
    assert not calls and cost.latency_ms != 123.0
    profile = DeviceProfile(name="m", precision="int8", budgets=budgets)
    cost, _ = budget_check.check_arch_on_device(space, arch, SHAPE, profile)
    assert len(calls) == 1 and cost.latency_ms == 123.0


def test_quantized_latency_is_measured() -> None:
    from edgenas.export.quantize import quantized_latency_ms
    from edgenas.spaces import get_space

    model = get_space("nb201").build(nb201_latency.REFERENCE, SHAPE)
    assert quantized_latency_ms(model, SHAPE.input_shape, threads=1, warmup=1, repeats=2) > 0


@pytest.mark.slow
def test_int8_kit_round_trip(tmp_path: Path) -> None:
    from edgenas.cost.lut.kit import check_kit, import_timings, write_kit

    folder = tmp_path / "kit"
    write_kit(folder, space="nb201", resolution=8, widths=[4], n=2, warmup=1, repeats=3, name="t8", quiet=True,
              precision="int8")  # fmt: skip
    manifest = json.loads((folder / "kit.json").read_text())
    assert manifest["spec"]["precision"] == "int8"
    for rel in manifest["nets"].values():  # the check networks are the INT8 files the export would write
        assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(folder / rel)).graph.node}
    done = subprocess.run(
        [sys.executable, "-I", "-c", RUN_BLOCKED, "--threads", "1"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with pytest.raises(ConfigError) as e:
        import_timings(folder / "t8.timings.json", precision="fp32")
    assert "holds int8 op latencies" in _one_line(e) and not (folder / "t8.lut.json").exists()
    table, data = import_timings(folder / "t8.timings.json")
    assert table.precision == "int8" and table.covers(SHAPE)
    (res,) = check_kit(table, data)
    assert res["precision"] == "int8" and res["n"] == 2 and "kendall_tau" in res
