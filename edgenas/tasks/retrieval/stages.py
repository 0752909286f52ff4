"""The stages of a retrieval run, declared as a list and run in order on the shared `Trainer`.

A role is its list of stages (`stages_for`), in the manner of torchdistill's multi-stage
training box:
- `teacher`: [train]: CE on ids + batch-hard triplet;
- `cdd`: [compress, prune, finetune]: capacity dynamic distillation (Xie, Zhang, Xu, Zhu,
  He, "Towards a Smaller Student: Capacity Dynamic Distillation for Efficient Image
  Retrieval", CVPR 2023, arXiv 2303.09230): a student as wide as the teacher is distilled
  while it shrinks (variant `edgenas`: gates under `CDDController`, to a budget; variant
  `paper`: compactors under `CompactorController`, a full-capacity phase then gradient
  resetting, the ratio emerging from the lasso), then pruned physically and (by default
  for `edgenas` only) fine-tuned; `docs/methods/cdd.md` says where edgenas departs from
  the paper;
- `static`: [train]: the static-KD baseline, a fixed student distilled for as many epochs.
A training stage is the shared trainer plus `RetrievalHooks` (the retrieval loss; for
compression, the gate optimiser, gradient resetting and channel removal around each
step). Each stage checkpoints every epoch (`ckpt-<stage>.pt`) and writes its output
(`stage-<stage>.pt`) when done, so a resumed run skips finished stages and loses at most
the epoch in progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.data.base import Split
from edgenas.distill.losses import embedding_kd, hinton_kd, rkd_distance
from edgenas.tasks.retrieval.cdd import CapacityCost, CDDController, CompactorController
from edgenas.tasks.retrieval.data import PKBatchLoader, RetrievalSplits
from edgenas.tasks.retrieval.losses import batch_hard_triplet
from edgenas.tasks.retrieval.model import ResNetConfig, ResNetEmbed
from edgenas.tasks.retrieval.options import RetrievalOptions
from edgenas.tasks.retrieval.prune import max_output_diff, merge_compactors, prune_gated
from edgenas.train.trainer import TrainConfig, Trainer, TrainHooks

__all__ = [
    "EmbeddingClassifier",
    "PruneStage",
    "RetrievalHooks",
    "StageContext",
    "StageDef",
    "StageState",
    "TrainStage",
    "run_stages",
    "stages_for",
]


class EmbeddingClassifier(nn.Module):
    """What a training stage trains: the embedding network and its id classifier (training only)."""

    def __init__(self, net: ResNetEmbed, classifier: nn.Linear) -> None:
        super().__init__()
        self.net = net
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class StageContext:
    """What every stage reads: the run, its options and data, the (frozen) teacher."""

    run: RunDir
    opts: RetrievalOptions
    data: RetrievalSplits
    device: torch.device
    teacher: ResNetEmbed | None
    quiet: bool = False
    teacher_classifier: nn.Linear | None = None  # for the KL term on id logits


@dataclass
class StageState:
    """What flows from stage to stage, and what they report for `results.json`."""

    model: ResNetEmbed
    classifier: nn.Linear
    records: dict[str, Any] = field(default_factory=dict)  # per stage: seconds, epochs, history
    extra: dict[str, Any] = field(default_factory=dict)  # facts of the pruning


class RetrievalHooks(TrainHooks):
    """The retrieval loss, and with a CDD controller the compression around each step.

    Loss: CE with label smoothing on ids + batch-hard triplet, plus from the teacher (when
    there is one) embedding KD and relational (distance) KD, and for a CDD student KL(T)·T²
    on id logits and L2 between every block's pooled inner features (the paper's losses;
    each term by its weight). Compression, `edgenas` variant: the gates have their own
    optimiser (plain SGD: λ is calibrated to its step size); after `warmup_epochs`, the (reset)
    compression gradient is added after backward and gates under the threshold are removed
    after each step. `paper` variant: the compactors train with the network; after backward
    their rows get the group-lasso gradient, and after the full-capacity epochs the task
    gradient of the channels the teacher's neighbours rank unimportant is zeroed (masks
    updated at every step). Retrieval is scored once, on the final model.
    """

    def __init__(
        self,
        stage: str,
        opts: RetrievalOptions,
        teacher: ResNetEmbed | None,
        cdd: CDDController | CompactorController | None = None,
        teacher_classifier: nn.Linear | None = None,
        full_epochs: int = 0,
    ) -> None:
        self.stage, self.opts, self.teacher, self.cdd = stage, opts, teacher, cdd
        self.teacher_classifier, self.full_epochs = teacher_classifier, full_epochs
        gates = isinstance(cdd, CDDController)
        self.gate_opt = torch.optim.SGD(cdd.gate_parameters(), lr=cdd.cfg.gate_lr) if gates else None  # type: ignore[union-attr]
        self.compress = False  # edgenas: compression on this epoch; paper: gradient resetting on
        self.counts = {"removed": 0, "reset": 0, "pushed": 0}
        # the paper's terms apply to a CDD student (same architecture as its teacher)
        c = opts.cdd
        self.kl_weight = c.kl_weight if opts.role == "cdd" and teacher is not None else 0.0
        self.feature_weight = c.feature_weight if opts.role == "cdd" and teacher is not None else 0.0
        if self.kl_weight and teacher_classifier is None:
            raise ConfigError(
                "--kl-weight needs the teacher's id classifier, which model files made before issue 22 lack; "
                "retrain the teacher or pass --kl-weight 0"
            )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The `Trainer`'s `loss_fn` for an `EmbeddingClassifier`."""
        o = self.opts
        inner = self.feature_weight > 0 or isinstance(self.cdd, CompactorController)
        emb, s_pre, s_post = model.net.forward_inner(x) if inner else (model(x), [], [])
        logits = model.classifier(emb)
        loss = F.cross_entropy(logits, y, label_smoothing=o.label_smoothing)
        loss = loss + batch_hard_triplet(emb, y, o.margin)
        if self.teacher is None:
            return loss
        with torch.no_grad():
            t, t_pre, t_post = self.teacher.forward_inner(x) if inner else (self.teacher(x), [], [])
        if o.embed_kd_weight:
            loss = loss + o.embed_kd_weight * embedding_kd(emb, t)
        if o.rkd_weight:
            loss = loss + o.rkd_weight * rkd_distance(emb, t)
        if self.kl_weight:
            with torch.no_grad():
                t_logits = self.teacher_classifier(t)  # type: ignore[misc]
            loss = loss + self.kl_weight * hinton_kd(logits, t_logits, o.cdd.kl_temperature)
        if self.feature_weight:  # the authors' Fitnet_loss: Σ_blocks mean_n ‖t − s‖₂ of pooled bn1 outputs
            loss = loss + self.feature_weight * sum(
                (f - s).norm(dim=1).mean() for s, f in zip(s_pre, t_pre, strict=True)
            )
        if isinstance(self.cdd, CompactorController) and self.compress:
            self.counts["reset"] += self.cdd.update_masks(
                [f.detach().float() for f in s_post], [f.float() for f in t_post]
            )
        return loss

    def before_epoch(self, trainer: Trainer) -> None:
        if isinstance(self.cdd, CompactorController):
            self.compress = trainer.epoch >= self.full_epochs
        else:
            self.compress = self.cdd is not None and trainer.epoch >= self.cdd.cfg.warmup_epochs
        self.counts = {"removed": 0, "reset": 0, "pushed": 0}

    def after_backward(self, trainer: Trainer, step: int) -> None:
        if isinstance(self.cdd, CompactorController):
            self.cdd.adjust_grads(reset=self.compress)
        elif self.compress:
            stats = self.cdd.add_compression_grad()  # type: ignore[union-attr]
            self.counts["reset"] += stats["reset"]
            self.counts["pushed"] += stats["pushed"]

    def after_step(self, trainer: Trainer, step: int) -> None:
        if self.gate_opt is None or not isinstance(self.cdd, CDDController):
            return
        self.gate_opt.step()
        self.cdd.clamp_()
        self.gate_opt.zero_grad(set_to_none=True)  # the next backward starts the gates' gradients afresh
        if self.compress:
            self.counts["removed"] += self.cdd.remove_below_threshold()

    def after_epoch(self, trainer: Trainer, record: dict[str, Any]) -> None:
        record["stage"] = self.stage
        if isinstance(self.cdd, CompactorController):
            alive = self.cdd.alive()
            kept = CapacityCost(trainer.model.net.cfg).kept(alive)  # type: ignore[union-attr]
            record.update(
                phase="reset" if self.compress else "full-capacity",
                alive=alive,
                reset_channels=self.cdd.reset_channels(),
                newly_reset=self.counts["reset"],
                kept_params=round(kept["params"], 4),
                kept_flops=round(kept["flops"], 4),
            )
        elif self.cdd is not None:
            kept = self.cdd.kept()
            record.update(
                removed=self.counts["removed"],
                alive=self.cdd.alive(),
                kept_params=round(kept["params"], 4),
                kept_flops=round(kept["flops"], 4),
                gate_grads_reset=self.counts["reset"],
                gate_grads_pushed=self.counts["pushed"],
            )

    def state_dict(self) -> dict[str, Any]:
        if isinstance(self.cdd, CompactorController):
            return {"cdd": self.cdd.state_dict()}
        if self.cdd is None or self.gate_opt is None:
            return {}
        return {"gate_optimizer": self.gate_opt.state_dict(), "cdd": self.cdd.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if isinstance(self.cdd, CompactorController):
            self.cdd.load_state_dict(state["cdd"])
        elif self.cdd is not None and self.gate_opt is not None:
            self.gate_opt.load_state_dict(state["gate_optimizer"])
            self.cdd.load_state_dict(state["cdd"])

    def upgrade_checkpoint(self, trainer: Trainer, state: dict[str, Any]) -> dict[str, Any]:
        """A `ckpt-<stage>.pt` of edgenas before the stages ran on the shared trainer (network
        and classifier apart, no config: the stage's options came from the run's, as now)."""
        if "classifier" not in state:
            return state
        new = {
            "model": {
                **{f"net.{k}": v for k, v in state["model"].items()},
                **{f"classifier.{k}": v for k, v in state["classifier"].items()},
            },
            "optimizer": state["optimizer"],
            "scheduler": state["scheduler"],
            "epoch": state["epoch"],
            "history": state["history"],
            "train_seconds": state["seconds"],
            "config": trainer.cfg.model_dump(),
        }
        if state.get("cdd") is not None:
            new["hooks"] = {"gate_optimizer": state["gate_optimizer"], "cdd": state["cdd"]}
        return new


# ----------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class TrainStage:
    """Train the network and its classifier for `epochs` on the shared trainer; `cdd`: learn
    the gates and compress to the budget while training (CDD's compression stage)."""

    name: str
    epochs: int
    lr: float
    schedule: Literal["onecycle", "cosine"]
    cdd: bool = False

    def run(self, ctx: StageContext, state: StageState) -> None:
        out = ctx.run.path / f"stage-{self.name}.pt"
        if out.exists():  # done in an earlier session
            blob = torch.load(out, map_location="cpu", weights_only=True)
            state.model = ResNetEmbed(ResNetConfig.from_dict(blob["config"]))
            state.model.load_state_dict(blob["model"])
            state.classifier.load_state_dict(blob["classifier"])
            state.records[self.name] = blob["record"]
            return
        opts, run = ctx.opts, ctx.run
        steps = len(ctx.data.train) // opts.batch_size  # batches per epoch (the last, partial one is dropped)
        if steps == 0:
            raise ConfigError(
                f"--batch-size {opts.batch_size} is larger than the {len(ctx.data.train)} training images"
            )
        controller: CDDController | CompactorController | None = None
        full_epochs = 0
        if self.cdd and opts.cdd.variant == "paper":
            controller = CompactorController(state.model, opts.cdd)
            full_epochs = opts.cdd.full_capacity_epochs(self.epochs)
        elif self.cdd:
            compress_epochs = max(1, self.epochs - opts.cdd.warmup_epochs)
            controller = CDDController(state.model, opts.cdd, compress_epochs * steps)
        hooks = RetrievalHooks(self.name, opts, ctx.teacher, controller, ctx.teacher_classifier, full_epochs)
        net = EmbeddingClassifier(state.model, state.classifier)
        gates = {id(p) for p in controller.gate_parameters()} if isinstance(controller, CDDController) else set()
        cfg = TrainConfig(
            epochs=self.epochs,
            batch_size=opts.batch_size,
            lr=self.lr,
            weight_decay=opts.weight_decay,
            schedule=self.schedule,
            seed=opts.seed,
        )
        trainer = Trainer(
            net,
            ctx.data,
            cfg,
            ctx.device,
            run,
            loss_fn=hooks.loss,
            quiet=ctx.quiet,
            hooks=hooks,
            params=[p for p in net.parameters() if id(p) not in gates],
            checkpoint=f"ckpt-{self.name}.pt",
            channels_last=False,
            name=self.name,
            train_batches=_pk_loader(ctx, cfg),
        )
        resumed = trainer.epoch if trainer.load_checkpoint() else None
        run.event("stage", stage=self.name, resumed_from_epoch=resumed)
        result = trainer.fit()
        record: dict[str, Any] = {
            "seconds": result["train_seconds"],
            "epochs": result["epochs"],
            "history": result["history"],
        }
        if resumed is not None:
            record["resumed_from_epoch"] = resumed
        if isinstance(controller, CompactorController):
            record["full_capacity_epochs"] = full_epochs
        state.model, state.classifier = net.net.cpu(), net.classifier.cpu()
        atomic_torch_save(
            out,
            {
                "config": state.model.cfg.to_dict(),
                "model": state.model.state_dict(),
                "classifier": state.classifier.state_dict(),
                "record": record,
            },
        )
        state.records[self.name] = record


@dataclass(frozen=True)
class PruneStage:
    """Cut the gated network to the budget if compression ended above it, then prune it
    physically into a plain, smaller network (outputs checked equal)."""

    name: str = "prune"

    def run(self, ctx: StageContext, state: StageState) -> None:
        if state.model.cfg.compactor:
            self._merge(ctx, state)
            return
        t = time.perf_counter()
        gated = state.model
        controller = CDDController(gated, ctx.opts.cdd, 1)
        forced = controller.enforce_budget()
        kept = controller.kept()
        small = prune_gated(gated)
        diff = max_output_diff(gated, small)
        state.records[self.name] = {"seconds": round(time.perf_counter() - t, 2)}
        ctx.run.event("pruned", forced_removals=forced, inner=list(small.cfg.inner), max_abs_diff=diff, **kept)
        state.extra.update(
            forced_removals=forced,
            prune_max_abs_diff=diff,
            kept_by_gates=kept,
            wide_inner=list(gated.cfg.inner_widths()),
        )
        state.model = small

    def _merge(self, ctx: StageContext, state: StageState) -> None:
        """CDD paper: drop compactor rows under the threshold, merge the rest into conv1 (no budget)."""
        t = time.perf_counter()
        wide = state.model
        norms = [c.row_norms() for c in wide.compactors()]
        small = merge_compactors(wide, ctx.opts.cdd.threshold)  # type: ignore[arg-type]
        diff = max_output_diff(wide, small)
        kept = CapacityCost(wide.cfg).kept(list(small.cfg.inner))
        state.records[self.name] = {"seconds": round(time.perf_counter() - t, 2)}
        ctx.run.event("pruned", inner=list(small.cfg.inner), max_abs_diff=diff, **kept)
        state.extra.update(
            prune_max_abs_diff=diff,
            kept_by_compactors=kept,
            wide_inner=list(wide.cfg.inner_widths()),
            compactor_row_norm_max_removed=max(
                (float(n[n < ctx.opts.cdd.threshold].max()) for n in norms if (n < ctx.opts.cdd.threshold).any()),
                default=0.0,
            ),
            reset_channels=[int((c.grad_mask == 0).sum()) for c in wide.compactors()],
        )
        state.model = small


def _pk_loader(ctx: StageContext, cfg: TrainConfig) -> PKBatchLoader | None:
    """P×K identity-balanced batches when `--pk` asks for them (in-memory training data)."""
    if ctx.opts.pk is None:
        return None
    if not isinstance(ctx.data.train, Split):
        raise ConfigError("--pk needs the training images in memory (not streamed)")
    return PKBatchLoader(ctx.data.train, cfg.batch_size, ctx.opts.pk, seed=cfg.seed, augment=cfg.augment)


StageDef = TrainStage | PruneStage


def stages_for(opts: RetrievalOptions) -> list[StageDef]:
    """The declared stages of a role (names are the keys of `results.json`'s `stages`)."""
    if opts.role == "cdd":
        stages: list[StageDef] = [TrainStage("compress", opts.epochs, opts.lr, "onecycle", cdd=True), PruneStage()]
        if opts.finetune_epochs:
            stages.append(TrainStage("finetune", opts.finetune_epochs, opts.finetune_lr, "cosine"))
        return stages
    epochs = opts.epochs + (opts.finetune_epochs if opts.role == "static" else 0)
    return [TrainStage("train", epochs, opts.lr, "onecycle")]


def run_stages(stages: list[StageDef], ctx: StageContext, state: StageState) -> StageState:
    """Run the stages in order (a finished training stage is read back from its output)."""
    for stage in stages:
        stage.run(ctx, state)
    return state


def __getattr__(name: str) -> Any:
    """`run_retrieval` lived here before `edgenas.tasks.retrieval.api`; old imports still work."""
    if name == "run_retrieval":
        from edgenas.tasks.retrieval.api import run_retrieval

        return run_retrieval
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
