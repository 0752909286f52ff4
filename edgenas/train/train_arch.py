"""`edgenas train` as a Python function: build an arch, train it, write the run."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgenas.core.compute import resolve_device
from edgenas.core.errors import ConfigError, Interrupted
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, seed_everything
from edgenas.core.space import NetShape
from edgenas.data import load_dataset
from edgenas.distill.generic_teacher import GenericConfig
from edgenas.distill.kd import KDConfig
from edgenas.distill.modes import build_for_mode, check_student_space, model_to_save, teacher_for
from edgenas.spaces import get_space
from edgenas.train import extras
from edgenas.train.model_file import save_model_file
from edgenas.train.trainer import TrainConfig, Trainer, cross_entropy_loss


def train_arch(
    arch: str,
    *,
    space: str = "nb201",
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    width: int = 16,
    cells: int = 1,
    train: TrainConfig | None = None,
    subset: int | None = None,
    val_fraction: float = 0.1,
    resize: int | None = None,
    in_memory: bool | str = "auto",
    data_workers: int | None = None,
    skip_bad: bool = False,
    device: str = "auto",
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    teacher: str | Path | None = None,
    kd: dict[str, Any] | None = None,
    generic: dict[str, Any] | None = None,
    auxiliary_weight: float = 0.0,
    drop_path: float = 0.0,
    command: str = "train",
) -> dict[str, Any]:
    """Train one architecture; returns the results dict also written to `results.json`.

    Modes (see `edgenas.distill.modes`): plain; with `teacher` (a model file), distilled
    with the `kd` options (`KDConfig` fields); with `generic` (`GenericConfig` fields),
    trained as a generic teacher together with its student supernet. `auxiliary_weight` and
    `drop_path` switch on DARTS' final-training extras (`edgenas.train.extras`; networks of
    spaces without them refuse). `command` names the run ("train", "distill", "teacher").
    `in_memory` (auto|true|false), `data_workers` and `skip_bad`: how the images are read
    (`edgenas.data.load_dataset`; auto streams image folders and datasets over 2 GiB).
    With `resume`, the options stored in that run's `config.yaml` are used and training
    continues after the last completed epoch (`data_workers` may change: batches do not).
    """
    if resume is not None:
        run = RunDir.open_existing(resume, command)
        opts = run.read_config()["options"]
        return _train(run, opts, device=device, quiet=quiet, command=command, data_workers=data_workers)
    sp = get_space(space)
    arch_str = str(sp.parse(arch))  # validate (and canonicalise) before creating anything
    cfg = train or TrainConfig()
    opts = {
        "arch": arch_str,
        "space": space,
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None,
        "width": width,
        "cells": cells,
        "subset": subset,
        "val_fraction": val_fraction,
        "resize": resize,
        "in_memory": _in_memory_option(in_memory),
        "train": cfg.model_dump(),
        "teacher": str(teacher) if teacher else None,
        "kd": KDConfig(**(kd or {})).model_dump() if teacher else None,
        "generic": GenericConfig(**generic).model_dump() if generic is not None else None,
    }
    if opts["generic"] and opts["generic"]["pool"]:
        opts["generic"]["pool"] = _pool(sp, opts["generic"]["pool"])
    extras.check_options(auxiliary_weight, drop_path)
    if auxiliary_weight or drop_path:  # recorded only when used: other runs' options stay as they were
        opts.update(auxiliary_weight=auxiliary_weight, drop_path=drop_path)
    if skip_bad:
        opts["skip_bad"] = True
    # Load data first: a bad dataset must fail before a run folder is created.
    data = load_run_data(opts, cfg.seed, data_workers)
    if teacher:  # a teacher that cannot teach this data or space fails before a run folder is created too
        _, info = teacher_for(teacher, NetShape.for_data(data.info, width, cells))
        check_student_space(teacher, info, space)
    if extras.wanted(opts):
        extras.refuse_unsupported(sp.build(sp.parse(arch_str), NetShape.for_data(data.info, width, cells)), space)
    run = RunDir.create(command, run_dir)
    if teacher:  # also relative to the run, so a moved tree of runs finds it
        opts["teacher_rel"] = run.relative(teacher)
    run.write_config({"command": command, "options": opts})
    return _train(run, opts, device=device, quiet=quiet, data=data, command=command)


def _pool(sp: Any, pool: list[str]) -> list[str]:
    """A generic teacher's student pool as canonical strings of the space; refused before a run folder exists."""
    out = []
    for text in pool:
        arch = sp.parse(text)
        if not sp.live_points(arch).any():
            raise ConfigError(f"generic teacher pool: {text} has no live op (nothing to distil into)")
        out.append(str(arch))
    return out


def _in_memory_option(value: bool | str) -> bool | str:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def load_run_data(opts: dict[str, Any], seed: int, workers: int | None):
    """The run's data; runs made before `in_memory` was recorded held their data in memory."""
    return load_dataset(
        opts["dataset"],
        opts["data_dir"],
        seed=seed,
        val_fraction=opts["val_fraction"],
        subset=opts["subset"],
        resize=opts["resize"],
        in_memory=opts.get("in_memory", True),
        workers=workers,
        skip_bad=opts.get("skip_bad", False),
    )


def _train(
    run: RunDir,
    opts: dict[str, Any],
    *,
    device: str,
    quiet: bool,
    data=None,
    command: str = "train",
    data_workers: int | None = None,
) -> dict[str, Any]:
    cfg = TrainConfig(**opts["train"])
    dev = resolve_device(device)
    if opts.get("teacher"):
        opts = {**opts, "teacher": run.locate(opts["teacher"], opts.get("teacher_rel"))}
    if data is None:
        data = load_run_data(opts, cfg.seed, data_workers)
    sp = get_space(opts["space"])
    shape = NetShape.for_data(data.info, opts["width"], opts["cells"])
    seed_everything(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = sp.build(sp.parse(opts["arch"]), shape)
    model, loss_fn, mode_meta = build_for_mode(model, opts, shape, cfg.seed)
    hooks = None
    if extras.wanted(opts):
        net = extras.target(model)
        extras.enable(net, opts, cfg.seed)
        if opts.get("auxiliary_weight"):
            loss_fn = extras.auxiliary_loss(
                loss_fn or cross_entropy_loss(cfg.label_smoothing), net, opts["auxiliary_weight"]
            )
        if opts.get("drop_path"):
            hooks = extras.DropPathSchedule(net, opts["drop_path"])
    trainer = Trainer(model, data, cfg, dev, run=run, loss_fn=loss_fn, quiet=quiet, hooks=hooks)
    resumed_from = trainer.epoch if trainer.load_checkpoint() else None
    run.event(
        "start",
        resumed_from_epoch=resumed_from,
        device=str(dev),
        threads=torch.get_num_threads(),
        precision=trainer.precision.describe(),
        streaming=data.streaming,
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        run.event("interrupted", epochs_completed=trainer.epoch)
        raise Interrupted(
            f"completed epochs are saved in {run.path}; continue with: edgenas {command} --resume {run.path}"
        ) from None
    if extras.wanted(opts):
        extras.target(trainer.model).drop_auxiliary()  # never saved, exported or costed
    net, save_meta = model_to_save(trainer.model, opts)
    save_model_file(
        run.file("model.pt"),
        net,
        opts["space"],
        opts["arch"],
        shape,
        mean=list(data.mean),
        std=list(data.std),
        dataset=opts["dataset"],
        class_names=list(data.info.class_names),
        **mode_meta,
        **save_meta,
    )
    results = {
        "command": command,
        "arch": opts["arch"],
        "space": opts["space"],
        "dataset": opts["dataset"],
        "shape": asdict(shape),
        "train": cfg.model_dump(),
        "teacher": opts.get("teacher"),
        "kd": opts.get("kd"),
        "generic": opts.get("generic"),
        **{k: opts[k] for k in ("auxiliary_weight", "drop_path") if k in opts},
        "device": str(dev),
        "precision": trainer.precision.describe(),
        "streaming": data.streaming,
        **({"skipped_images": trainer.train_batches.skipped} if data.streaming else {}),
        "threads": torch.get_num_threads(),
        "resumed_from_epoch": resumed_from,
        "wall_seconds_this_session": round(time.perf_counter() - t0, 2),
        "train_images": len(data.train),
        "val_images": len(data.val),
        **result,
    }
    run.write_results(results)
    run.event("done", test_accuracy=result["test_accuracy"])
    results["run_dir"] = str(run.path)
    return results
