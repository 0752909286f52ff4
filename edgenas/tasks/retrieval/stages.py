"""`edgenas retrieval` as a Python function: embedding teachers, CDD students, static-KD students.

Roles (one run folder each; `run_retrieval(resume=RUN_DIR)` continues any of them):
- `teacher`: a ResNet-like embedding network trained with CE on ids + batch-hard triplet;
- `cdd`: capacity-dynamic distillation (methods.md §5): a gated student as wide as the
  teacher is distilled (embedding KD + relational KD) while `CDDController` shrinks it to
  `budget`; then it is physically pruned (`edgenas.tasks.retrieval.prune`), fine-tuned briefly
  with the same losses, and exported;
- `static`: the static-KD baseline: a plain student of a fixed size (the architecture of
  `student_like`, e.g. a CDD result) distilled from the start, for epochs + finetune_epochs.
Every role ends the same way: query/gallery mAP and Recall@k, params, FLOPs, ONNX export
(verified) and onnxruntime latency (batch 1, one thread) into `results.json`.

Why stages with their own checkpoints: a CDD run is a chain (compress → prune → fine-tune);
each stage checkpoints every epoch (`ckpt-<stage>.pt`) and writes its output
(`stage-<stage>.pt`) when done, so a resumed run skips finished stages and loses at most
the epoch in progress. Batch order is a function of (seed, epoch), so a resumed run ends
with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from edgenas.core.atomic import atomic_torch_save
from edgenas.core.compute import resolve_device
from edgenas.core.errors import ConfigError, Interrupted, ResumeError, UserError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, seed_everything
from edgenas.cost import count_flops, count_params
from edgenas.data import BatchLoader, Split
from edgenas.distill.losses import embedding_kd, rkd_distance
from edgenas.tasks.retrieval.cdd import CDDConfig, CDDController
from edgenas.tasks.retrieval.data import RetrievalSplits, load_retrieval
from edgenas.tasks.retrieval.losses import batch_hard_triplet
from edgenas.tasks.retrieval.metrics import retrieval_metrics
from edgenas.tasks.retrieval.model import ResNetConfig, ResNetEmbed, load_embedding_model, save_embedding_model
from edgenas.tasks.retrieval.prune import max_output_diff, prune_gated
from edgenas.train.trainer import TrainConfig, TrainingDiverged, make_scheduler

COMMAND = "retrieval"
ROLES = ("teacher", "cdd", "static")


class RetrievalOptions(BaseModel):
    """Every option of a retrieval run (stored in `config.yaml`, reused on resume)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["teacher", "cdd", "static"] = "cdd"
    teacher: str | None = None
    student_like: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    subset: int | None = Field(None, ge=1)
    test_subset: int | None = Field(None, ge=1)
    query_fraction: float = Field(0.1, gt=0, lt=1)
    resize: int | None = Field(None, ge=1)
    # network (teacher role; a CDD student copies its teacher, a static one `student_like`)
    stem: int = Field(16, ge=1)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: tuple[int, ...] = (2, 2, 2)
    embed_dim: int = Field(128, ge=1)
    # training
    epochs: int = Field(6, ge=1, description="teacher / CDD compression / static (plus finetune_epochs)")
    finetune_epochs: int = Field(2, ge=0, description="CDD: after pruning; static: added to epochs")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(0.1, gt=0)
    finetune_lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    margin: float = Field(0.2, ge=0, description="triplet margin on normalised embeddings")
    embed_kd_weight: float = Field(1.0, ge=0)
    rkd_weight: float = Field(1.0, ge=0)
    cdd: CDDConfig = CDDConfig()
    seed: int = 0
    latency_repeats: int = Field(200, ge=1)


def run_retrieval(
    *,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    device: str = "auto",
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run one retrieval role (see the module docstring); returns what `results.json` holds."""
    if resume is not None:
        run = RunDir.open_existing(resume, COMMAND)
        opts = RetrievalOptions(**run.read_config()["options"])
        return _run(run, opts, device=device, quiet=quiet)
    opts = make_options(**options)
    # Everything a user can get wrong fails before a run folder is created.
    data = _load_data(opts)
    _student_config(opts, data)
    run = RunDir.create(COMMAND, run_dir)
    run.write_config({"command": COMMAND, "options": opts.model_dump(mode="json")})
    return _run(run, opts, device=device, quiet=quiet, data=data)


def make_options(**options: Any) -> RetrievalOptions:
    """Validated options; a bad value is a `ConfigError` naming the CLI flag."""
    budget = options.get("budget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < 1):
        raise ConfigError(
            f"--budget {budget}: give the share of the teacher's params/FLOPs to keep, a number "
            "strictly between 0 and 1 (e.g. 0.35 keeps 35%)"
        )
    cdd = {k: options.pop(k) for k in list(options) if k in CDDConfig.model_fields}
    try:
        opts = RetrievalOptions(**options, cdd=CDDConfig(**cdd))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = str(err["loc"][-1] if err["loc"] else "option").replace("_", "-")
        raise ConfigError(f"--{where}: {err['msg']}") from None
    make = "make one with `edgenas retrieval --role teacher`"
    for flag, path in (("--teacher", opts.teacher), ("--student-like", opts.student_like)):
        if path is not None and not (Path(path).is_file() or (Path(path) / "model.pt").is_file()):
            raise UserError(f"{flag} {path}: no such model file ({make})")
    if opts.role in ("cdd", "static") and opts.teacher is None:
        raise UserError(f"--role {opts.role} needs --teacher MODEL_FILE ({make})")
    if opts.role == "static" and opts.student_like is None:
        raise UserError("--role static needs --student-like MODEL_FILE (e.g. the model.pt of a CDD run) for its size")
    return opts


def _load_data(opts: RetrievalOptions) -> RetrievalSplits:
    """The run's images, split as its options say: read the same way for a new run and a resumed one."""
    return load_retrieval(
        opts.dataset,
        opts.data_dir,
        seed=opts.seed,
        subset=opts.subset,
        test_subset=opts.test_subset,
        query_fraction=opts.query_fraction,
        resize=opts.resize,
    )


# ----------------------------------------------------------------------------- networks
def _teacher(opts: RetrievalOptions, data: RetrievalSplits) -> ResNetEmbed | None:
    if opts.teacher is None:
        return None
    teacher, _ = load_embedding_model(opts.teacher)
    if teacher.cfg.input_shape != _input_shape(data):
        raise ConfigError(
            f"teacher {opts.teacher} takes {teacher.cfg.input_shape} inputs; this data has {_input_shape(data)}"
        )
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _input_shape(data: RetrievalSplits) -> tuple[int, int, int]:
    return (data.info.channels, data.info.resolution, data.info.resolution)


def _student_config(opts: RetrievalOptions, data: RetrievalSplits) -> ResNetConfig:
    """The network this role trains (checked against teacher and data)."""
    c, side, _ = _input_shape(data)
    if opts.role == "teacher":
        return ResNetConfig(c, side, opts.stem, opts.widths, opts.blocks, opts.embed_dim)
    teacher = _teacher(opts, data)
    assert teacher is not None
    if opts.role == "cdd":  # start as wide as the teacher
        return teacher.cfg.with_inner(teacher.cfg.inner_widths(), gated=True)
    like, _ = load_embedding_model(opts.student_like)  # type: ignore[arg-type]
    cfg = like.cfg.with_inner(like.cfg.inner_widths(), gated=False)
    if cfg.input_shape != teacher.cfg.input_shape or cfg.embed_dim != teacher.cfg.embed_dim:
        raise ConfigError(f"--student-like {opts.student_like} has other inputs or embedding size than the teacher")
    return cfg


# ----------------------------------------------------------------------------- a stage
class Stage:
    """Trains one network (+ id classifier) for some epochs; checkpoints every epoch."""

    def __init__(
        self,
        run: RunDir,
        name: str,
        model: ResNetEmbed,
        classifier: nn.Linear,
        data: RetrievalSplits,
        opts: RetrievalOptions,
        *,
        epochs: int,
        lr: float,
        schedule: Literal["onecycle", "cosine"],
        device: torch.device,
        teacher: ResNetEmbed | None,
        cdd: CDDConfig | None = None,
        quiet: bool = False,
    ) -> None:
        self.run, self.name, self.opts, self.device, self.quiet = run, name, opts, device, quiet
        self.model, self.classifier = model.to(device), classifier.to(device)
        self.teacher = teacher.to(device) if teacher is not None else None
        self.cfg = TrainConfig(
            epochs=epochs,
            batch_size=opts.batch_size,
            lr=lr,
            weight_decay=opts.weight_decay,
            schedule=schedule,
            seed=opts.seed,
        )
        self.batches = BatchLoader(data.train, opts.batch_size, shuffle=True, seed=opts.seed, drop_last=True)
        if len(self.batches) == 0:
            raise ConfigError(f"--batch-size {opts.batch_size} is larger than the {len(data.train)} training images")
        compress_epochs = max(1, epochs - (cdd.warmup_epochs if cdd else 0))
        self.cdd = CDDController(model, cdd, compress_epochs * len(self.batches)) if cdd else None
        gate_ids = {id(p) for p in self.cdd.gate_parameters()} if self.cdd else set()
        params = [p for p in (*model.parameters(), *classifier.parameters()) if id(p) not in gate_ids]
        self.params = params
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": opts.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        self.opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
        self.sched = make_scheduler(self.opt, self.cfg, len(self.batches))
        # plain SGD without momentum for the gates: λ is calibrated to its step size
        self.gate_opt = torch.optim.SGD(self.cdd.gate_parameters(), lr=cdd.gate_lr) if self.cdd and cdd else None
        self.epoch, self.history, self.seconds = 0, [], 0.0

    # -- checkpoints -------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run.file(f"ckpt-{self.name}.pt")

    def save_checkpoint(self) -> None:
        atomic_torch_save(
            self.checkpoint_path,
            {
                "model": self.model.state_dict(),
                "classifier": self.classifier.state_dict(),
                "optimizer": self.opt.state_dict(),
                "gate_optimizer": self.gate_opt.state_dict() if self.gate_opt else None,
                "cdd": self.cdd.state_dict() if self.cdd else None,
                "scheduler": self.sched.state_dict(),
                "epoch": self.epoch,
                "history": self.history,
                "seconds": self.seconds,
            },
        )

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        try:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        except Exception as exc:
            why = f"cannot read checkpoint ({exc}); delete it to redo the stage"
            raise ResumeError(f"{self.checkpoint_path}: {why}") from None
        self.model.load_state_dict(state["model"])
        self.classifier.load_state_dict(state["classifier"])
        self.opt.load_state_dict(state["optimizer"])
        if self.gate_opt is not None:
            self.gate_opt.load_state_dict(state["gate_optimizer"])
        if self.cdd is not None:
            self.cdd.load_state_dict(state["cdd"])
        self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.history, self.seconds = state["epoch"], state["history"], state["seconds"]
        return True

    # -- training ----------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CE on ids + batch-hard triplet (+ embedding and relational KD from the teacher)."""
        o = self.opts
        emb = self.model(x)
        loss = F.cross_entropy(self.classifier(emb), y, label_smoothing=o.label_smoothing)
        loss = loss + batch_hard_triplet(emb, y, o.margin)
        if self.teacher is not None:
            with torch.no_grad():
                t = self.teacher(x)
            if o.embed_kd_weight:
                loss = loss + o.embed_kd_weight * embedding_kd(emb, t)
            if o.rkd_weight:
                loss = loss + o.rkd_weight * rkd_distance(emb, t)
        return loss

    def _epoch(self, bar: Any, task: Any) -> dict[str, Any]:
        self.model.train()
        self.classifier.train()
        self.batches.set_epoch(self.epoch)
        compress = self.cdd is not None and self.epoch >= self.cdd.cfg.warmup_epochs
        loss_sum, seen, resets, pushed, removed = 0.0, 0, 0, 0, 0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.batches):
            x, y = x.to(self.device), y.to(self.device)
            loss = self.loss(x, y)
            if not torch.isfinite(loss):
                where = f"epoch {self.epoch + 1} step {step}"
                raise TrainingDiverged(f"{self.name}: loss {loss.item()} at {where}; lower --lr")
            self.opt.zero_grad(set_to_none=True)
            if self.gate_opt is not None:
                self.gate_opt.zero_grad(set_to_none=True)
            loss.backward()
            if compress:
                stats = self.cdd.add_compression_grad()  # type: ignore[union-attr]
                resets, pushed = resets + stats["reset"], pushed + stats["pushed"]
            nn.utils.clip_grad_norm_(self.params, 5.0)
            self.opt.step()
            if self.gate_opt is not None:
                self.gate_opt.step()
                self.cdd.clamp_()  # type: ignore[union-attr]
            if compress:
                removed += self.cdd.remove_below_threshold()  # type: ignore[union-attr]
            self.sched.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
            bar.update(task, advance=1, status=f"loss {loss_sum / seen:.3f}")
        record: dict[str, Any] = {
            "stage": self.name,
            "epoch": self.epoch + 1,
            "train_loss": round(loss_sum / max(seen, 1), 5),
            "seconds": round(time.perf_counter() - start, 2),
        }
        if self.cdd is not None:
            kept = self.cdd.kept()
            record.update(
                removed=removed,
                alive=self.cdd.alive(),
                kept_params=round(kept["params"], 4),
                kept_flops=round(kept["flops"], 4),
                gate_grads_reset=resets,
                gate_grads_pushed=pushed,
            )
        return record

    def fit(self) -> None:
        with progress_bar(self.quiet) as bar:
            for epoch in range(self.epoch, self.cfg.epochs):
                task = bar.add_task(f"{self.name} {epoch + 1}/{self.cfg.epochs}", total=len(self.batches), status="")
                record = self._epoch(bar, task)
                self.epoch = epoch + 1
                self.seconds += record["seconds"]
                self.history.append(record)
                self.save_checkpoint()
                self.run.event("epoch", **record)


# ----------------------------------------------------------------------------- the run
def _init_model(cfg: ResNetConfig, num_ids: int, seed: int) -> tuple[ResNetEmbed, nn.Linear]:
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, "init"))
        model = ResNetEmbed(cfg)
        classifier = nn.Linear(cfg.embed_dim, num_ids)
    return model, classifier


def _stage(
    run: RunDir, name: str, model: ResNetEmbed, classifier: nn.Linear, *, cdd: CDDConfig | None = None, **kw: Any
) -> tuple[ResNetEmbed, nn.Linear, dict[str, Any]]:
    """Run (or skip, if its output exists) one stage; returns the trained pair and its record."""
    out = run.path / f"stage-{name}.pt"
    if out.exists():
        blob = torch.load(out, map_location="cpu", weights_only=True)
        model = ResNetEmbed(ResNetConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["model"])
        classifier.load_state_dict(blob["classifier"])
        return model, classifier, blob["record"]
    stage = Stage(run, name, model, classifier, cdd=cdd, **kw)
    resumed = stage.epoch if stage.load_checkpoint() else None
    run.event("stage", stage=name, resumed_from_epoch=resumed)
    stage.fit()
    record: dict[str, Any] = {"seconds": round(stage.seconds, 2), "epochs": stage.epoch, "history": stage.history}
    if resumed is not None:
        record["resumed_from_epoch"] = resumed
    model, classifier = stage.model.cpu(), stage.classifier.cpu()
    atomic_torch_save(
        out,
        {
            "config": model.cfg.to_dict(),
            "model": model.state_dict(),
            "classifier": classifier.state_dict(),
            "record": record,
        },
    )
    return model, classifier, record


def _run(
    run: RunDir, opts: RetrievalOptions, *, device: str, quiet: bool, data: RetrievalSplits | None = None
) -> dict[str, Any]:
    dev = resolve_device(device)
    if data is None:
        data = _load_data(opts)
    seed_everything(opts.seed)
    teacher = _teacher(opts, data)
    cfg = _student_config(opts, data)
    model, classifier = _init_model(cfg, data.info.num_classes, opts.seed)
    run.event("start", role=opts.role, device=str(dev), threads=torch.get_num_threads())
    common = {"data": data, "opts": opts, "device": dev, "teacher": teacher, "quiet": quiet}
    stages: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        if opts.role == "cdd":
            model, classifier, stages["compress"] = _stage(
                run, "compress", model, classifier, epochs=opts.epochs, lr=opts.lr, schedule="onecycle",
                cdd=opts.cdd, **common,
            )  # fmt: skip
            extra = _prune(run, model, opts.cdd, stages)
            model = extra.pop("model")
            if opts.finetune_epochs:
                model, classifier, stages["finetune"] = _stage(
                    run, "finetune", model, classifier, epochs=opts.finetune_epochs, lr=opts.finetune_lr,
                    schedule="cosine", **common,
                )  # fmt: skip
        else:
            epochs = opts.epochs + (opts.finetune_epochs if opts.role == "static" else 0)
            model, classifier, stages["train"] = _stage(
                run, "train", model, classifier, epochs=epochs, lr=opts.lr, schedule="onecycle", **common
            )
    except KeyboardInterrupt:
        run.event("interrupted")
        raise Interrupted(
            f"completed epochs are saved in {run.path}; continue with: edgenas retrieval --resume {run.path}"
        ) from None
    return _finish(run, opts, model, data, teacher, stages, extra, dev, time.perf_counter() - t0)


def _prune(run: RunDir, gated: ResNetEmbed, cdd: CDDConfig, stages: dict[str, Any]) -> dict[str, Any]:
    """Cut to the budget if training ended above it, then prune physically (outputs checked)."""
    t = time.perf_counter()
    controller = CDDController(gated, cdd, 1)
    forced = controller.enforce_budget()
    kept = controller.kept()
    small = prune_gated(gated)
    diff = max_output_diff(gated, small)
    stages["prune"] = {"seconds": round(time.perf_counter() - t, 2)}
    run.event("pruned", forced_removals=forced, inner=list(small.cfg.inner), max_abs_diff=diff, **kept)
    return {
        "model": small,
        "forced_removals": forced,
        "prune_max_abs_diff": diff,
        "kept_by_gates": kept,
        "wide_inner": list(gated.cfg.inner_widths()),
    }


@torch.no_grad()
def embed_split(model: nn.Module, split: Split, device: torch.device, batch: int = 512) -> torch.Tensor:
    """Embeddings of a whole split, in eval mode."""
    model.eval()
    return torch.cat([model(x.to(device)).cpu() for x, _ in BatchLoader(split, batch)])


def evaluate_retrieval(model: nn.Module, data: RetrievalSplits, device: torch.device) -> dict[str, Any]:
    """mAP / Recall@1,5 / CMC rank-1 of the test queries against the test gallery."""
    q = embed_split(model, data.query, device)
    g = embed_split(model, data.gallery, device)
    return retrieval_metrics(q, data.query.labels, g, data.gallery.labels, ks=(1, 5))


def _finish(
    run: RunDir,
    opts: RetrievalOptions,
    model: ResNetEmbed,
    data: RetrievalSplits,
    teacher: ResNetEmbed | None,
    stages: dict[str, Any],
    extra: dict[str, Any],
    dev: torch.device,
    seconds: float,
) -> dict[str, Any]:
    from edgenas.cost.latency import measure_onnx_latency
    from edgenas.export.onnx import export_onnx, verify_onnx

    model = model.cpu().eval()
    t = time.perf_counter()
    metrics = evaluate_retrieval(model.to(dev), data, dev)
    model = model.cpu()
    stages["evaluate"] = {"seconds": round(time.perf_counter() - t, 2)}
    shape = model.cfg.input_shape
    save_embedding_model(
        run.file("model.pt"),
        model,
        role=opts.role,
        dataset=opts.dataset,
        mean=list(data.mean),
        std=list(data.std),
        distilled_from=opts.teacher,
        map=metrics["map"],
    )
    t = time.perf_counter()
    onnx_path = export_onnx(model, shape, run.file("model.onnx"))
    onnx_diff = verify_onnx(model, onnx_path, shape)
    latency = measure_onnx_latency(onnx_path, shape, threads=1, warmup=20, repeats=opts.latency_repeats)
    stages["export"] = {"seconds": round(time.perf_counter() - t, 2)}
    results: dict[str, Any] = {
        "command": COMMAND,
        "role": opts.role,
        "options": opts.model_dump(mode="json"),
        "metrics": metrics,
        "params": count_params(model),
        "flops": count_flops(model, shape),
        "latency_ms": latency.median_ms,
        "latency": latency.to_dict(),
        "onnx": str(onnx_path),
        "onnx_max_abs_diff": onnx_diff,
        "inner": list(model.cfg.inner_widths()),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "stages": stages,
        "wall_seconds_this_session": round(seconds, 2),
        "train_images": len(data.train),
        "queries": len(data.query),
        "gallery": len(data.gallery),
        **extra,
    }
    if teacher is not None:
        tp, tf = count_params(teacher), count_flops(teacher, shape)
        results["teacher_params"], results["teacher_flops"] = tp, tf
        results["params_reduction"] = 1 - results["params"] / tp
        results["flops_reduction"] = 1 - results["flops"] / tf
    run.write_results(results)
    run.event("done", map=metrics["map"], params=results["params"], flops=results["flops"])
    results["run_dir"] = str(run.path)
    return results
