"""Profiling kits: write a kit, run its runner as a device would (no torch, no edgenas), import its timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.cost.lut import runner
from edgenas.cost.lut.kit import check_kit, import_timings, load_timings, write_kit

# the runner must work where only numpy and onnxruntime are installed: these imports fail in its process
BLOCKED = ("torch", "edgenas", "onnx", "scipy", "pydantic")
RUN_BLOCKED = (
    "import runpy, sys\n"
    + "".join(f"sys.modules[{m!r}] = None\n" for m in BLOCKED)
    + "sys.argv = ['runner.py', *sys.argv[1:]]\n"
    + "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.fixture(scope="module")
def kit_timings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny NB201 kit (8x8 input, width 4, 2 check networks), timed by its runner in a subprocess."""
    folder = tmp_path_factory.mktemp("kit") / "kit"
    write_kit(folder, space="nb201", resolution=8, widths=[4], n=2, warmup=1, repeats=3, name="tiny", quiet=True)
    done = subprocess.run(
        [sys.executable, "-I", "-c", RUN_BLOCKED, "--threads", "1"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return folder / "tiny.timings.json"


def test_kit_round_trip(kit_timings: Path) -> None:
    folder = kit_timings.parent
    manifest = json.loads((folder / "kit.json").read_text())
    assert (folder / "runner.py").read_text() == Path(runner.__file__).read_text()  # the in-process timing code
    data = json.loads(kit_timings.read_text())
    assert set(data["ms"]) == set(manifest["graphs"]) and set(data["nets_ms"]) == set(manifest["nets"])
    assert set(data["optimized"]) == set(manifest["optimized"]) and manifest["optimized"]
    table, loaded = import_timings(kit_timings)
    assert table.path == folder / "tiny.lut.json" and table.path.is_file()
    assert table.space == "nb201" and table.widths == [4] and table.threads == 1 and table.repeats == 3
    shape = NetShape(4, 1, 1, 8, 10)
    assert table.covers(shape) and table.fusion
    assert table.predict_ms(manifest["checks"][0]["reference"], shape) > 0
    (res,) = check_kit(table, loaded)
    assert res["n"] == 2 and res["shape"]["width"] == 4 and "mape_pct" in res and "kendall_tau" in res
    assert {r["arch"] for r in res["rows"]} | {res["reference"]["arch"]} == set(manifest["checks"][0]["nets"])


def test_kit_cli(kit_timings: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    out = tmp_path / "t.lut.json"
    assert run(["profile-device", "--import", str(kit_timings), "--check", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "MAPE" in text and "Kendall" in text and out.is_file()
    assert (tmp_path / "t.lut.check-C4N1.json").is_file()


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "bad.timings.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def _minimal() -> dict:
    """A well-formed timings document of a two-graph kit (no files behind it)."""
    node = {"op_type": "Conv", "domain": "", "input": ["input"], "output": ["o"], "attribute": []}
    spec = {"space": "nb201", "resolution": 8, "in_channels": 1, "num_classes": 10, "widths": [4], "cells": None}
    kit = {
        "kind": runner.KIT_KIND,
        "schema_version": 1,
        "name": "d",
        "spec": spec,
        "graphs": {"overhead": "graphs/g0.onnx", "conv_1x1:4x8x8#1": "graphs/g1.onnx"},
        "nets": {"C4N1/n0": "nets/n0.onnx"},
        "optimized": ["conv_1x1:4x8x8#1"],
        "checks": [],
    }
    return {
        "kind": runner.RESULT_KIND,
        "schema_version": runner.RESULT_SCHEMA_VERSION,
        "kit": kit,
        "threads": 1,
        "warmup": 1,
        "repeats": 3,
        "ms": {"overhead": 0.01, "conv_1x1:4x8x8#1": 0.02},
        "nets_ms": {"C4N1/n0": 0.1},
        "optimized": {"conv_1x1:4x8x8#1": {"node": [node], "output": ["o"]}},
    }


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: "{not json", "not readable JSON"),
        (lambda d: {**d, "kind": "something"}, "'kind'"),
        (lambda d: {**d, "ms": {"overhead": 0.01}}, "lacks 1 of the kit's graphs"),
        (lambda d: {**d, "ms": {**d["ms"], "overhead": -1.0}}, "not a positive number"),
        (lambda d: {**d, "ms": {**d["ms"], "overhead": "fast"}}, "not a positive number"),
        (lambda d: {**d, "optimized": {}}, "optimised graphs are missing"),
        (lambda d: {**d, "optimized": {"conv_1x1:4x8x8#1": {"node": "x"}}}, "malformed"),
        (lambda d: {**d, "threads": 0}, "threads"),
        (lambda d: {**d, "kit": {**d["kit"], "spec": {**d["kit"]["spec"], "space": "nope"}}}, "'nope'"),
        (lambda d: {**d, "kit": {**d["kit"], "spec": {**d["kit"]["spec"], "precision": "int4"}}}, "'int4'"),
    ],
)
def test_bad_timings_file_is_one_line(tmp_path: Path, change, needle: str) -> None:
    bad = _write(tmp_path, change(_minimal()))
    with pytest.raises(ConfigError) as e:
        load_timings(bad)
    msg = str(e.value)
    assert needle in msg and str(bad) in msg and "\n" not in msg


def test_incomplete_kit_cannot_make_a_table(tmp_path: Path) -> None:
    bad = _write(tmp_path, _minimal())
    load_timings(bad)  # well-formed, but the kit lacks most of the graphs a table needs
    with pytest.raises(ConfigError) as e:
        import_timings(bad)
    assert "cannot make a table" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "d.lut.json").exists()


def test_bad_timings_file_cli_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    assert run(["profile-device", "--import", str(_write(tmp_path, "[1, 2]"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: ") and "kit timings" in err and "\n" not in err


def test_kit_refuses_a_used_folder(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        write_kit(tmp_path, space="nb201", resolution=8, widths=[4], n=2, quiet=True)
    with pytest.raises(ConfigError, match="latency tables exist"):
        write_kit(tmp_path / "k", space="nope", resolution=8, quiet=True)


def test_graph_summary_reads_onnx_without_onnx() -> None:
    import onnx

    from edgenas.cost.lut.timing import identity_model

    model = identity_model((2, 4, 4))
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("note", 1))
    summary = runner.graph_summary(model.SerializeToString())
    assert summary == {
        "node": [
            {"op_type": "Identity", "domain": "", "input": ["input"], "output": ["output"], "attribute": ["note"]}
        ],
        "output": ["output"],
    }
