"""INT8 deployment: quantized outputs against float32, the INT8 export's report, budgets judged at int8."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile, at_precision, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape
from edgenas.export.int8 import int8_export
from edgenas.export.onnx import export_onnx
from edgenas.export.quantize import calibration_sample, quantize_onnx
from edgenas.spaces import get_space

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "devices"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A small NB201 network trained for two epochs on digits (8x8), and its data."""
    from edgenas.data import load_dataset
    from edgenas.train.model_file import load_model_file
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import TrainConfig

    run = tmp_path_factory.mktemp("int8") / "run"
    train_arch(ARCH, dataset="digits", width=8, train=TrainConfig(epochs=2), device="cpu", quiet=True, run_dir=run)
    model, _ = load_model_file(run)
    return model, load_dataset("digits", seed=0), run


def test_quantized_outputs_close_to_float32(trained, tmp_path: Path) -> None:
    model, data, _ = trained
    shape = tuple(data.train.images.shape[1:])
    fp32 = export_onnx(model, shape, tmp_path / "m.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "m.int8.onnx", calibration_sample(data.train.images.numpy(), 128, 0))
    from edgenas.export.onnx import onnx_session

    batch = data.test.images[:64].numpy()
    a = onnx_session(fp32).run(None, {"input": batch})[0]
    b = onnx_session(int8).run(None, {"input": batch})[0]
    scale = float(np.abs(a).max())
    assert np.abs(a - b).max() <= 0.15 * scale  # 8-bit rounding, not a different function
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    import onnx

    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    with torch.inference_mode():
        ref = model(torch.from_numpy(batch)).numpy()
    assert np.abs(ref - a).max() < 1e-3


def test_the_quantizer_advice_is_held_back(trained, tmp_path: Path, caplog, monkeypatch) -> None:
    """onnxruntime's quantizer logs per-tensor advice on the root logger; a run shows none of it."""
    import contextlib

    import edgenas.export.quantize as q

    model, data, _ = trained
    fp32 = export_onnx(model, tuple(data.train.images.shape[1:]), tmp_path / "m.onnx")
    calib = calibration_sample(data.train.images.numpy(), 16, 0)
    with caplog.at_level("WARNING"):
        quantize_onnx(fp32, tmp_path / "a.onnx", calib)
    assert not [r for r in caplog.records if r.name == "root"]
    monkeypatch.setattr(q, "_quiet_quantizer", contextlib.nullcontext)  # the advice is there to hold back
    with caplog.at_level("WARNING"):
        quantize_onnx(fp32, tmp_path / "b.onnx", calib)
    assert [r for r in caplog.records if r.name == "root"]


def test_int8_export_report(trained, tmp_path: Path) -> None:
    model, data, _ = trained
    res = int8_export(model, data, tmp_path, calibration="entropy", calibration_images=64, latency=False)
    assert res["quantization"]["calibration"] == "entropy" and res["quantization"]["calibration_images"] == 64
    f, i = res["fp32"], res["int8"]
    assert i["model_bytes"] == (tmp_path / "model.int8.onnx").stat().st_size
    assert res["size_ratio"] == f["model_bytes"] / i["model_bytes"] > 1.5
    assert res["compact"] and f["uncompacted_model_bytes"] > f["model_bytes"]  # both files compacted
    assert i["uncompacted_model_bytes"] > i["model_bytes"]
    assert res["uncompacted_size_ratio"] == f["uncompacted_model_bytes"] / i["uncompacted_model_bytes"]
    assert res["uncompacted_size_ratio"] < res["size_ratio"]  # names weigh more in the INT8 file
    assert i["weight_bytes"] * 3 < f["weight_bytes"]
    assert i["peak_memory_bytes"] * 4 == f["peak_memory_bytes"]  # one byte per activation
    assert 0 <= i["test_accuracy"] <= 1 and res["test_images"] == len(data.test)
    assert res["accuracy_drop_points"] == pytest.approx(100 * (f["test_accuracy"] - i["test_accuracy"]))
    assert i["latency_ms"] is None and res["latency_ratio"] is None
    assert json.loads((tmp_path / "model.int8.json").read_text())["int8"]["cost"]["precision"] == "int8"
    with pytest.raises(ConfigError, match="calibration"):
        int8_export(model, data, tmp_path, calibration="median", latency=False)


def test_compact_files_compute_the_same_outputs(trained, tmp_path: Path) -> None:
    """Short names, no annotations: same tensors, same ops, bit-identical outputs, float32 and INT8 alike."""
    import onnx

    from edgenas.export.compact import compact_onnx, short_name
    from edgenas.export.int8 import weight_bytes
    from edgenas.export.onnx import onnx_session

    model, data, _ = trained
    shape = tuple(data.train.images.shape[1:])
    fp32 = export_onnx(model, shape, tmp_path / "m.onnx")
    int8 = quantize_onnx(fp32, tmp_path / "m.int8.onnx", calibration_sample(data.train.images.numpy(), 32, 0))
    batch = data.test.images[:32].numpy()
    for original in (fp32, int8):
        small = tmp_path / f"small.{original.name}"
        small.write_bytes(original.read_bytes())
        assert compact_onnx(small) == original.stat().st_size > small.stat().st_size
        want = onnx_session(original).run(None, {"input": batch})[0]
        assert np.array_equal(onnx_session(small).run(None, {"input": batch})[0], want)
        a, b = onnx.load(str(original)), onnx.load(str(small))
        onnx.checker.check_model(b, full_check=True)
        assert [v.name for v in b.graph.input] == ["input"] and [v.name for v in b.graph.output] == ["logits"]
        assert [n.op_type for n in b.graph.node] == [n.op_type for n in a.graph.node]
        assert sorted(t.raw_data for t in b.graph.initializer) == sorted(t.raw_data for t in a.graph.initializer)
        assert weight_bytes(small) == weight_bytes(original)
        assert not b.graph.value_info and a.graph.value_info
        names = [*(n.name for n in b.graph.node), *(t.name for t in b.graph.initializer)]
        assert len(set(names[: len(b.graph.node)])) == len(b.graph.node) and max(map(len, names)) <= 2
        before = small.read_bytes()
        assert compact_onnx(small) == len(before) and small.read_bytes() == before  # idempotent
    assert len({short_name(i) for i in range(5000)}) == 5000
    assert all(short_name(i).isidentifier() for i in (0, 52, 53, 3391, 3392, 4999))


def test_export_cli_no_compact(monkeypatch) -> None:
    import edgenas.export.export_model as em
    from edgenas.cli import run

    seen = []
    monkeypatch.setattr(em, "export_model", lambda *a, **k: seen.append(k["compact"]) or {"latency": {}})
    monkeypatch.setattr("edgenas.cli.export.print_export", lambda res: None)
    assert run(["export", "x.pt"]) == 0 and run(["export", "x.pt", "--no-compact"]) == 0
    assert seen == [True, False]


def test_qat_finetune_keeps_the_network(trained) -> None:
    from edgenas.export.qat import qat_finetune

    model, data, _ = trained
    tuned, record = qat_finetune(model, data, epochs=1, seed=0)
    assert record["epochs"] == 1 and record["fake_quantized_layers"] > 0
    assert set(tuned.state_dict()) == set(model.state_dict())
    moved = [
        k for k, v in tuned.state_dict().items() if v.is_floating_point() and not torch.equal(v, model.state_dict()[k])
    ]
    assert moved  # fine-tuned, and still a plain float network that exports
    assert not any(hasattr(m, "weight_fake_quant") for m in tuned.modules())


def test_export_cli_int8(trained, capsys: pytest.CaptureFixture) -> None:
    from edgenas.cli import run

    _, _, folder = trained
    assert run(["export", str(folder), "--int8", "--repeats", "5", "--calibration-images", "32"]) == 0
    out = capsys.readouterr().out
    assert "INT8" in out and "float32" in out
    assert (folder / "model.int8.onnx").is_file() and (folder / "model.int8.json").is_file()


# --------------------------------------------------------------------------- budgets at a precision
def test_budgets_judged_at_int8() -> None:
    budgets = {"max_params": 200_000, "max_model_bytes": 100_000, "max_peak_memory_bytes": 10_000}
    int8 = DeviceProfile(name="m", precision="int8", budgets=budgets)
    fp32 = DeviceProfile(name="m", budgets=budgets)
    cost = Cost(params=90_000, flops=1, peak_memory_bytes=36_000)  # float32 measurements
    assert int8.fits(cost) and not fp32.fits(cost)
    checks = {c.budget: c.value for c in int8.check(cost)}
    assert checks == {"max_params": 90_000, "max_model_bytes": 90_000, "max_peak_memory_bytes": 9_000}
    assert {c.budget: c.value for c in fp32.check(cost)}["max_model_bytes"] == 360_000
    # a measured file size replaces the estimate
    deployed = Cost(params=90_000, flops=1, peak_memory_bytes=9_000, precision="int8", model_bytes=120_000)
    assert [c.budget for c in int8.check(deployed) if c.passed is False] == ["max_model_bytes"]
    assert at_precision(deployed, "int8") is deployed
    # search and screen cost float32 networks: the same limits in float32 terms
    search = int8.search_budgets()
    assert search.max_params == 100_000 and search.max_peak_memory_bytes == 40_000 and search.max_model_bytes is None
    assert fp32.search_budgets().max_params == 25_000 and fp32.search_budgets().max_peak_memory_bytes == 10_000


def test_static_screen_follows_precision() -> None:
    from edgenas.cost.static import StaticCosts

    sp = get_space("nb201")
    static = StaticCosts(sp, NetShape(8, 1, 1, 8, 10))
    cost = static.cost(ARCH)
    limit = cost.params + 1  # INT8 weights fit, float32 ones (4x) do not
    int8 = DeviceProfile(name="m", precision="int8", budgets={"max_model_bytes": limit})
    fp32 = DeviceProfile(name="m", budgets={"max_model_bytes": limit})
    assert static.fits(ARCH, int8.search_budgets()) and not static.fits(ARCH, fp32.search_budgets())


def test_precision_in_profiles(tmp_path: Path) -> None:
    mcu = load_device(EXAMPLES / "mcu.yaml")
    assert mcu.precision == "int8" and mcu.budgets.max_model_bytes == 160 * 1024
    assert "precision" not in load_device(EXAMPLES / "phone.yaml").model_dump()  # fp32 dumps as before
    bad = tmp_path / "d.yaml"
    bad.write_text("name: d\nprecision: int4\nbudgets:\n  max_params: 5\n")
    with pytest.raises(ConfigError) as e:
        load_device(bad)
    assert "precision" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow  # five exports and a QAT epoch: about 15 s
def test_qat_runs_when_int8_loses_more_than_the_threshold(trained, tmp_path: Path, monkeypatch) -> None:
    """The QAT branch, forced: the INT8 file is made to read 5 points worse than it is."""
    import edgenas.export.int8 as int8_mod

    model, data, _ = trained
    real = int8_mod.onnx_accuracy

    def worse(path, *a, **k):
        acc = real(path, *a, **k)
        return acc - 0.05 if str(path).endswith("model.int8.onnx") else acc

    monkeypatch.setattr(int8_mod, "onnx_accuracy", worse)
    plain = int8_export(model, data, tmp_path / "a", calibration_images=32, latency=False)
    assert "advice" in plain and "--qat" in plain["advice"] and "qat" not in plain
    res = int8_export(model, data, tmp_path / "b", calibration_images=32, latency=False, qat_epochs=1)
    assert res["accuracy_drop_points"] > res["qat_threshold_points"] == 1.0
    assert res["qat"]["epochs"] == 1 and (tmp_path / "b" / "model.qat.int8.onnx").is_file()
    assert res["qat"]["int8"]["model_bytes"] == (tmp_path / "b" / "model.qat.int8.onnx").stat().st_size
