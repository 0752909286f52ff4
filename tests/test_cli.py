"""The CLI: user mistakes give one line and exit 2; commands print their tables."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest

from edgenas.cli import run
from edgenas.configs import EXAMPLES as EXAMPLE_CONFIGS
from edgenas.configs import example_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "devices"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--arch", "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--dataset", "digits"], "'bogus'"),
        (["train", "--dataset", "digits"], "needs --arch"),
        (["train", "--arch", ARCH, "--dataset", "folder"], "--data-dir"),
        (["train", "--arch", ARCH, "--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist"),
        (["train", "--resume", "/nonexistent/run"], "no such run directory"),
        (["devices", "check", "--arch", ARCH, "--device", "/nonexistent.yaml"], "no such file"),
        (["export", "/nonexistent/model.pt"], "no such model file"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert run([*argv, "--quiet"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: ")
    assert needle in err
    assert "\n" not in err and "Traceback" not in err


def test_bad_option_value_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgenas.cli", "train", "--arch", ARCH, "--epochs", "0"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "must be >= 1" in proc.stderr and "Traceback" not in proc.stderr


def test_devices_check_prints_every_budget(capsys: pytest.CaptureFixture) -> None:
    code = run(
        [
            "devices",
            "check",
            "--arch",
            ARCH,
            "--device",
            str(EXAMPLES / "gateway.yaml"),
            "--device",
            str(EXAMPLES / "mcu.yaml"),
        ]
    )
    out = capsys.readouterr().out
    for budget in ("max_params", "max_flops", "max_peak_memory_bytes", "max_latency_ms"):
        assert out.count(budget) == 2
    assert "FAIL" in out  # this arch (316k params) is far over the mcu's 100k budget
    assert code == 1


def test_train_then_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        run(
            [
                "train",
                "--arch",
                ARCH,
                "--dataset",
                "digits",
                "--width",
                "8",
                "--epochs",
                "1",
                "--quiet",
                "--run-dir",
                str(tmp_path / "t"),
            ]
        )
        == 0
    )
    assert "test accuracy" in capsys.readouterr().out
    assert run(["export", str(tmp_path / "t"), "--onnx", "--repeats", "10"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "max abs diff" in out
    assert (tmp_path / "t" / "model.onnx").is_file() and (tmp_path / "t" / "model.json").is_file()


def test_interrupt_says_how_to_resume(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import edgenas.train.train_arch as train_mod
    from edgenas.core.errors import Interrupted

    def interrupted(*args, **kwargs):
        raise Interrupted("continue with: edgenas train --resume runs/train-x")

    monkeypatch.setattr(train_mod, "train_arch", interrupted)
    assert run(["train", "--arch", ARCH, "--quiet"]) == 130
    assert "edgenas train --resume runs/train-x" in capsys.readouterr().err


# --------------------------------------------------------------------------- run --example, quickstart
@pytest.mark.parametrize("name", EXAMPLE_CONFIGS.names())
def test_packaged_example_configs_load_and_validate(name: str) -> None:
    from edgenas.pipeline.config import load_run_config

    _, profiles = load_run_config(example_config(name))
    assert profiles and all(p.budgets.items() for p in profiles)


def test_quick_example_is_short() -> None:
    """The demo stays a demo: screening only, no teacher, 2 epochs on a small subset."""
    from edgenas.pipeline.config import load_run_config

    cfg, profiles = load_run_config(example_config("quick"))
    assert [p.name for p in profiles] == ["mcu", "phone", "gateway"]
    assert {cfg.method_for(i) for i in range(len(profiles))} == {"screen"}
    assert cfg.teacher.kind == "none" and cfg.train.epochs <= 2
    assert cfg.dataset.subset <= 5000 and cfg.screen.n <= 50


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "--example", "nope"], "unknown example config 'nope'; choose one of quick"),
        (["run", "x.yaml", "--example", "quick"], "not both"),
        (["run"], "needs a config file"),
    ],
)
def test_run_example_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error: ") and needle in err and "\n" not in err


def test_quickstart_runs_the_quick_example(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import edgenas.pipeline.run as pipeline_run

    seen = {}

    def fake(config_file, **kwargs):
        seen.update(config_file=config_file, **kwargs)
        return {"name": "quick", "total_seconds": 60.0, "devices": [], "run_dir": "runs/q", "all_pass": True}

    # the handler passes the flags its library function takes: the fake shows run_pipeline's signature
    monkeypatch.setattr(pipeline_run, "run_pipeline", functools.wraps(pipeline_run.run_pipeline)(fake))
    assert run(["quickstart", "--quiet", "--run-dir", "runs/q"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "edgenas quickstart runs `edgenas run --example quick`"
    assert "edgenas run quick: 1.0 min" in out
    assert seen["config_file"] is None and seen["example"] == "quick" and seen["quiet"]
    assert str(seen["run_dir"]) == "runs/q"


def test_python_api_is_lazy_and_complete() -> None:
    """`import edgenas` loads no torch; every name of the API is a function of the library."""
    code = "import sys, edgenas; assert 'torch' not in sys.modules; print(' '.join(edgenas.__all__))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import edgenas

    names = proc.stdout.split()
    assert {"run_pipeline", "screen", "run_search", "train_arch", "export_model", "check_devices"} <= set(names)
    for name in names[1:]:  # after __version__
        assert callable(getattr(edgenas, name)), name
    with pytest.raises(AttributeError):
        edgenas.no_such_function  # noqa: B018
