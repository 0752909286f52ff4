"""End-to-end runs on real Fashion-MNIST: a short one for CI, the full figure under `-m slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgenas.cli import run
from edgenas.quickstart import quickstart
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed")
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@needs_fashion
def test_short_fashion_training(tmp_path: Path) -> None:
    """CI version: 2 epochs on 5,000 images (140 steps), full 10k test set."""
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
def test_quickstart_short(tmp_path: Path) -> None:
    """The README's main job, shrunk: every picked model meets every budget of its device."""
    out = quickstart(n=20, epochs=2, subset=3000, width=8, run_dir=tmp_path / "q", quiet=True)
    assert len(out["devices"]) == 3
    for dev in out["devices"]:
        assert dev["arch"] is not None, dev["device"]
        assert all(b["passed"] for b in dev["budgets"]), dev
        assert 0.3 < dev["test_accuracy"] <= 1.0
    assert (tmp_path / "q" / "results.json").is_file()
