"""`edgenas search` as a Python function: options → run folder → a method's search → results.

The resolved options, the device profile included, are stored in the run's config.yaml,
so `--resume RUN` continues with exactly what the run started with even if the profile
file changed since.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from edgenas.core.compute import resolve_device
from edgenas.core.device import DeviceProfile, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import seed_everything
from edgenas.core.space import NetShape, SearchSpace
from edgenas.cost.floor import check_reachable
from edgenas.data import load_dataset
from edgenas.search.bilevel import LEGACY
from edgenas.search.methods import METHODS, SearchMethod
from edgenas.spaces import get_space


def search(
    *,
    method: str = "dca",
    device_file: str | Path | None = None,
    profile: DeviceProfile | None = None,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    subset: int | None = 10000,
    val_fraction: float = 0.5,
    resize: int | None = None,
    space: str = "nb201",
    width: int = 16,
    cells: int = 1,
    options: dict[str, Any] | None = None,
    compute: str = "auto",
    run_dir: str | Path | None = None,
    quiet: bool = False,
    teacher: str | Path | None = None,
    calibrate: bool = False,
) -> dict[str, Any]:
    """Start a search; returns the results dict also written to `results.json`.

    `calibrate`: run the method's calibration instead (DCA-NAS: searches at several search
    budgets, whose lookup graph later searches read; `edgenas.search.methods.dca.calibrate_dca`).

    `profile` (a `DeviceProfile`) or `device_file` names the target; `options` are the
    method's settings (for DCA: `DCAConfig` fields; for DNAD: `SNPSConfig` fields, and
    `teacher`, a model file, is required instead of a device). Half of the (subset of the)
    training images train the weights, the other half the architecture (`val_fraction`).
    """
    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: choose one of {', '.join(METHODS.names())}")
    searchable(space)
    common = {
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None,
        "subset": subset,
        "val_fraction": val_fraction,
        "resize": resize,
        "space": space,
        "width": width,
        "cells": cells,
    }
    spec = METHODS.get(method)
    if calibrate and spec.calibrate is None:
        raise ConfigError(f"--calibrate: the {method} search has no calibration (only dca has a lookup graph)")
    if spec.aims_at == "teacher":
        return _start_from_teacher(spec, common, teacher, options, compute, run_dir, quiet)
    if profile is None:
        if device_file is None:
            raise ConfigError("edgenas search needs --device FILE (the device profile whose budgets it searches under)")
        profile = load_device(device_file)
    if not profile.budgets.items():
        raise ConfigError(f"device {profile.name!r} sets no budget; a constrained search needs at least one")
    cfg = spec.config.from_options(options)
    opts = {"method": method, "profile": profile.model_dump(), **common, "options": cfg.model_dump()}
    if calibrate:
        opts["calibrate"] = True
    data = _load(opts)  # bad data fails before a run folder exists
    check_reachable(profile, get_space(space), NetShape.for_data(data.info, width, cells))
    run = RunDir.create("search", run_dir)
    run.write_config({"command": "search", "options": opts})
    return _search(run, opts, compute=compute, quiet=quiet, data=data)


def searchable(name: str) -> SearchSpace:
    """The space called `name`, if its supernet description is complete (else a one-line `ConfigError`)."""
    sp = get_space(name)
    gaps = sp.supernet_gaps()
    if gaps:
        raise ConfigError(
            f"--space {name!r}: a differentiable search needs the space's supernet description, "
            f"which lacks {', '.join(gaps)}"
        )
    return sp


def resume_search(run_dir: str | Path, *, compute: str = "auto", quiet: bool = False) -> dict[str, Any]:
    """Continue an interrupted search from its last finished epoch."""
    run = RunDir.open_existing(run_dir, "search")
    return _search(run, run.read_config()["options"], compute=compute, quiet=quiet)


def _load(opts: dict[str, Any]):
    if not opts["val_fraction"]:
        raise ConfigError("the search needs an architecture split: set --val-fraction above 0 (0.5 is usual)")
    return load_dataset(
        opts["dataset"],
        opts["data_dir"],
        seed=opts["options"]["seed"],
        val_fraction=opts["val_fraction"],
        subset=opts["subset"],
        resize=opts["resize"],
    )


def _start_from_teacher(
    spec: SearchMethod,
    common: dict[str, Any],
    teacher: str | Path | None,
    options: dict[str, Any] | None,
    compute: str,
    run_dir: str | Path | None,
    quiet: bool,
) -> dict[str, Any]:
    """A method that distils (DNAD) needs a teacher, checked against the data before a run folder exists."""
    from edgenas.distill.modes import teacher_for

    if teacher is None:
        raise ConfigError(
            f"edgenas search --method {spec.name} needs --teacher MODEL_FILE (train one with `edgenas teacher`)"
        )
    cfg = spec.config.from_options(options)
    opts = {"method": spec.name, "teacher": str(teacher), **common, "options": cfg.model_dump()}
    data = _load(opts)
    teacher_for(teacher, NetShape.for_data(data.info, opts["width"], opts["cells"]))
    run = RunDir.create("search", run_dir)
    opts["teacher_rel"] = run.relative(teacher)
    run.write_config({"command": "search", "options": opts})
    return _search(run, opts, compute=compute, quiet=quiet, data=data)


def _search(run: RunDir, opts: dict[str, Any], *, compute: str, quiet: bool, data=None) -> dict[str, Any]:
    """Run (or resume) the method the run was started with, aimed at a device or a teacher."""
    spec = METHODS.get(opts["method"])
    if spec.aims_at == "teacher":
        specific: dict[str, Any] = {"teacher_path": run.locate(opts["teacher"], opts.get("teacher_rel"))}
    else:
        specific = {"profile": DeviceProfile(**opts["profile"])}
    cfg = spec.config(**{LEGACY: dict(spec.legacy_options), **opts["options"]})  # fills options an old run lacks
    data = data if data is not None else _load(opts)
    seed_everything(cfg.seed)
    run_method = spec.calibrate if opts.get("calibrate") and spec.calibrate is not None else spec.run
    result = run_method(
        **specific,
        space=searchable(opts.get("space", "nb201")),  # runs made before --space was recorded are nb201
        data=data,
        target=NetShape.for_data(data.info, opts["width"], opts["cells"]),
        cfg=cfg,
        device=resolve_device(compute),
        run=run,
        quiet=quiet,
        resume_hint=f"continue with: edgenas search --resume {shlex.quote(str(run.path))}",
    )
    result["run_dir"] = str(run.path)
    return result
