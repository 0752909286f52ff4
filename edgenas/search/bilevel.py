"""The bilevel search loop with a per-epoch checkpoint, shared by DCA-NAS and DNAD.

Both searches alternate a step of the supernet weights (`w_opt`, `w_sched`) with a step of
the architecture parameters (`a_opt`), epoch by epoch, warm-up first (the first-order
alternation of DARTS, Liu et al., ICLR 2019). After every finished epoch an atomic
checkpoint is saved, so `--resume` continues an interrupted run with the batches it would
have seen. What differs between methods (architecture parameters, multipliers, deletions,
snapshots) stays in each method, which adds its own checkpoint fields through
`_own_state` / `_restore_own_state`. The checkpoint's file name and keys are those of runs
made before this module existed, so those runs still resume.

`SearchOptions` is the base of a method's options. Options kept only to measure an
alternative (ablations) live in an `experimental` sub-model; they are also accepted flat,
as command lines, run configs and run folders made before the sub-model give them.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from rich.progress import Progress, TaskID
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import ConfigError, Interrupted, ResumeError
from edgenas.core.precision import Precision, resolve_precision
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir

CHECKPOINT = "search_checkpoint.pt"
EXPERIMENTAL = "experimental"
LEGACY = "__legacy__"
"""Key of a method's `legacy_options`: values for options missing from a run made before they
existed. Given under their own key, they fill a gap and cannot clash with a stored option."""
_Options = TypeVar("_Options", bound="SearchOptions")  # typing.Self needs Python 3.11


def flat_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options with the `experimental` ones lifted to the top level (as runs made before it stored them)."""
    flat = {k: v for k, v in options.items() if k != EXPERIMENTAL}
    nested = options.get(EXPERIMENTAL) or {}
    return flat | dict(nested)


class ExperimentalOptions(BaseModel):
    """Base of a method's `experimental` options: kept to measure an alternative (ablations), not to
    tune a search; each method's docs/methods/<method>.md says why each is there and what it measured."""

    model_config = ConfigDict(extra="forbid")


class SearchOptions(BaseModel):
    """Base of a search's options: recorded in the run, so unknown keys are refused, not ignored.

    A subclass may declare `experimental: <Its>Experimental` (a model with extra="forbid") for
    options that exist only for ablations. Those options are accepted flat as well and moved
    under `experimental` before validation; one given both ways is a `ConfigError`.
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def experimental_names(cls) -> frozenset[str]:
        """Names of the options under `experimental` (none if the method has no such sub-model)."""
        field = cls.model_fields.get(EXPERIMENTAL)
        model = field.annotation if field is not None else None
        if isinstance(model, type) and issubclass(model, BaseModel):
            return frozenset(model.model_fields)
        return frozenset()

    @model_validator(mode="before")
    @classmethod
    def _nest_experimental(cls, data: Any) -> Any:
        """Move flat experimental options under `experimental`; fill `LEGACY` values where an option is missing."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        legacy = dict(data.pop(LEGACY, None) or {})
        names = cls.experimental_names()
        nested = data.get(EXPERIMENTAL)
        if isinstance(nested, BaseModel):
            nested = nested.model_dump()
        if names and (nested is None or isinstance(nested, Mapping)):  # another type: the field names it
            nested = dict(nested or {})
            both = sorted(names & data.keys() & nested.keys())
            if both:
                raise ConfigError(f"{', '.join(both)}: given both flat and under {EXPERIMENTAL}; give each option once")
            nested |= {k: data.pop(k) for k in names & data.keys()}
            nested |= {k: legacy.pop(k) for k in names & legacy.keys() if k not in nested}
            data[EXPERIMENTAL] = nested
        return {k: v for k, v in legacy.items() if k not in names} | data

    @classmethod
    def from_options(cls: type[_Options], options: Mapping[str, Any] | None) -> _Options:
        """Validated options; a bad one is a `ConfigError` naming it, not a pydantic traceback.

        An experimental option given flat is named flat (`penalty`), one given nested by its
        path (`experimental.penalty`).
        """
        options = dict(options or {})
        try:
            return cls(**options)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(p) for p in first["loc"]]
            if len(loc) > 1 and loc[0] == EXPERIMENTAL and loc[1] in options:
                loc = loc[1:]
            raise ConfigError(f"{'.'.join(loc) or 'search options'}: {first['msg']}") from None

    def flat(self) -> dict[str, Any]:
        """Every option by its own name, the experimental ones lifted to the top level."""
        return flat_options(self.model_dump())


class BilevelSearch(ABC):
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
    _precision: Precision | None = None  # set on first use (`step_precision`)
    _resumed_channels_last: bool | None = None  # the memory format a resumed checkpoint ran in

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
    @abstractmethod
    def train_epoch(self, bar: Progress, task: TaskID) -> dict[str, Any]:
        """One epoch of steps; returns its statistics, `seconds` among them."""

    @abstractmethod
    def record(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The history entry of the epoch just finished."""

    @abstractmethod
    def _own_state(self) -> dict[str, Any]:
        """The method's own checkpoint fields (architecture parameters, multipliers, ...)."""

    @abstractmethod
    def _restore_own_state(self, state: dict[str, Any]) -> None:
        """Put back what `_own_state` saved."""

    def _count_epoch(self, stats: dict[str, Any]) -> None:
        """Add a finished epoch's time to the totals (a method may keep more than wall seconds)."""
        self.seconds += stats["seconds"]

    def finished(self) -> bool:
        """True once the method stops before `cfg.epochs` (DNAD's paper variant: sparsity under S_min)."""
        return False

    def _epoch_status(self, rec: dict[str, Any]) -> str | None:
        """Progress-bar status after an epoch, or None to leave the last step's."""
        return None

    def step_precision(self) -> Precision:
        """How the steps compute: bf16 autocast on CUDA (fp32 elsewhere), channels_last everywhere.

        channels_last follows `--no-channels-last` / `EDGENAS_CHANNELS_LAST` as training does
        (CPU searches here: DARTS 1.18x, mobile 1.57x faster, NB201 the same; docs/methods/dca.md).
        A resumed search keeps the format its checkpoint was made with (NCHW for CPU searches
        made before it was on), so resume stays bit-exact. GPUs without bf16 run fp32: the α
        steps take gradients with `autograd.grad`, which a loss scaler does not reach. The net is
        put in the chosen format on first use.
        """
        if self._precision is None:
            p = resolve_precision(self.device, fp16=False)
            if self._resumed_channels_last is not None:
                p = Precision(p.device, p.amp_dtype, self._resumed_channels_last)
            self.net.to(memory_format=torch.channels_last if p.channels_last else torch.contiguous_format)
            self._precision = p
        return self._precision

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
            "channels_last": self.step_precision().channels_last,
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
        # runs made before the `experimental` sub-model stored every option flat: compare flat
        if dict(self.LEGACY_OPTIONS) | flat_options(state["config"]) != self.cfg.flat():
            raise ResumeError(f"{path}: made with other search options; resume with the same ones")
        self.net.load_state_dict(state["net"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.w_sched.load_state_dict(state["w_sched"])
        self.a_opt.load_state_dict(state["a_opt"])
        self._restore_own_state(state)
        self.epoch, self.history, self.seconds = state["epoch"], state["history"], state["seconds"]
        # a checkpoint without the key was made when CPU searches always ran NCHW (CUDA: the switch)
        self._resumed_channels_last = state.get("channels_last", None if self.device.type == "cuda" else False)
        self._precision = None
        return True

    # -- loop ------------------------------------------------------------------------------
    def fit(self) -> None:
        """Search for the remaining epochs, checkpointing after each, until `finished`."""
        warmup, searching = self.PHASES
        with progress_bar(self.quiet) as bar:
            for epoch in range(self.epoch, self.cfg.epochs):
                if self.finished():
                    break
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
