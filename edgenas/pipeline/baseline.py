"""`edgenas baseline`: the stock MobileNet a user would deploy instead, scaled to fit a device.

Picks the largest width multiplier on a 0.05 grid whose exact cost (params, FLOPs, peak
activation memory; latency measured the profile's way, with onnxruntime here when the
profile's table is of a search space, which a stock network is not) meets every budget of
the profile, trains it with the run's protocol (the `TrainConfig`, the same data, and KD
from the same teacher when one is given) and writes a run like `edgenas train`'s: config,
events, `results.json` with the cost, the budget checks and the test accuracy, `model.pt`.
Stock networks: `edgenas.spaces.mobile.stock` (MobileNetV2, MobileNetV3-Small).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from edgenas.core.compute import resolve_device
from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile, check_budgets, fits, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, seed_everything
from edgenas.core.space import NetShape
from edgenas.spaces.mobile.stock import FAMILIES, StockMobileNet

GRID = 0.05
MAX_MULTIPLIER = 2.0


def multipliers(grid: float = GRID, largest: float = MAX_MULTIPLIER) -> list[float]:
    """The grid 0.05, 0.10, ... up to `largest`, largest first."""
    steps = round(largest / grid)
    return [round(i * grid, 4) for i in range(steps, 0, -1)]


def stock_cost(family: str, multiplier: float, shape: NetShape, profile: DeviceProfile, latency: bool = True) -> Cost:
    """Exact params, FLOPs and peak memory of the stock network; latency (when budgeted) measured with
    onnxruntime under the profile's threads, warm-up and repeats."""
    from edgenas.cost.measure import measure_cost

    spec = profile.latency
    want = latency and profile.budgets.max_latency_ms is not None
    model = StockMobileNet(family, multiplier, shape).eval()
    return measure_cost(
        model,
        shape.input_shape,
        latency="onnx" if want else None,
        threads=spec.threads,
        repeats=spec.repeats,
        warmup=spec.warmup,
    )


def largest_fitting(
    family: str,
    profile: DeviceProfile,
    shape: NetShape,
    *,
    cost_fn: Callable[[float, bool], Cost] | None = None,
    grid: float = GRID,
    largest: float = MAX_MULTIPLIER,
) -> tuple[float, Cost]:
    """The largest multiplier on the grid whose cost meets every budget of `profile`, and that cost.

    Static budgets are checked first on every multiplier (largest first); latency is measured
    only for those that pass them, until one fits. `cost_fn(multiplier, latency)` replaces
    `stock_cost` (tests). A profile no multiplier meets is a `ConfigError`.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown baseline family {family!r}; choose one of {', '.join(FAMILIES)}")
    cost_of = cost_fn or (lambda m, lat: stock_cost(family, m, shape, profile, lat))
    static = profile.budgets.model_copy(update={"max_latency_ms": None})
    for m in multipliers(grid, largest):
        if not fits(static, cost_of(m, False)):
            continue
        cost = cost_of(m, True) if profile.budgets.max_latency_ms is not None else cost_of(m, False)
        if fits(profile.budgets, cost):
            return m, cost
    raise ConfigError(
        f"no {family} multiplier in {grid:g}..{largest:g} (step {grid:g}) meets every budget of device "
        f"{profile.name!r}; loosen a budget or use a searched network"
    )


def run_baseline(
    family: str,
    device: str | Path | DeviceProfile,
    *,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    subset: int | None = None,
    val_fraction: float = 0.1,
    resize: int | None = None,
    train: Any = None,
    teacher: str | Path | None = None,
    kd: dict[str, Any] | None = None,
    compute: str = "auto",
    run_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Pick the largest fitting multiplier of `family` for the device profile, train it, write the run."""
    from edgenas.data import load_dataset
    from edgenas.distill.kd import Distiller, KDConfig, kd_loss_fn
    from edgenas.distill.modes import conditioned, teacher_for
    from edgenas.train.trainer import TrainConfig, Trainer

    profile = device if isinstance(device, DeviceProfile) else load_device(device)
    cfg = train or TrainConfig()
    data = load_dataset(dataset, data_dir, seed=cfg.seed, val_fraction=val_fraction, subset=subset, resize=resize)
    shape = NetShape.for_data(data.info)
    t_model = None
    if teacher:
        t_model, info = teacher_for(teacher, shape)
        if conditioned(info):
            raise ConfigError(
                f"teacher {teacher}: a stock network distils from an unconditioned teacher (plain, or generic "
                "with conditioning none), not a FiLM-conditioned generic one"
            )
    multiplier, cost = largest_fitting(family, profile, shape)
    run = RunDir.create("baseline", run_dir)
    opts = {
        "family": family,
        "multiplier": multiplier,
        "device_profile": profile.name,
        "dataset": dataset,
        "subset": subset,
        "val_fraction": val_fraction,
        "resize": resize,
        "train": cfg.model_dump(),
        "teacher": str(teacher) if teacher else None,
        "kd": KDConfig(**(kd or {})).model_dump() if teacher else None,
    }
    run.write_config({"command": "baseline", "options": opts})
    seed_everything(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = StockMobileNet(family, multiplier, shape)
    net: torch.nn.Module = model
    loss_fn = None
    if t_model is not None:
        net, loss_fn = Distiller(model, t_model, KDConfig(**opts["kd"]), None), kd_loss_fn
    dev = resolve_device(compute)
    trainer = Trainer(net, data, cfg, dev, run=run, loss_fn=loss_fn, quiet=quiet)
    t0 = time.perf_counter()
    result = trainer.fit()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {"family": family, "multiplier": multiplier, "shape": asdict(shape), "state_dict": state}, run.file("model.pt")
    )
    checks = check_budgets(profile.budgets, cost)
    results = {
        "command": "baseline",
        "arch": model.arch,
        "family": family,
        "multiplier": multiplier,
        "device_profile": profile.name,
        "shape": asdict(shape),
        "cost": asdict(cost),
        "checks": [{**asdict(c), "passed": c.passed} for c in checks],
        "fits": all(c.passed is not False for c in checks),
        "train": cfg.model_dump(),
        "teacher": opts["teacher"],
        "device": str(dev),
        "train_seconds_total": round(time.perf_counter() - t0, 2),
        **result,
    }
    run.write_results(results)
    run.event("done", test_accuracy=result["test_accuracy"])
    results["run_dir"] = str(run.path)
    return results
