"""`edgenas retrieval` as a Python function: embedding teachers, CDD students, static-KD students.

Roles (one run folder each; `run_retrieval(resume=RUN_DIR)` continues any of them) are the
stage lists of `edgenas.tasks.retrieval.stages`. Every role ends the same way: query/gallery
mAP and Recall@k, params, FLOPs, ONNX export (verified) and onnxruntime latency (batch 1,
one thread) into `results.json`. Batch order is a function of (seed, epoch), so a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgenas.core.compute import resolve_device
from edgenas.core.errors import ConfigError, Interrupted
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, seed_everything
from edgenas.cost import count_flops, count_params
from edgenas.data import Split
from edgenas.data.base import make_loader
from edgenas.data.stream import StreamSplit
from edgenas.tasks.retrieval.data import RetrievalSplits, load_retrieval
from edgenas.tasks.retrieval.metrics import retrieval_metrics
from edgenas.tasks.retrieval.model import ResNetConfig, ResNetEmbed, load_embedding_model, save_embedding_model
from edgenas.tasks.retrieval.options import COMMAND, RetrievalOptions, make_options
from edgenas.tasks.retrieval.stages import StageContext, StageState, run_stages, stages_for

__all__ = ["embed_split", "evaluate_retrieval", "run_retrieval"]


def run_retrieval(
    *,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    device: str = "auto",
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run one retrieval role (see the module docstring); returns what `results.json` holds.

    `options` are `make_options`' flat keywords; with `resume`, the run's `config.yaml` gives them.
    """
    if resume is not None:
        run = RunDir.open_existing(resume, COMMAND)
        # runs made before issue 22 recorded no protocol: they were closed-set
        opts = RetrievalOptions(**{"protocol": "closed", **run.read_config()["options"]})
        return _run(run, opts, device=device, quiet=quiet)
    opts = make_options(**options)
    # Everything a user can get wrong fails before a run folder is created.
    data = _load_data(opts)
    _student_config(opts, data)
    run = RunDir.create(COMMAND, run_dir)
    run.write_config({"command": COMMAND, "options": opts.model_dump(mode="json")})
    return _run(run, opts, device=device, quiet=quiet, data=data)


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
        protocol=opts.protocol,
        test_ids=opts.test_ids,
        split_seed=opts.split_seed,
    )


# ----------------------------------------------------------------------------- networks
def _teacher_and_classifier(opts: RetrievalOptions, data: RetrievalSplits) -> tuple[ResNetEmbed, nn.Linear | None]:
    """The frozen teacher and its id classifier (None in model files made before issue 22),
    checked against the data: same inputs, and the same held-out identities (a teacher that
    trained on this run's test identities would leak them into the student)."""
    assert opts.teacher is not None
    teacher, blob = load_embedding_model(opts.teacher)
    if teacher.cfg.input_shape != _input_shape(data):
        raise ConfigError(
            f"teacher {opts.teacher} takes {teacher.cfg.input_shape} inputs; this data has {_input_shape(data)}"
        )
    held = tuple(blob["meta"].get("test_ids") or ())
    if held != data.test_ids:
        raise ConfigError(
            f"teacher {opts.teacher} held out identities {list(held) or 'none'}, this run holds out "
            f"{list(data.test_ids) or 'none'}; train the teacher with the same --protocol/--test-ids/--split-seed"
        )
    classifier = None
    if "classifier" in blob:
        w = blob["classifier"]["weight"]
        classifier = nn.Linear(w.shape[1], w.shape[0])
        classifier.load_state_dict(blob["classifier"])
        if w.shape[0] != data.info.num_classes:
            raise ConfigError(
                f"teacher {opts.teacher} classifies {w.shape[0]} ids; this data has {data.info.num_classes}"
            )
        classifier.requires_grad_(False)
    teacher.requires_grad_(False)
    return teacher.eval(), classifier


def _teacher(opts: RetrievalOptions, data: RetrievalSplits) -> ResNetEmbed | None:
    return None if opts.teacher is None else _teacher_and_classifier(opts, data)[0]


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
        paper = opts.cdd.variant == "paper"
        return teacher.cfg.with_inner(teacher.cfg.inner_widths(), gated=not paper, compactor=paper)
    like, _ = load_embedding_model(opts.student_like)  # type: ignore[arg-type]
    cfg = like.cfg.with_inner(like.cfg.inner_widths(), gated=False)
    if cfg.input_shape != teacher.cfg.input_shape or cfg.embed_dim != teacher.cfg.embed_dim:
        raise ConfigError(f"--student-like {opts.student_like} has other inputs or embedding size than the teacher")
    return cfg


def _init_model(
    cfg: ResNetConfig, num_ids: int, seed: int, like: tuple[ResNetEmbed, nn.Linear | None] | None = None
) -> tuple[ResNetEmbed, nn.Linear]:
    """A new network and id classifier; with `like` (`--init teacher`), a copy of the teacher's
    weights (its gates or compactors start open / as the identity, so it computes the teacher)."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, "init"))
        model = ResNetEmbed(cfg)
        classifier = nn.Linear(cfg.embed_dim, num_ids)
    if like is not None:
        teacher, teacher_classifier = like
        missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
        if unexpected or any(".gate." not in k and ".compactor." not in k for k in missing):
            raise ConfigError("--init teacher: the student's architecture is not the teacher's")
        if teacher_classifier is not None:
            classifier.load_state_dict(teacher_classifier.state_dict())
        model.requires_grad_(True)
        classifier.requires_grad_(True)
    return model, classifier


# ----------------------------------------------------------------------------- the run
def _run(
    run: RunDir, opts: RetrievalOptions, *, device: str, quiet: bool, data: RetrievalSplits | None = None
) -> dict[str, Any]:
    dev = resolve_device(device)
    if data is None:
        data = _load_data(opts)
    seed_everything(opts.seed)
    teacher, teacher_classifier = _teacher_and_classifier(opts, data) if opts.teacher else (None, None)
    like = (teacher, teacher_classifier) if opts.role == "cdd" and opts.init == "teacher" else None
    model, classifier = _init_model(_student_config(opts, data), data.info.num_classes, opts.seed, like)
    run.event("start", role=opts.role, device=str(dev), threads=torch.get_num_threads())
    ctx = StageContext(
        run,
        opts,
        data,
        dev,
        teacher.to(dev) if teacher is not None else None,
        quiet,
        teacher_classifier.to(dev) if teacher_classifier is not None else None,
    )
    t0 = time.perf_counter()
    try:
        state = run_stages(stages_for(opts), ctx, StageState(model, classifier))
    except KeyboardInterrupt:
        run.event("interrupted")
        raise Interrupted(
            f"completed epochs are saved in {run.path}; "
            f"continue with: edgenas retrieval --resume {shlex.quote(str(run.path))}"
        ) from None
    return _finish(ctx, state, time.perf_counter() - t0)


@torch.no_grad()
def embed_split(model: nn.Module, split: Split | StreamSplit, device: torch.device, batch: int = 512) -> torch.Tensor:
    """Embeddings of a whole split, in eval mode."""
    model.eval()
    return torch.cat([model(x.to(device)).cpu() for x, _ in make_loader(split, batch)])


def evaluate_retrieval(model: nn.Module, data: RetrievalSplits, device: torch.device) -> dict[str, Any]:
    """mAP / Recall@1,5 / CMC rank-1 of the test queries against the test gallery."""
    q = embed_split(model, data.query, device)
    g = embed_split(model, data.gallery, device)
    return retrieval_metrics(q, data.query.labels, g, data.gallery.labels, ks=(1, 5))


def _finish(ctx: StageContext, state: StageState, seconds: float) -> dict[str, Any]:
    """Score, save, export and time the final model; write `results.json`."""
    from edgenas.cost.latency import measure_onnx_latency
    from edgenas.export.onnx import export_onnx, verify_onnx

    run, opts, data, dev, teacher = ctx.run, ctx.opts, ctx.data, ctx.device, ctx.teacher
    stages = state.records
    model = state.model.cpu().eval()
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
        protocol=opts.protocol,
        test_ids=list(data.test_ids),
        classifier=state.classifier.cpu().state_dict(),
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
        **state.extra,
    }
    if teacher is not None:
        teacher = teacher.cpu()
        tp, tf = count_params(teacher), count_flops(teacher, shape)
        results["teacher_params"], results["teacher_flops"] = tp, tf
        results["params_reduction"] = 1 - results["params"] / tp
        results["flops_reduction"] = 1 - results["flops"] / tf
    run.write_results(results)
    run.event("done", map=metrics["map"], params=results["params"], flops=results["flops"])
    results["run_dir"] = str(run.path)
    return results
