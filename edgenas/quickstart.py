"""`edgenas quickstart`: the short main job until the full pipeline (`edgenas run`) lands.

For each device profile it screens a seeded sample of NB201 cells by *cost only*:
it keeps the candidates inside every static budget (params, FLOPs, peak memory) and
takes the one with the most FLOPs (AZ-NAS's complexity term alone: inside a budget,
bigger tends to train better), checks its measured latency, trains it briefly and
prints one table. Training-free proxies and constraint-aware search replace the
"most FLOPs" rule as they land.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile, check_budgets, fits, load_device
from edgenas.core.errors import UserError
from edgenas.core.progress import progress_bar
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.budget_check import first_fitting
from edgenas.cost.measure import measure_cost
from edgenas.data import dataset_info
from edgenas.report.tables import rows_table, stdout, verdict
from edgenas.report.units import binary_bytes, ms, si
from edgenas.spaces import get_space
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

EXAMPLE_DEVICES = Path(__file__).resolve().parents[1] / "examples" / "devices"


def default_device_files() -> list[Path]:
    """The three example profiles shipped in the repository."""
    files = sorted(EXAMPLE_DEVICES.glob("*.yaml"))
    if not files:
        raise UserError(f"no device profiles in {EXAMPLE_DEVICES}; pass --devices FILE [FILE ...]")
    return files


def sample_pool(space_name: str, n: int, seed: int) -> list[str]:
    """Up to `n` distinct, connected archs drawn from the space with the run's seed."""
    space = get_space(space_name)
    archs = space.sample_distinct(
        n, numpy_rng(seed, "quickstart-sample"), accept=lambda a: getattr(a, "is_connected", True)
    )
    return [str(a) for a in archs]


def pick_for_device(
    profile: DeviceProfile, pool: list[tuple[str, Cost]], space_name: str, shape: NetShape
) -> tuple[str, Cost] | None:
    """Largest-FLOPs candidate inside the static budgets whose measured latency also fits."""
    inside = sorted((c for c in pool if fits(profile.budgets, c[1])), key=lambda c: -c[1].flops)
    # latency is costly to measure: try the 10 largest at most
    chosen, measured = first_fitting(
        get_space(space_name), [a for a, _ in inside], shape, profile, want=1, max_tries=10
    )
    if not chosen:
        return None
    return chosen[0], measured.get(chosen[0], dict(inside)[chosen[0]])


def quickstart(
    *,
    device_files: list[Path] | None = None,
    dataset: str = "fashion-mnist",
    data_dir: Path | None = None,
    n: int = 300,
    epochs: int = 2,
    subset: int | None = 12000,
    space: str = "nb201",
    width: int = 16,
    cells: int = 1,
    seed: int = 0,
    device: str = "auto",
    run_dir: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Pick and train one model per device; print the table and write `results.json`."""
    profiles = [(p, load_device(p)) for p in (device_files or default_device_files())]
    info = dataset_info(dataset, data_dir)
    shape = NetShape.for_data(info, width, cells)
    run = RunDir.create("quickstart", run_dir)
    run.write_config(
        {
            "command": "quickstart",
            "options": {
                "devices": [str(p) for p, _ in profiles],
                "dataset": dataset,
                "n": n,
                "epochs": epochs,
                "subset": subset,
                "space": space,
                "width": width,
                "cells": cells,
                "seed": seed,
            },
        }
    )
    sp = get_space(space)
    archs = sample_pool(space, n, seed)
    t0 = time.perf_counter()
    pool: list[tuple[str, Cost]] = []
    with progress_bar(quiet) as bar:
        task = bar.add_task("cost screen", total=len(archs), status="")
        for arch in archs:
            pool.append((arch, measure_cost(sp.build(sp.parse(arch), shape), shape.input_shape)))
            bar.update(task, advance=1)
    screen_seconds = time.perf_counter() - t0
    run.event("screened", candidates=len(pool), seconds=round(screen_seconds, 2))

    rows, results = [], []
    for path, profile in profiles:
        picked = pick_for_device(profile, pool, space, shape)
        if picked is None:
            run.event("no_fit", device=profile.name)
            rows.append((profile.name, "no candidate fits", "", "", "", "", "", "", ""))
            results.append({"device": profile.name, "profile": str(path), "arch": None})
            continue
        arch, cost = picked
        trained = train_arch(
            arch,
            space=space,
            dataset=dataset,
            data_dir=data_dir,
            width=width,
            cells=cells,
            train=TrainConfig(epochs=epochs, seed=seed),
            subset=subset,
            device=device,
            run_dir=run.path / f"train-{profile.name}",
            quiet=quiet,
        )
        checks = check_budgets(profile.budgets, cost)
        all_pass = all(c.passed is not False for c in checks)
        rows.append(
            (
                profile.name,
                arch,
                si(cost.params),
                si(cost.flops),
                binary_bytes(cost.peak_memory_bytes),
                ms(cost.latency_ms),
                verdict(all_pass),
                f"{trained['test_accuracy'] * 100:.2f}%",
                f"{trained['train_seconds']:.0f}s",
            )
        )
        results.append(
            {
                "device": profile.name,
                "profile": str(path),
                "arch": arch,
                "cost": cost.to_dict(),
                "budgets": [
                    {"budget": c.budget, "limit": c.limit, "value": c.value, "passed": c.passed} for c in checks
                ],
                "test_accuracy": trained["test_accuracy"],
                "train_seconds": trained["train_seconds"],
                "train_run": trained["run_dir"],
            }
        )
    run.write_results(
        {
            "command": "quickstart",
            "screen_seconds": round(screen_seconds, 2),
            "candidates": len(pool),
            "shape": shape.__dict__,
            "devices": results,
        }
    )
    stdout.print(
        rows_table(
            f"edgenas quickstart: {dataset}, {len(pool)} candidates screened by cost, {epochs} epoch(s) on "
            f"{subset or 'all'} images",
            ("device", "arch", "params", "FLOPs", "peak mem", "latency", "budgets", "test acc", "train"),
            rows,
        )
    )
    stdout.print(f"run directory: {run.path}")
    return {"run_dir": str(run.path), "devices": results}
