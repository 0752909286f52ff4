"""The bilevel search loop with a per-epoch checkpoint, shared by DCA-NAS and DNAD.

Both searches train supernet weights with one optimiser (`w_opt`, `w_sched`) and the
architecture parameters with another (`a_opt`), epoch by epoch, warm-up first; both save
an atomic checkpoint after every finished epoch so `--resume` continues where an
interrupted run stopped, with the same batches it would have seen. What differs (the
architecture parameters, the multipliers, deletions, snapshots) stays in each method:
it adds its own fields to the checkpoint through `_own_state` / `_restore_own_state`.

The file name and the keys written here are those of the runs made before this module
existed, so those runs still resume.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.progress import Progress, TaskID
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import ConfigError, Interrupted, ResumeError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir

CHECKPOINT = "search_checkpoint.pt"
_Options = TypeVar("_Options", bound="SearchOptions")  # typing.Self needs Python 3.11


class SearchOptions(BaseModel):
    """Base of a search's options: recorded in the run, so unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def from_options(cls: type[_Options], options: dict[str, Any] | None) -> _Options:
        """Validated options; a bad one is a `ConfigError` naming it, not a pydantic traceback."""
        try:
            return cls(**(options or {}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "search options"
            raise ConfigError(f"{where}: {first['msg']}") from None


class BilevelSearch:
    """Epoch loop, progress bar and checkpoint of a warm-up-then-search bilevel search.

    A subclass sets the attributes declared below in its `__init__` and implements
    `train_epoch`, `record`, `_own_state` and `_restore_own_state`.
    """

    PHASES: ClassVar[tuple[str, str]] = ("warm-up", "search")
    """Progress-bar label of a warm-up epoch and of a searching one."""
    EVENT_OMITS: ClassVar[tuple[str, ...]] = ()
    """Keys of an epoch's record too large for the event log (they stay in the history)."""
    LEGACY_OPTIONS: ClassVar[Mapping[str, Any]] = {}
    """Options added after the first runs, with the values that reproduce those runs (for resume)."""

    cfg: Any  # the method's pydantic config: `epochs`, `warmup_epochs`, `model_dump()`
    net: nn.Module
    w_opt: torch.optim.Optimizer
    w_sched: torch.optim.lr_scheduler.LRScheduler
    a_opt: torch.optim.Optimizer
    train_batches: Any  # the w-step batches: len(), set_epoch(epoch), iteration
    val_batches: Any  # the α-step batches, the same interface
    device: torch.device
    run: RunDir | None
    quiet: bool
    epoch: int
    history: list[dict[str, Any]]
    seconds: float

    # -- what each method provides -------------------------------------------------------
    def train_epoch(self, bar: Progress, task: TaskID) -> dict[str, Any]:
        """One epoch of steps; returns its statistics, `seconds` among them."""
        raise NotImplementedError

    def record(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The history entry of the epoch just finished."""
        raise NotImplementedError

    def _own_state(self) -> dict[str, Any]:
        """The method's own checkpoint fields (architecture parameters, multipliers, ...)."""
        raise NotImplementedError

    def _restore_own_state(self, state: dict[str, Any]) -> None:
        """Put back what `_own_state` saved."""
        raise NotImplementedError

    def _count_epoch(self, stats: dict[str, Any]) -> None:
        """Add a finished epoch's time to the totals (a method may keep more than wall seconds)."""
        self.seconds += stats["seconds"]

    def _epoch_status(self, rec: dict[str, Any]) -> str | None:
        """Progress-bar status after an epoch, or None to leave the last step's."""
        return None

    def epoch_batches(self) -> tuple[bool, Iterator[tuple[Any, Any]]]:
        """Whether α is searched this epoch, and the epoch's (w batch, α batch or None) pairs.

        One pair per w batch; the α batches cycle when there are fewer of them, and are None
        during warm-up. Both orders are a function of (seed, epoch), so a resumed epoch sees
        the batches an uninterrupted one would have.
        """
        search_alpha = self.epoch >= self.cfg.warmup_epochs
        self.train_batches.set_epoch(self.epoch)
        self.val_batches.set_epoch(self.epoch)
        val_iter = itertools.cycle(self.val_batches) if search_alpha else itertools.repeat(None)
        return search_alpha, zip(self.train_batches, val_iter, strict=False)

    def _w_update(self, loss: torch.Tensor, params: Iterable[torch.Tensor]) -> None:
        """Backward and one clipped step of the weights and their schedule.

        A non-finite loss stops the search with the usual cure rather than training on NaNs.
        """
        if not torch.isfinite(loss):
            raise ConfigError(f"search diverged at epoch {self.epoch + 1} (loss={loss.item()}); lower --w-lr")
        self.w_opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.w_opt.step()
        self.w_sched.step()

    # -- checkpoint ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "w_opt": self.w_opt.state_dict(),
            "w_sched": self.w_sched.state_dict(),
            "a_opt": self.a_opt.state_dict(),
            **self._own_state(),
            "epoch": self.epoch,
            "history": self.history,
            "seconds": self.seconds,
            "config": self.cfg.model_dump(),
        }

    def save_checkpoint(self) -> None:
        if self.run is not None:
            atomic_torch_save(self.run.file(CHECKPOINT), self._state())

    def load_checkpoint(self) -> bool:
        """Restore the last finished epoch from the run folder; True if there was one."""
        if self.run is None or not self.run.file(CHECKPOINT).exists():
            return False
        path = self.run.file(CHECKPOINT)
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as exc:
            raise ResumeError(f"{path}: cannot read the search checkpoint ({exc}); delete it to restart") from None
        if dict(self.LEGACY_OPTIONS) | state["config"] != self.cfg.model_dump():
            raise ResumeError(f"{path}: made with other search options; resume with the same ones")
        self.net.load_state_dict(state["net"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        self.a_opt.load_state_dict(state["a_opt"])
        self._restore_own_state(state)
        self.epoch, self.history, self.seconds = state["epoch"], state["history"], state["seconds"]
        return True

    # -- loop ------------------------------------------------------------------------------
    def fit(self) -> None:
        """Search for the remaining epochs, checkpointing after each."""
        warmup, searching = self.PHASES
        with progress_bar(self.quiet) as bar:
            for epoch in range(self.epoch, self.cfg.epochs):
                phase = warmup if epoch < self.cfg.warmup_epochs else searching
                task = bar.add_task(f"{phase} {epoch + 1}/{self.cfg.epochs}", total=len(self.train_batches), status="")
                stats = self.train_epoch(bar, task)
                self.epoch = epoch + 1
                self._count_epoch(stats)
                rec = self.record(stats)
                self.history.append(rec)
                status = self._epoch_status(rec)
                if status is not None:
                    bar.update(task, status=status)
                self.save_checkpoint()
                if self.run is not None:
                    self.run.event("epoch", **{k: v for k, v in rec.items() if k not in self.EVENT_OMITS})

    def resume_and_fit(self, resume_hint: str) -> int | None:
        """Resume from the run's checkpoint if there is one, then `fit`; the epoch resumed from, or None.

        An interrupt is logged and becomes `Interrupted`, whose hint says how to resume.
        """
        assert self.run is not None, "a resumable search needs a run folder"
        run = self.run
        resumed_from = self.epoch if self.load_checkpoint() else None
        run.event("start", resumed_from_epoch=resumed_from, device=str(self.device), threads=torch.get_num_threads())
        try:
            self.fit()
        except KeyboardInterrupt:
            run.event("interrupted", epochs_completed=self.epoch)
            raise Interrupted(f"finished search epochs are saved in {run.path}; {resume_hint}") from None
        return resumed_from
