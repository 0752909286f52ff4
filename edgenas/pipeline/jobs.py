"""The pipeline's independent jobs, as plain functions an executor can run anywhere.

Each job works in its own folder and is *resumable by construction*: a finished job
(its `results.json` is there) returns that result at once, a started one continues
from its last checkpoint (`--resume` of the underlying command), a new one starts. So
after a `kill -9` the pipeline simply calls every unfinished job again, losing at most
the epoch that was running. Arguments and results are JSON-able (they travel to Ray).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from edgenas.core.device import DeviceProfile
from edgenas.core.rundir import RunDir
from edgenas.core.space import NetShape


def _finished(folder: Path) -> dict[str, Any] | None:
    results = folder / "results.json"
    if results.is_file():
        out = json.loads(results.read_text())
        out["run_dir"] = str(folder)
        return out
    return None


def _started(folder: Path) -> bool:
    """A folder with a config is resumable; one without (killed while being created) is discarded."""
    if (folder / "config.yaml").is_file():
        return True
    if folder.exists():
        shutil.rmtree(folder)
    return False


def screen_job(
    *,
    folder: str,
    profiles: list[dict[str, Any]],
    dataset: dict[str, Any],
    space: dict[str, Any],
    screen: dict[str, Any],
    seed: int,
    compute: str,
) -> dict[str, Any]:
    """AZ-NAS screening for every device: one seeded sample (`random`) or one evolution per
    device (`evolution`); an arch met by several devices is scored once.

    Returns, per device, the ranked archs that meet all its budgets (latency measured the
    profile's way for the best few), or an empty list when none fits.
    """
    from edgenas.core.errors import UserError
    from edgenas.cost.static import StaticCosts
    from edgenas.data import dataset_info
    from edgenas.data.sample_batch import sample_batch
    from edgenas.proxies.pool import LABELLED_PROXIES, expand_proxy_names
    from edgenas.search.screen import run_screen
    from edgenas.spaces import get_space

    out = Path(folder)
    names = expand_proxy_names(screen["proxies"])
    info = dataset_info(dataset["name"], dataset["data_dir"], resize=dataset["resize"])
    shape = NetShape.for_data(info, space["width"], space["cells"])
    real = None
    if any(n in LABELLED_PROXIES for n in names):
        real = sample_batch(
            dataset["name"],
            dataset["data_dir"],
            batch=screen["batch"],
            seed=seed,
            subset=dataset["subset"],
            val_fraction=dataset["val_fraction"],
            resize=dataset["resize"],
        )
    scores: dict[str, dict[str, float]] = {}
    costs = StaticCosts(get_space(space["name"]), shape)
    per_device: dict[str, Any] = {}
    for p in profiles:
        profile = DeviceProfile(**p)
        sub = out / profile.name
        done = _finished(sub)
        if done is None:
            if sub.exists():
                shutil.rmtree(sub)  # screening has no checkpoints; redo it whole
            run = RunDir.create("screen", sub)
            run.write_config({"command": "screen", "options": {"profile": p, "screen": screen, "seed": seed}})
            try:
                done = run_screen(
                    profile=profile,
                    shape=shape,
                    names=names,
                    strategy=screen["strategy"],
                    n=screen["n"],
                    population=screen["population"],
                    top=screen["top"],
                    batch=screen["batch"],
                    seed=seed,
                    compute=compute,
                    real_batch=real,
                    space_name=space["name"],
                    run=run,
                    quiet=True,
                    score_cache=scores,
                    cost_cache=costs,
                    latency_tries=screen["latency_tries"],
                )
            except UserError as exc:  # nothing fits this device: recorded, the search may still find one
                done = {"chosen": [], "candidates_in_budget": 0, "search_seconds": 0.0, "error": str(exc)}
                run.write_results(done)
        per_device[profile.name] = {
            "ranked": [c["arch"] for c in done["chosen"]],
            "chosen": done["chosen"],
            "in_budget": done["candidates_in_budget"],
            "seconds": done["search_seconds"],
            "error": done.get("error"),
            "folder": str(sub),
        }
    return per_device


def search_job(
    *,
    folder: str,
    method: str,
    dataset: dict[str, Any],
    space: dict[str, Any],
    search: dict[str, Any],
    seed: int,
    compute: str,
    profile: dict[str, Any] | None = None,
    teacher: str | None = None,
) -> dict[str, Any]:
    """One search, resumed if it was interrupted: DCA-NAS for one device (`profile`), or DNAD
    for every device (`teacher`: it shrinks the supernet while distilling, harvesting snapshots)."""
    from edgenas.search.run import resume_search
    from edgenas.search.run import search as run_search

    out = Path(folder)
    done = _finished(out)
    if done is not None:
        return done
    if _started(out):
        return resume_search(out, compute=compute, quiet=True)
    return run_search(
        method=method,
        profile=DeviceProfile(**profile) if profile is not None else None,
        teacher=teacher,
        dataset=dataset["name"],
        data_dir=dataset["data_dir"],
        subset=search["subset"],
        val_fraction=search["val_fraction"],
        resize=dataset["resize"],
        space=space["name"],
        width=space["width"],
        cells=space["cells"],
        options={"seed": seed, **search[method]},
        compute=compute,
        run_dir=out,
        quiet=True,
    )


def _data_options(dataset: dict[str, Any]) -> dict[str, Any]:
    """A job's `dataset` dict as the keyword arguments of `train_arch` / `train_stock`."""
    return {
        "dataset": dataset["name"],
        "data_dir": dataset["data_dir"],
        "subset": dataset["subset"],
        "val_fraction": dataset["val_fraction"],
        "resize": dataset["resize"],
        "in_memory": dataset.get("in_memory", True),
        "skip_bad": dataset.get("skip_bad", False),
        "data_workers": dataset.get("workers"),
    }


def train_job(
    *,
    folder: str,
    arch: str,
    command: str,
    dataset: dict[str, Any],
    width: int,
    cells: int,
    train: dict[str, Any],
    compute: str,
    teacher: str | None = None,
    kd: dict[str, Any] | None = None,
    generic: dict[str, Any] | None = None,
    space: str = "nb201",
) -> dict[str, Any]:
    """Train one network (a teacher, a student with KD, or a plain one) of `space`, resumed if interrupted."""
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import TrainConfig

    out = Path(folder)
    done = _finished(out)
    if done is not None:
        return done
    workers = dataset.get("workers")
    if _started(out):
        return train_arch(arch, resume=out, command=command, device=compute, quiet=True, data_workers=workers)
    return train_arch(
        arch,
        space=space,
        **_data_options(dataset),
        width=width,
        cells=cells,
        train=TrainConfig(**train),
        device=compute,
        run_dir=out,
        quiet=True,
        teacher=teacher,
        kd=kd,
        generic=generic,
        command=command,
    )


def stock_job(
    *,
    folder: str,
    family: str,
    multiplier: float,
    dataset: dict[str, Any],
    width: int,
    cells: int,
    train: dict[str, Any],
    compute: str,
    teacher: str | None = None,
    kd: dict[str, Any] | None = None,
    space: str = "nb201",
) -> dict[str, Any]:
    """Train a stock MobileNet (`family@multiplier`) with a student job's options (`train_job`'s), so
    with the students' protocol; resumed if interrupted. `space`, `width`, `cells`: the run's
    students, the scale a FiLM-conditioned teacher codes the stock network's capacity on."""
    from edgenas.pipeline.baseline import train_stock
    from edgenas.train.trainer import TrainConfig

    out = Path(folder)
    done = _finished(out)
    if done is not None:
        return done
    workers = dataset.get("workers")
    if _started(out):
        return train_stock(family, multiplier, resume=out, compute=compute, quiet=True, data_workers=workers)
    return train_stock(
        family,
        multiplier,
        **_data_options(dataset),
        train=TrainConfig(**train),
        teacher=teacher,
        kd=kd,
        students={"space": space, "width": width, "cells": cells},
        compute=compute,
        run_dir=out,
        quiet=True,
    )
