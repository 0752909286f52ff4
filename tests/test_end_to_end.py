"""End-to-end runs on real Fashion-MNIST: a short one for CI; the full figure and the quick example under `-m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenas.cli import run
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed")
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.mark.slow  # ~15 s: the README main job covers real Fashion-MNIST training end to end
@needs_fashion
def test_short_fashion_training(tmp_path: Path) -> None:
    """Short version (slow-marked): 2 epochs on 5,000 images (140 steps), full 10k test set."""
    res = train_arch(
        ARCH,
        dataset="fashion-mnist",
        width=8,
        cells=1,
        subset=5000,
        train=TrainConfig(epochs=2, batch_size=64),
        device="cpu",
        quiet=True,
        run_dir=tmp_path / "t",
    )
    assert res["test_images"] == 10000
    assert res["test_accuracy"] > 0.70  # chance 0.10; measured 0.80


@needs_fashion
@pytest.mark.slow
def test_issue_figure_three_epochs_reach_88(tmp_path: Path) -> None:
    """The foundation issue's figure: C=16, N=1, 3 epochs, full data, >= 88% test accuracy."""
    code = run(
        [
            "train",
            "--arch",
            ARCH,
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "3",
            "--width",
            "16",
            "--cells",
            "1",
            "--quiet",
            "--run-dir",
            str(tmp_path / "t"),
        ]
    )
    assert code == 0
    import json

    res = json.loads((tmp_path / "t" / "results.json").read_text())
    assert res["test_accuracy"] >= 0.88


@needs_fashion
@pytest.mark.slow
def test_quick_example_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`edgenas run --example quick`, the README's demo (about 2 min): one model per device, every budget met."""
    import json

    assert run(["run", "--example", "quick", "--run-dir", str(tmp_path / "q"), "--quiet"]) == 0
    assert "edgenas run quick" in capsys.readouterr().out
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [d["device"] for d in res["devices"]] == ["mcu", "phone", "gateway"] and res["all_pass"]
    for dev in res["devices"]:
        assert dev["all_pass"] and 0.3 < dev["test_accuracy"] <= 1.0, dev
    assert len({d["arch"] for d in res["devices"]}) == 3  # budgets scaled so that each device gets its own cell
    assert (tmp_path / "q" / "report.html").is_file()
