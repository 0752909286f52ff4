"""ONNX export: faithful round trip, atomic writes, clear refusals, fallbacks that stay honest."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgenas.export import ExportError, export_onnx, input_spec, onnx_session, verify_onnx
from edgenas.export.compact import compact_onnx

SHAPE = (3, 12, 12)


class _SmallNet(nn.Module):
    """Conv-BN-ReLU stem, a residual block, a zeroed branch (`x * 0.0`), avg-pool, classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(h + self.block(h)) + h * 0.0
        return self.head(self.pool(h))


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    net = _SmallNet()
    for m in net.modules():  # non-trivial BN statistics, so a wrong BN export shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """One export shared by the tests below (export is the slow part); it overwrites an old file."""
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    path.write_bytes(b"an older model")
    net = _small_net().train()
    mean_before = net.stem[1].running_mean.clone()
    assert export_onnx(net, SHAPE, path) == path
    assert net.training and torch.equal(net.stem[1].running_mean, mean_before)  # caller's model untouched
    return net, path


def test_round_trip_matches_pytorch(exported: tuple[nn.Module, Path]) -> None:
    net, path = exported
    assert verify_onnx(net, path, SHAPE) < 1e-4  # batch 2 by default
    assert verify_onnx(net, path, SHAPE, batch=1, seed=5) < 1e-4
    name, static_batch, dtype = input_spec(onnx_session(path))
    assert (name, static_batch, dtype) == ("input", None, np.float32)  # dynamic batch
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["logits"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta == {"edgenas.exporter": "dynamo", "edgenas.dynamic_batch": "true"}


def test_compact_export_computes_the_same_outputs(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    """`compact=True`: short names, no shape annotations, the same graph outputs bit for bit."""
    net, path = exported
    small = export_onnx(net, SHAPE, tmp_path / "small.onnx", compact=True)
    a, b = onnx.load(str(path)), onnx.load(str(small))
    assert a.graph.value_info and not b.graph.value_info and small.stat().st_size < path.stat().st_size
    assert [v.name for v in b.graph.input] == ["input"] and [v.name for v in b.graph.output] == ["logits"]
    assert {p.key: p.value for p in b.metadata_props} == {p.key: p.value for p in a.metadata_props}
    x = np.random.default_rng(0).standard_normal((3, *SHAPE)).astype(np.float32)
    assert np.array_equal(onnx_session(small).run(None, {"input": x})[0], onnx_session(path).run(None, {"input": x})[0])
    before = small.read_bytes()
    assert compact_onnx(small) == len(before) and small.read_bytes() == before  # nothing left to drop


def test_write_is_atomic_and_leaves_no_temp_file(exported: tuple[nn.Module, Path]) -> None:
    _, path = exported
    assert [p.name for p in path.parent.iterdir()] == ["net.onnx"]
    assert path.read_bytes() != b"an older model"


def test_verify_catches_a_changed_torch_model(exported: tuple[nn.Module, Path]) -> None:
    net, path = exported
    changed = _small_net()
    changed.load_state_dict(net.state_dict())
    with torch.no_grad():
        changed.head[2].weight[0, 0] += 0.5
    with pytest.raises(ExportError, match=r"differ by .*atol 0\.0001"):
        verify_onnx(changed, path, SHAPE)


def test_verify_catches_a_tampered_onnx_file(exported: tuple[nn.Module, Path], tmp_path: Path) -> None:
    net, path = exported
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest weight
    arr = numpy_helper.to_array(init).copy()
    arr.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(arr, init.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    with pytest.raises(ExportError, match="differ by"):
        verify_onnx(net, tampered, SHAPE)


class _Eigh(nn.Module):
    """An op with no ONNX translation in either exporter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.flatten(2)
        return torch.linalg.eigvalsh(f @ f.transpose(1, 2))


def test_unexportable_model_is_a_one_line_error_and_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"ONNX export to .*bad\.onnx failed") as info:
        export_onnx(_Eigh(), (2, 4, 4), path)
    assert "\n" not in str(info.value) and "eigh" in str(info.value)
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]


def test_model_that_fails_eagerly_is_an_export_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot run on a"):
        export_onnx(nn.Conv2d(4, 4, 1), (3, 8, 8), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


class _BatchTied(nn.Module):
    """Code that only works for the batch it was written for (`view(2, -1)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(2, -1))


def test_batch_tied_model_gets_a_static_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = _BatchTied()
    with caplog.at_level(logging.WARNING, logger="edgenas.export.onnx"):
        path = export_onnx(net, (3, 4, 4), tmp_path / "tied.onnx", batch=2)
    assert "static batch of 2" in caplog.text
    assert input_spec(onnx_session(path))[1] == 2
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["edgenas.dynamic_batch"] == "false"
    assert verify_onnx(net, path, (3, 4, 4), batch=5) < 1e-4  # checked at the file's own batch


def test_static_batch_on_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    net = _small_net()
    with caplog.at_level(logging.WARNING, logger="edgenas.export.onnx"):
        path = export_onnx(net, SHAPE, tmp_path / "static.onnx", batch=3, dynamic_batch=False)
    assert caplog.text == ""  # asked for, so not worth a warning
    assert input_spec(onnx_session(path))[1] == 3
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["edgenas.dynamic_batch"] == "false"
    assert verify_onnx(net, path, SHAPE) < 1e-4


def _dynamo_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real_export = torch.onnx.export

    def export(*args: object, dynamo: bool = True, **kwargs: object) -> object:
        if dynamo:
            raise RuntimeError("simulated dynamo exporter failure")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)


def test_falls_back_to_torchscript_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _dynamo_fails(monkeypatch)
    net = _small_net().eval()
    with caplog.at_level(logging.WARNING, logger="edgenas.export.onnx"):
        path = export_onnx(net, SHAPE, tmp_path / "ts.onnx")
    assert "TorchScript" in caplog.text and "simulated dynamo exporter failure" in caplog.text
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["edgenas.exporter"] == "torchscript"
    assert verify_onnx(net, path, SHAPE) < 1e-4


class _HalfDataDependent(nn.Module):
    """Adds a term computed through NumPy: a trace records that term as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.from_numpy(x.numpy() * 2)


class _AllDataDependent(nn.Module):
    """Computes everything through NumPy: the traced graph does not even read its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.numpy() * 2)


def test_torchscript_fallback_that_bakes_constants_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dynamo_fails(monkeypatch)
    with pytest.raises(ExportError, match="differs from PyTorch by"):
        export_onnx(_HalfDataDependent(), (1, 4, 4), tmp_path / "half.onnx")
    with pytest.raises(ExportError, match="ignores its input"):
        export_onnx(_AllDataDependent(), (1, 4, 4), tmp_path / "all.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_and_junk_files_are_export_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such ONNX file"):
        verify_onnx(_small_net(), tmp_path / "none.onnx", SHAPE)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot load"):
        verify_onnx(_small_net(), junk, SHAPE)


def _count_exports(monkeypatch: pytest.MonkeyPatch, fail_torchscript: bool = False) -> list[bool]:
    """Record the `dynamo` flag of every torch.onnx.export call (optionally failing TorchScript ones)."""
    real_export, calls = torch.onnx.export, []

    def export(*args: object, dynamo: bool = True, **kwargs: object) -> object:
        calls.append(dynamo)
        if fail_torchscript and not dynamo:
            raise RuntimeError("simulated TorchScript exporter failure")
        return real_export(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export)
    return calls


def test_timing_files_prefer_torchscript_and_stay_faithful(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_exports(monkeypatch)
    net = _small_net().eval()
    path = export_onnx(net, SHAPE, tmp_path / "t.onnx", dynamic_batch=False, prefer="torchscript")
    assert calls == [False]  # the dynamo exporter never ran
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta == {"edgenas.exporter": "torchscript", "edgenas.dynamic_batch": "false"}
    assert verify_onnx(net, path, SHAPE) < 1e-4
    with pytest.raises(ValueError, match="dynamic_batch=False"):
        export_onnx(net, SHAPE, tmp_path / "d.onnx", prefer="torchscript")  # a dynamic batch needs dynamo


def test_timing_export_falls_back_to_dynamo_when_torchscript_fails_or_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_exports(monkeypatch, fail_torchscript=True)
    path = export_onnx(_small_net().eval(), SHAPE, tmp_path / "a.onnx", dynamic_batch=False, prefer="torchscript")
    assert calls == [False, True]
    assert {p.key: p.value for p in onnx.load(str(path)).metadata_props}["edgenas.exporter"] == "dynamo"
    monkeypatch.undo()
    calls = _count_exports(monkeypatch)  # a trace that bakes in data-dependent values is not used
    path = export_onnx(_HalfDataDependent(), (1, 4, 4), tmp_path / "b.onnx", dynamic_batch=False, prefer="torchscript")
    assert calls == [False, True]
    assert verify_onnx(_HalfDataDependent(), path, (1, 4, 4)) < 1e-4
