"""Trainer: learns, checkpoints atomically, resumes exactly, refuses mismatched resumes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from edgenas.core.errors import Interrupted, ResumeError, UserError
from edgenas.core.rundir import RunDir
from edgenas.train.model_file import load_model_file
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig, Trainer

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"


def _train(tmp_path: Path, name: str, epochs: int, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=0.05, seed=3)
    return train_arch(
        ARCH, dataset="digits", width=8, cells=1, train=cfg, device="cpu", quiet=True, run_dir=tmp_path / name, **kw
    )


def test_learns_digits_and_writes_run(tmp_path: Path) -> None:
    res = _train(tmp_path, "a", epochs=4)
    assert res["test_accuracy"] > 0.85  # chance is 0.10
    run = Path(res["run_dir"])
    for name in ("config.yaml", "events.jsonl", "checkpoint.pt", "model.pt", "results.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*.tmp"))
    events = [e["event"] for e in RunDir(run).events()]
    assert events.count("epoch") == 4 and events[-1] == "done"
    model, blob = load_model_file(run)
    assert blob["arch"] == ARCH
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = _train(tmp_path, "straight", epochs=3)
    with _interrupted_after(epochs=2), pytest.raises(Interrupted) as info:
        _train(tmp_path, "part", epochs=3)
    run = tmp_path / "part"
    assert f"edgenas train --resume {run}" in info.value.hint
    assert RunDir(run).events()[-1] == {**RunDir(run).events()[-1], "event": "interrupted", "epochs_completed": 2}
    assert torch.load(run / "checkpoint.pt", weights_only=False)["epoch"] == 2
    assert not (run / "model.pt").exists()
    resumed = train_arch("", resume=run, device="cpu", quiet=True)
    assert resumed["resumed_from_epoch"] == 2
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    state_a = torch.load(Path(straight["run_dir"]) / "model.pt", weights_only=True)["state_dict"]
    state_b = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@contextmanager
def _interrupted_after(epochs: int) -> Iterator[None]:
    """Make training stop like a Ctrl-C once `epochs` epochs are checkpointed."""
    original = Trainer.save_checkpoint

    def save_then_maybe_stop(self: Trainer) -> None:
        original(self)
        if self.epoch >= epochs:
            raise KeyboardInterrupt

    Trainer.save_checkpoint = save_then_maybe_stop
    try:
        yield
    finally:
        Trainer.save_checkpoint = original


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no such run directory"):
        train_arch("", resume=tmp_path / "missing", quiet=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.yaml").write_text("command: quickstart\noptions: {}\n")
    with pytest.raises(ResumeError, match="made by `edgenas quickstart`"):
        train_arch("", resume=tmp_path / "other", quiet=True)


def test_bad_arch_creates_no_run(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown op"):
        train_arch("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", dataset="digits", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_divergence_is_a_user_error(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e6, grad_clip=None, momentum=0.0, seed=0)
    with pytest.raises(UserError, match="lower --lr"):
        train_arch(ARCH, dataset="digits", width=8, train=cfg, device="cpu", quiet=True, run_dir=tmp_path / "d")


@pytest.mark.parametrize("steps", [1, 4, 7, 8, 50])
def test_schedule_handles_short_runs(steps: int) -> None:
    from edgenas.train.trainer import make_optimizer, make_scheduler

    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(epochs=1, lr=0.1)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(0 <= lr <= 0.1 + 1e-12 for lr in lrs)
    assert lrs[-1] < 0.01  # annealed by the end either way
