"""`edgenas screen`: rank candidate archs without training, inside a device's budget.

Candidates come from uniform sampling (`random`), the AZ-NAS evolutionary search
(`evolution`) or a given list. Each is costed and dropped if it misses a static budget:
params and FLOPs exactly from the space's per-position costs, without building a network
(`edgenas.cost.static`), peak memory measured on the built network only for those that pass
them. The rest are scored with the chosen proxies and ranked by the aggregated AZ score.
Latency, costly to measure, is checked last: walking down the ranking, each candidate's ONNX
latency is measured until `top` candidates meet every budget.
`screen` is the command (it opens the run folder and reads what the user names);
`run_screen` screens into a given run folder (the pipeline calls it once per device).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgenas.core.atomic import atomic_write_text
from edgenas.core.compute import resolve_device
from edgenas.core.device import DeviceProfile, load_device
from edgenas.core.errors import UserError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.budget_check import first_fitting
from edgenas.cost.static import StaticCosts
from edgenas.proxies.pool import LABELLED_PROXIES, expand_proxy_names, rank_pool, score_arch
from edgenas.report.plots import score_vs_flops
from edgenas.search.evolution import evolve
from edgenas.spaces import get_space


def screen(
    *,
    device_file: str | Path | None = None,
    profile: DeviceProfile | None = None,
    proxies: str | Sequence[str] = "az",
    strategy: str = "random",
    n: int = 1000,
    top: int = 20,
    archs: str | Path | Sequence[str] | None = None,
    population: int = 64,
    batch: int = 64,
    space: str = "nb201",
    width: int = 16,
    cells: int = 1,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    subset: int | None = None,
    val_fraction: float = 0.1,
    resize: int | None = None,
    seed: int = 0,
    compute: str = "auto",
    run_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """`edgenas screen`: rank archs of `space` inside a device's budgets, in a new run folder.

    The target is `profile` or `device_file` (neither: no budget); `proxies` is a comma list
    or a list of names (`az` = the four AZ-NAS ones); `archs` (a file, one arch a line, or a
    list) scores given archs instead of sampling `n`. Proxies that use labels get one real
    batch of the dataset. Returns `results.json`'s content plus `run_dir`.
    """
    from edgenas.bench.truth import read_arch_list
    from edgenas.data import dataset_info

    names = expand_proxy_names(proxies)
    if profile is None and device_file is not None:
        profile = load_device(device_file)
    arch_list = None
    if isinstance(archs, (str, Path)):
        arch_list = read_arch_list(archs, space)
    elif archs is not None:
        sp = get_space(space)
        arch_list = list(dict.fromkeys(str(sp.parse(a)) for a in archs))
    if arch_list is not None and strategy == "evolution":
        raise UserError("--archs scores a given list; it cannot be combined with --strategy evolution")
    shape = NetShape.for_data(dataset_info(dataset, data_dir, resize=resize), width, cells)
    run = RunDir.create("screen", run_dir)
    options = {
        "device_file": device_file,
        "n": n,
        "top": top,
        "archs": archs,
        "proxies": proxies,
        "strategy": strategy,
        "population": population,
        "batch": batch,
        "compute": compute,
        "seed": seed,
        "run_dir": run_dir,
        "quiet": quiet,
        "space": space,
        "width": width,
        "cells": cells,
        "dataset": dataset,
        "data_dir": data_dir,
        "subset": subset,
        "val_fraction": val_fraction,
        "resize": resize,
    }
    run.write_config({"command": "screen", "options": {k: _plain(v) for k, v in options.items()}})
    real = None
    if any(name in LABELLED_PROXIES for name in names):
        from edgenas.data.sample_batch import sample_batch

        real = sample_batch(
            dataset, data_dir, batch=batch, seed=seed, subset=subset, val_fraction=val_fraction, resize=resize
        )
    res = run_screen(
        profile=profile,
        shape=shape,
        names=names,
        real_batch=real,
        space_name=space,
        strategy=strategy,
        n=n,
        archs=arch_list,
        top=top,
        population=population,
        batch=batch,
        seed=seed,
        compute=compute,
        run=run,
        quiet=quiet,
    )
    return {**res, "run_dir": str(run.path)}


def _plain(value: Any) -> Any:
    """A config value as YAML can hold it: paths as strings, sequences as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_screen(
    *,
    profile: DeviceProfile | None,
    shape: NetShape,
    names: list[str],
    space_name: str = "nb201",
    strategy: str = "random",
    n: int = 1000,
    archs: list[str] | None = None,
    top: int = 20,
    population: int = 64,
    batch: int = 64,
    seed: int = 0,
    compute: str = "auto",
    real_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    run: RunDir,
    quiet: bool = False,
    score_cache: dict[str, dict[str, float]] | None = None,
    cost_cache: StaticCosts | None = None,
    latency_tries: int | None = None,
) -> dict[str, Any]:
    """Screen, rank, check latency of the best, and write results.json, screen.csv, screen.png.

    `score_cache` (arch -> proxy values) and `cost_cache` (the static costs of `space_name`
    at `shape`) let several screens of the same sample (one per device) score and cost each
    arch once; neither depends on the budget, only the ranks do. `latency_tries` caps how many of the best
    ranked archs get their latency measured (each is an ONNX export and a timing loop)
    while looking for `top` that fit.
    """
    space = get_space(space_name)
    device = resolve_device(compute)
    budgets = profile.search_budgets() if profile else None  # float32 terms of the precision's budgets
    static = cost_cache if cost_cache is not None else StaticCosts(space, shape)
    if static.space.name != space.name or static.shape != shape:
        raise ValueError(f"cost_cache holds {static.space.name} costs at {static.shape}, not {space.name} at {shape}")

    def inside(arch) -> bool:
        return static.fits(arch, budgets)

    cache = score_cache if score_cache is not None else {}

    def evaluate(arch) -> dict[str, float]:
        key = str(arch)
        if key not in cache:
            cache[key] = score_arch(
                space,
                key,
                shape,
                names,
                batch=batch,
                seed=seed,
                device=device,
                real_batch=real_batch,
                flops=static.additive(key)[1],
            )[0]
        return cache[key]

    t0 = time.perf_counter()
    with progress_bar(quiet) as bar:
        if strategy == "evolution":
            task = bar.add_task("evolution", total=n, status="")
            pool, values, rejected = evolve(
                space,
                n,
                fits=inside,
                evaluate=evaluate,
                rank=lambda v: rank_pool(v, names),
                rng=numpy_rng(seed, "evolution"),
                population=population,
                on_candidate=lambda k: bar.update(task, completed=k),
            )
        else:
            candidates = (
                archs
                if archs is not None
                else [str(a) for a in space.sample_distinct(n, numpy_rng(seed, "screen-sample"))]
            )
            task = bar.add_task("cost", total=len(candidates), status="")
            pool = []
            for arch in candidates:
                if inside(arch):
                    pool.append(arch)
                bar.update(task, advance=1)
            rejected = len(candidates) - len(pool)
            task = bar.add_task("proxies", total=len(pool), status="")
            values = []
            for arch in pool:
                values.append(evaluate(arch))
                bar.update(task, advance=1)
    search_seconds = time.perf_counter() - t0
    if not pool:
        raise_no_fit(profile)
    scores = rank_pool(values, names)
    order = np.argsort(-scores, kind="stable")
    chosen, measured = first_fitting(
        space, [pool[int(i)] for i in order], shape, profile, want=top, max_tries=latency_tries
    )
    latency = {arch: cost.latency_ms for arch, cost in measured.items()}
    rows = []
    for i, arch in enumerate(pool):
        c = static.cost(arch)
        rows.append(
            {
                "arch": arch,
                "rank": int(np.where(order == i)[0][0]) + 1,
                "az_score": float(scores[i]),
                "params": c.params,
                "flops": c.flops,
                "peak_memory_bytes": c.peak_memory_bytes,
                "latency_ms": latency.get(arch),
                "chosen": arch in chosen,
                **values[i],
            }
        )
    rows.sort(key=lambda r: r["rank"])
    _write_csv(run.file("screen.csv"), rows)
    score_vs_flops(
        run.file("screen.png"),
        [r["flops"] for r in rows],
        [r["az_score"] for r in rows],
        [r["chosen"] for r in rows],
        f"{space_name} screen ({strategy}, {len(rows)} in budget)" + (f", {profile.name}" if profile else ""),
        budget_flops=budgets.max_flops if budgets else None,
    )
    results = {
        "command": "screen",
        "strategy": strategy,
        "space": space_name,
        "proxies": names,
        "device_profile": profile.model_dump(mode="json") if profile else None,
        "shape": shape.__dict__,
        "proxy_batch": batch,
        "seed": seed,
        "compute": str(device),
        "candidates_in_budget": len(pool),
        "rejected_over_budget": rejected,
        "search_seconds": round(search_seconds, 2),
        "chosen": [r for r in rows if r["chosen"]],
        "candidates": rows,
    }
    run.write_results(results)
    run.event("done", chosen=len(chosen), seconds=round(search_seconds, 2))
    return results


def raise_no_fit(profile: DeviceProfile | None) -> None:
    """No candidate met the static budgets."""
    name = profile.name if profile else "the budget"
    raise UserError(f"no candidate fits {name}; loosen its budgets, screen more (--n) or use a smaller --width")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
