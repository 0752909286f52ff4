"""Trainer hooks: where they run in the loop, what they may change, and what the checkpoint keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgenas.core.errors import ResumeError
from edgenas.core.rundir import RunDir
from edgenas.data import Split
from edgenas.train.trainer import CHECKPOINT, TrainConfig, Trainer, TrainHooks


class Data:
    """Only a training split: hooks that need no val/test split need no more."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.train = Split(torch.randn(64, 1, 4, 4, generator=g), torch.randint(0, 3, (64,), generator=g))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


CFG = TrainConfig(epochs=2, batch_size=16, lr=0.05, weight_decay=0.0, schedule="cosine", seed=1)


class Recorder(TrainHooks):
    """Logs every call; keeps a count as checkpointed state; adds a record field."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.steps = 0

    def before_epoch(self, trainer: Trainer) -> None:
        self.calls.append(f"before_epoch {trainer.epoch}")

    def after_backward(self, trainer: Trainer, step: int) -> None:
        assert all(p.grad is not None for p in trainer.model.parameters())
        self.calls.append("after_backward")

    def after_step(self, trainer: Trainer, step: int) -> None:
        self.steps += 1
        self.calls.append("after_step")

    def evaluate(self, trainer: Trainer) -> dict[str, Any]:
        self.calls.append("evaluate")
        return {"val_score": 0.5}

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.calls.append("after_epoch")
        record["steps_so_far"] = self.steps

    def test(self, trainer: Trainer) -> dict[str, Any]:
        return {"test_score": 1.0}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


def test_hooks_run_in_order_and_shape_the_records_and_results(tmp_path: Path) -> None:
    hooks = Recorder()
    run = RunDir.create("train", tmp_path / "r")
    res = Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True, hooks=hooks, checkpoint="ck.pt").fit()
    per_epoch = ["after_backward", "after_step"] * 4 + ["evaluate", "after_epoch"]
    assert hooks.calls == ["before_epoch 0", *per_epoch, "before_epoch 1", *per_epoch]
    assert res["test_score"] == 1.0 and res["epochs"] == 2
    assert [h["steps_so_far"] for h in res["history"]] == [4, 8]
    assert list(res["history"][0])[:3] == ["epoch", "train_loss", "val_score"]
    ckpt = torch.load(run.file("ck.pt"), weights_only=False)
    assert ckpt["hooks"] == {"steps": 8} and not run.file(CHECKPOINT).exists()
    assert [e["steps_so_far"] for e in run.events() if e["event"] == "epoch"] == [4, 8]


def test_hook_state_is_restored_and_required_on_resume(tmp_path: Path) -> None:
    run = RunDir.create("train", tmp_path / "r")
    Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True, hooks=Recorder()).fit()
    hooks = Recorder()
    trainer = Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True, hooks=hooks)
    assert trainer.load_checkpoint() and hooks.steps == 8 and trainer.epoch == 2
    # a checkpoint without the state these hooks keep cannot resume them
    blob = torch.load(run.file(CHECKPOINT), weights_only=False)
    del blob["hooks"]
    torch.save(blob, run.file(CHECKPOINT))
    with pytest.raises(ResumeError, match="lacks this training's extra state"):
        Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True, hooks=Recorder()).load_checkpoint()


def test_classification_checkpoints_keep_their_format(tmp_path: Path) -> None:
    """No hook state, no `hooks` key: checkpoints read the same by older code and newer."""
    run = RunDir.create("train", tmp_path / "r")
    data = Data()
    data.val = data.test = data.train  # type: ignore[attr-defined]
    res = Trainer(_model(), data, CFG, torch.device("cpu"), run, quiet=True).fit()
    blob = torch.load(run.file(CHECKPOINT), weights_only=False)
    keys = {"model", "optimizer", "scheduler", "epoch", "history", "train_seconds", "config"}
    assert set(blob) == keys
    assert set(res) == {"test_accuracy", "test_loss", "test_images", "epochs", "train_seconds", "history"}
    assert list(res["history"][0]) == ["epoch", "train_loss", "val_accuracy", "lr", "seconds", "images_per_s"]


class SecondOptimiser(TrainHooks):
    """Trains the parameters left out of `params` with its own optimiser; freezes one by its grad."""

    def __init__(self, extra: list[nn.Parameter], frozen: nn.Parameter) -> None:
        self.opt = torch.optim.SGD(extra, lr=0.5)
        self.frozen = frozen

    def after_backward(self, trainer: Trainer, step: int) -> None:
        self.frozen.grad = None  # before clipping and the step: the optimiser skips it

    def after_step(self, trainer: Trainer, step: int) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def test_params_and_step_hooks_split_the_model_between_optimisers() -> None:
    model = _model()
    first, last = model[1], model[3]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = SecondOptimiser([last.bias], frozen=first.bias)
    params = [first.weight, first.bias, last.weight]
    trainer = Trainer(model, Data(), CFG, torch.device("cpu"), quiet=True, hooks=hooks, params=params)
    assert sum(len(g["params"]) for g in trainer.opt.param_groups) == 3
    trainer.fit()
    after = model.state_dict()
    assert torch.equal(after["1.bias"], before["1.bias"])  # its gradient was removed after backward
    for k in ("1.weight", "3.weight", "3.bias"):  # the main optimiser's, and the hook's own
        assert not torch.equal(after[k], before[k]), k


def test_an_old_checkpoint_format_is_upgraded_by_the_hooks(tmp_path: Path) -> None:
    class Upgrading(TrainHooks):
        def upgrade_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> dict[str, Any]:
            if "weights" not in state:
                return state
            state = {**state, "model": state.pop("weights"), "config": trainer.cfg.model_dump()}
            state["train_seconds"] = state.pop("seconds")
            return state

    run = RunDir.create("train", tmp_path / "r")
    Trainer(_model(), Data(), CFG.model_copy(update={"epochs": 1}), torch.device("cpu"), run, quiet=True,
            hooks=Upgrading()).fit()  # fmt: skip
    blob = torch.load(run.file(CHECKPOINT), weights_only=False)
    old = {**blob, "weights": blob.pop("model"), "seconds": blob.pop("train_seconds")}
    del old["config"]
    torch.save(old, run.file(CHECKPOINT))
    trainer = Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True, hooks=Upgrading())
    with pytest.raises(ResumeError, match="other training options"):  # without the upgrade: refused
        Trainer(_model(), Data(), CFG, torch.device("cpu"), run, quiet=True).load_checkpoint()
    assert trainer.load_checkpoint() and trainer.epoch == 1
    state = trainer.model.state_dict()
    assert state.keys() == old["weights"].keys() and all(torch.equal(state[k], old["weights"][k]) for k in state)
