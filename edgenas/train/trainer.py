"""Supervised training with per-epoch atomic checkpoints and exact resume.

Why it is built this way:
- Shuffling order is a function of (seed, epoch) (`BatchLoader.set_epoch`), so a run
  resumed from the checkpoint of epoch k continues exactly as if never interrupted.
- The checkpoint (model, optimiser, scheduler, history) is written atomically at the end
  of every epoch; `kill -9` loses at most the epoch in progress.
- The loop is fixed and tasks plug into it (as in torchdistill's training boxes):
  `loss_fn` (cross-entropy by default; distillation adds its terms there) and a
  `TrainHooks` object (gradient edits after backward, extra optimisers after the step,
  per-epoch metrics and record fields, extra checkpoint state). The defaults are
  classification's behaviour; retrieval's CDD stages (`edgenas.tasks.retrieval.stages`)
  use every hook.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import ResumeError, UserError
from edgenas.core.precision import Precision, clip_and_step, resolve_precision
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.data.base import BatchLoader, Split, make_loader
from edgenas.data.stream import StreamLoader, StreamSplit
from edgenas.train.evaluate import evaluate

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

CHECKPOINT = "checkpoint.pt"
MIN_ONECYCLE_STEPS = 8


class TrainingDiverged(UserError):
    """The loss became NaN/inf: the learning rate is too high for this model."""


class TrainData(Protocol):
    """What the trainer reads from a dataset: the training split (the hooks read the rest)."""

    train: Split | StreamSplit


class TrainConfig(BaseModel):
    """The training protocol; recorded in every run so results can be reproduced."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(3, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "onecycle"] = "onecycle"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(5.0, gt=0)
    augment: Literal["crop-flip", "rrc-flip"] | None = None
    eval_batch_size: int = Field(512, ge=1)
    seed: int = 0


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, params: list[nn.Parameter] | None = None
) -> torch.optim.Optimizer:
    """SGD with weight decay on weights only (not on BN/bias parameters, which it only harms).

    `params`: the parameters to train (default: every parameter of `model` that requires grad).
    """
    params = [p for p in model.parameters() if p.requires_grad] if params is None else params
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: one-cycle (fast convergence in few epochs) or cosine to zero.

    One-cycle's warm-up phase needs a few steps (torch divides by zero below 8 in all);
    shorter runs, such as smoke tests on tiny subsets, use the cosine schedule.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and total >= MIN_ONECYCLE_STEPS:
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25, div_factor=10.0, final_div_factor=100.0
        )
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))


def cross_entropy_loss(label_smoothing: float) -> LossFn:
    """The default task loss."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss


class TrainHooks:
    """Where a task plugs into `Trainer`'s loop; these no-op defaults change nothing.

    One step: `loss_fn` → finite check → zero grads → backward → `after_backward` → clip →
    optimiser step → `after_step` → scheduler step. One epoch: `before_epoch`, the steps,
    `evaluate` (its metrics go into the epoch's record), `after_epoch` (may add fields to
    the record), then the checkpoint. `fit` ends by merging `test` into its results.
    """

    def before_epoch(self, trainer: Trainer) -> None:
        """Before the first step of an epoch (`trainer.epoch` = epochs completed so far)."""

    def after_backward(self, trainer: Trainer, step: int) -> None:
        """After `backward`, before clipping: the place to edit `.grad`."""

    def after_step(self, trainer: Trainer, step: int) -> None:
        """After the optimiser's step, before the scheduler's: the place to step other optimisers."""

    def evaluate(self, trainer: Trainer) -> dict[str, Any]:
        """Metrics of the model at the end of an epoch, logged in its record."""
        return {}

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """Add fields to the epoch's record before it is checkpointed and logged."""

    def test(self, trainer: Trainer) -> dict[str, Any]:
        """Metrics of the final model, merged into `fit`'s results."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State the checkpoint must keep besides model, optimiser and scheduler ({}: none)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def upgrade_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint written in an older format, in today's (the default: unchanged)."""
        return state


class ClassificationHooks(TrainHooks):
    """The default: validation accuracy after every epoch, test accuracy and loss at the end."""

    def evaluate(self, trainer: Trainer) -> dict[str, Any]:
        val: Split | StreamSplit = trainer.data.val  # type: ignore[attr-defined]
        if not len(val):
            return {"val_accuracy": None}
        return {"val_accuracy": trainer.evaluate(val)["accuracy"]}

    def test(self, trainer: Trainer) -> dict[str, Any]:
        test = trainer.evaluate(trainer.data.test)  # type: ignore[attr-defined]
        return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "test_images": test["n"]}


class Trainer:
    """Trains one model on one dataset, checkpointing into a run directory.

    `hooks` (default `ClassificationHooks`) adapt the loop to a task; `params` are what the
    optimiser trains and clipping sees (default: every parameter that requires grad);
    `checkpoint` names the checkpoint file in the run, so several trainers (stages) can
    share one run; `precision` (default: `resolve_precision(device)`: AMP on CUDA, never on
    CPU) sets autocast and loss scaling; `channels_last` (default: the precision's, on
    unless switched off) sets the memory format of the model and its inputs; `name` labels
    the progress bar and errors; `train_batches` replaces the shuffled training loader (e.g.
    identity-balanced batches; its order must be a function of (seed, epoch) for exact resume).
    Streaming splits are read through their `StreamLoader`
    (pinned batches on CUDA).
    """

    def __init__(
        self,
        model: nn.Module,
        data: TrainData,
        cfg: TrainConfig,
        device: torch.device,
        run: RunDir | None = None,
        loss_fn: LossFn | None = None,
        quiet: bool = False,
        *,
        hooks: TrainHooks | None = None,
        params: list[nn.Parameter] | None = None,
        checkpoint: str = CHECKPOINT,
        channels_last: bool | None = None,
        name: str | None = None,
        precision: Precision | None = None,
        train_batches: BatchLoader | StreamLoader | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.run = run
        self.quiet = quiet
        self.data = data
        self.hooks = hooks or ClassificationHooks()
        self.checkpoint_name = checkpoint
        self.name = name
        precision = precision or resolve_precision(device, channels_last=channels_last)
        if channels_last is not None and channels_last != precision.channels_last:
            precision = Precision(precision.device, precision.amp_dtype, channels_last)
        self.precision = precision
        self.channels_last = precision.channels_last
        self.scaler = precision.scaler()
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = loss_fn or cross_entropy_loss(cfg.label_smoothing)
        pin = device.type == "cuda"
        self.train_batches = train_batches or make_loader(
            data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True, augment=cfg.augment, pin_memory=pin
        )
        if train_batches is None and len(self.train_batches) == 0:
            self.train_batches = make_loader(
                data.train, cfg.batch_size, shuffle=True, seed=cfg.seed, augment=cfg.augment, pin_memory=pin
            )
        self.opt = make_optimizer(self.model, cfg, params)
        self.params = params  # what clipping sees; None: every parameter (those without grads are skipped)
        self.sched = make_scheduler(self.opt, cfg, len(self.train_batches))
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.train_seconds = 0.0

    def evaluate(self, split: Split | StreamSplit) -> dict[str, Any]:
        """Accuracy and loss of the model on `split` (this trainer's device, precision and memory format)."""
        batches = make_loader(split, self.cfg.eval_batch_size, pin_memory=self.device.type == "cuda")
        return evaluate(self.model, batches, self.device, self.precision)

    # -- checkpoints -------------------------------------------------------------------
    def checkpoint_path(self) -> Path | None:
        return self.run.file(self.checkpoint_name) if self.run else None

    def save_checkpoint(self) -> None:
        path = self.checkpoint_path()
        if path is None:
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "train_seconds": self.train_seconds,
            "config": self.cfg.model_dump(),
        }
        extra = self.hooks.state_dict()
        if extra:
            state["hooks"] = extra
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        atomic_torch_save(path, state)

    def load_checkpoint(self) -> bool:
        """Restore from the run's checkpoint if there is one; True if restored."""
        path = self.checkpoint_path()
        if path is None or not path.exists():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:  # a file we wrote atomically should never be torn
            raise ResumeError(f"{path}: cannot read checkpoint ({exc}); delete it to restart the run") from None
        state = self.hooks.upgrade_checkpoint(self, state)
        if state.get("config") != self.cfg.model_dump():
            raise ResumeError(f"{path}: checkpoint was made with other training options; resume with the same ones")
        if self.hooks.state_dict() and "hooks" not in state:
            raise ResumeError(f"{path}: checkpoint lacks this training's extra state; delete it to restart the run")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        if "hooks" in state:
            self.hooks.load_state_dict(state["hooks"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.train_seconds = state["train_seconds"]
        return True

    # -- loop --------------------------------------------------------------------------
    def train_epoch(self, bar, task) -> dict:
        self.model.train()
        self.train_batches.set_epoch(self.epoch)
        self.hooks.before_epoch(self)
        loss_sum, seen = 0.0, 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.train_batches):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast():
                loss = self.loss_fn(self.model, x, y)
            if not torch.isfinite(loss):
                who = f"{self.name}: " if self.name else ""
                raise TrainingDiverged(
                    f"{who}training diverged at epoch {self.epoch + 1} step {step} (loss={loss.item()}); lower --lr"
                )
            self.opt.zero_grad(set_to_none=True)
            clip_and_step(
                self.opt,
                self.scaler,
                loss,
                self.model.parameters() if self.params is None else self.params,
                self.cfg.grad_clip,
                after_backward=lambda step=step: self.hooks.after_backward(self, step),
            )
            self.hooks.after_step(self, step)
            self.sched.step()
            loss_sum += loss.item() * y.numel()
            seen += y.numel()
            bar.update(task, advance=1, status=f"loss {loss_sum / seen:.3f}")
        seconds = time.perf_counter() - start
        return {
            "train_loss": loss_sum / max(seen, 1),
            "images": seen,
            "seconds": seconds,
            "images_per_s": seen / max(seconds, 1e-9),
        }

    def train_epochs(self) -> None:
        """Train for the configured epochs (continuing after a restored checkpoint)."""
        label = f"{self.name} " if self.name else "epoch "
        with progress_bar(self.quiet) as bar:
            for epoch in range(self.epoch, self.cfg.epochs):
                task = bar.add_task(f"{label}{epoch + 1}/{self.cfg.epochs}", total=len(self.train_batches), status="")
                stats = self.train_epoch(bar, task)
                metrics = self.hooks.evaluate(self)
                self.epoch = epoch + 1
                self.train_seconds += stats["seconds"]
                record = {
                    "epoch": self.epoch,
                    "train_loss": round(stats["train_loss"], 5),
                    **metrics,
                    "lr": self.opt.param_groups[0]["lr"],
                    "seconds": round(stats["seconds"], 2),
                    "images_per_s": round(stats["images_per_s"], 1),
                }
                self.hooks.after_epoch(self, record)
                self.history.append(record)
                shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
                bar.update(task, status=f"loss {record['train_loss']:.3f} {shown}".rstrip())
                self.save_checkpoint()
                if self.run:
                    self.run.event("epoch", **record)

    def fit(self) -> dict:
        """Train for the configured epochs, then test: the results of the run."""
        self.train_epochs()
        return {
            **self.hooks.test(self),
            "epochs": self.epoch,
            "train_seconds": round(self.train_seconds, 2),
            "history": self.history,
        }
