"""`edgenas baseline`: the stock MobileNet a user would deploy instead, scaled to fit a device.

Picks the largest width multiplier on a 0.05 grid whose exact cost (params, FLOPs, peak
activation memory; latency measured the profile's way, with onnxruntime here when the
profile's table is of a search space, which a stock network is not) meets every budget of
the profile, trains it with the run's protocol (the `TrainConfig`, the same data, and KD
from the same teacher when one is given) and writes a run like `edgenas train`'s: config,
events, `results.json` with the cost, the budget checks and the test accuracy, `model.pt`.
Stock networks: `edgenas.spaces.mobile.stock` (MobileNetV2, MobileNetV3-Small). The same
search and training make `edgenas bench e2e`'s stock arms (`pipeline.jobs.stock_job`), where a
FiLM-conditioned generic teacher (Binici et al., BMVC 2024) is given the stock network's
capacity code: its FLOPs and params on the run's students' scale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from edgenas.core.compute import resolve_device
from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.rundir import RunDir
from edgenas.core.seeding import derive_seed, seed_everything
from edgenas.core.space import NetShape
from edgenas.distill.modes import conditioned
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
    """The largest multiplier on the grid whose cost meets every budget of `profile` (byte budgets at
    its precision, as `DeviceProfile.fits` judges them), and that cost.

    Every width of a stock network is non-decreasing in the multiplier, so are its params, FLOPs
    and peak memory: the largest multiplier meeting the static budgets is found by bisection.
    Latency (not monotone when measured) is then measured walking down from there, until one
    fits. `cost_fn(multiplier, latency)` replaces `stock_cost` (tests). A profile no multiplier
    meets is a `ConfigError`. `edgenas baseline` and `edgenas bench e2e`'s stock arms use this.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown baseline family {family!r}; choose one of {', '.join(FAMILIES)}")
    cost_of = cost_fn or (lambda m, lat: stock_cost(family, m, shape, profile, lat))
    static = profile.model_copy(update={"budgets": profile.budgets.model_copy(update={"max_latency_ms": None})})
    order = multipliers(grid, largest)
    costs: dict[float, Cost] = {}

    def static_fit(i: int) -> bool:
        costs[order[i]] = cost_of(order[i], False)
        return static.fits(costs[order[i]])

    lo, hi = 0, len(order)  # the first index that fits statically is in [lo, hi]; len(order): none does
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if static_fit(mid) else (mid + 1, hi)
    for m in order[lo:]:
        if profile.budgets.max_latency_ms is None:
            return m, costs[m]
        cost = cost_of(m, True)
        if profile.fits(cost):
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
    from edgenas.data import dataset_info

    profile = device if isinstance(device, DeviceProfile) else load_device(device)
    shape = NetShape.for_data(dataset_info(dataset, data_dir, resize=resize))
    if teacher:  # a teacher that cannot teach fails before the multiplier search
        stock_teacher(teacher, shape, None)
    multiplier, cost = largest_fitting(family, profile, shape)
    checks = profile.check(cost)
    fitted = {
        "device_profile": profile.name,
        "cost": asdict(cost),
        "checks": [{**asdict(c), "passed": c.passed} for c in checks],
        "fits": all(c.passed is not False for c in checks),
    }
    return train_stock(
        family,
        multiplier,
        dataset=dataset,
        data_dir=data_dir,
        subset=subset,
        val_fraction=val_fraction,
        resize=resize,
        train=train,
        teacher=teacher,
        kd=kd,
        compute=compute,
        run_dir=run_dir,
        quiet=quiet,
        extra=fitted,
    )


def stock_teacher(
    path: str | Path, shape: NetShape, students: dict[str, Any] | None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher a stock network distils from. A FiLM-conditioned generic teacher needs a capacity
    code: `students` (space, width, cells of the searched students it stands beside) gives the
    scale to code the stock network on; without it such a teacher is refused."""
    from edgenas.distill.modes import check_student_space, teacher_for

    t_model, info = teacher_for(path, shape)
    if conditioned(info):
        if students is None:
            raise ConfigError(
                f"teacher {path}: a stock network distils from an unconditioned teacher (plain, or generic "
                "with conditioning none), not a FiLM-conditioned generic one"
            )
        check_student_space(path, info, students["space"])
    return t_model, info


def stock_code(family: str, multiplier: float, shape: NetShape, students: dict[str, Any]) -> torch.Tensor:
    """Capacity code of a stock network for a FiLM teacher: its exact FLOPs and params placed on the
    scale of the students' space at their deployed width and cells (`CapacityCoder.code_of_cost`)."""
    from edgenas.cost.measure import measure_cost
    from edgenas.distill.generic_teacher import CapacityCoder

    with torch.random.fork_rng():  # building the network to cost it leaves the seeded streams alone
        cost = measure_cost(StockMobileNet(family, multiplier, shape).eval(), shape.input_shape, latency=None)
    coder = CapacityCoder(replace(shape, width=students["width"], cells=students["cells"]), students["space"])
    return coder.code_of_cost(cost.flops, cost.params)


def train_stock(
    family: str,
    multiplier: float,
    *,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    subset: int | None = None,
    val_fraction: float = 0.1,
    resize: int | None = None,
    in_memory: bool | str = True,
    skip_bad: bool = False,
    data_workers: int | None = None,
    train: Any = None,
    teacher: str | Path | None = None,
    kd: dict[str, Any] | None = None,
    students: dict[str, Any] | None = None,
    compute: str = "auto",
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the stock network `family@multiplier` as a run's students are trained (`TrainConfig`, the
    data read as `train_arch` reads it, KD from `teacher`), checkpointed every epoch; writes a run like
    `edgenas baseline`'s. `students`: see `stock_teacher`. `extra`: fields recorded in the run's options
    (`fitted`) and results (the device and cost the multiplier was chosen for). `resume`: continue that run."""
    from edgenas.distill.kd import KDConfig
    from edgenas.train.train_arch import load_run_data
    from edgenas.train.trainer import TrainConfig

    if resume is not None:
        run = RunDir.open_existing(resume, "baseline")
        return _train_stock(run, run.read_config()["options"], compute, quiet, None, data_workers)
    if family not in FAMILIES:
        raise ConfigError(f"unknown baseline family {family!r}; choose one of {', '.join(FAMILIES)}")
    cfg = train or TrainConfig()
    opts: dict[str, Any] = {
        "family": family,
        "multiplier": multiplier,
        "fitted": extra,
        "dataset": dataset,
        "data_dir": str(data_dir) if data_dir else None,
        "subset": subset,
        "val_fraction": val_fraction,
        "resize": resize,
        "in_memory": in_memory,
        "skip_bad": skip_bad,
        "train": cfg.model_dump(),
        "teacher": str(teacher) if teacher else None,
        "kd": KDConfig(**(kd or {})).model_dump() if teacher else None,
        "students": students,
    }
    data = load_run_data(opts, cfg.seed, data_workers)  # bad data fails before a run folder exists
    if teacher:  # so does a teacher that cannot teach this data
        stock_teacher(teacher, NetShape.for_data(data.info), students)
    run = RunDir.create("baseline", run_dir)
    if teacher:  # also relative to the run, so a moved tree of runs finds it
        opts["teacher_rel"] = run.relative(teacher)
    run.write_config({"command": "baseline", "options": opts})
    return _train_stock(run, opts, compute, quiet, data, data_workers)


def _train_stock(
    run: RunDir, opts: dict[str, Any], compute: str, quiet: bool, data: Any, data_workers: int | None
) -> dict[str, Any]:
    from edgenas.distill.kd import Distiller, KDConfig, kd_loss_fn
    from edgenas.train.train_arch import load_run_data
    from edgenas.train.trainer import TrainConfig, Trainer

    cfg = TrainConfig(**opts["train"])
    if data is None:
        data = load_run_data(opts, cfg.seed, data_workers)
    shape = NetShape.for_data(data.info)
    family, multiplier = opts["family"], opts["multiplier"]
    teacher = run.locate(opts["teacher"], opts.get("teacher_rel")) if opts.get("teacher") else None
    t_model, code = None, None
    if teacher:
        t_model, info = stock_teacher(teacher, shape, opts.get("students"))
        if conditioned(info):
            code = stock_code(family, multiplier, shape, opts["students"])
    seed_everything(cfg.seed)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        model = StockMobileNet(family, multiplier, shape)
    net: torch.nn.Module = model
    loss_fn = None
    if t_model is not None:
        net, loss_fn = Distiller(model, t_model, KDConfig(**opts["kd"]), code), kd_loss_fn
    dev = resolve_device(compute)
    trainer = Trainer(net, data, cfg, dev, run=run, loss_fn=loss_fn, quiet=quiet)
    resumed_from = trainer.epoch if trainer.load_checkpoint() else None
    precision = trainer.precision.describe()
    run.event(
        "start", resumed_from_epoch=resumed_from, device=str(dev), threads=torch.get_num_threads(), precision=precision
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(
        {"family": family, "multiplier": multiplier, "shape": asdict(shape), "state_dict": state}, run.file("model.pt")
    )
    results = {
        "command": "baseline",
        "arch": model.arch,
        "family": family,
        "multiplier": multiplier,
        **(opts.get("fitted") or {}),
        "shape": asdict(shape),
        "train": cfg.model_dump(),
        "teacher": teacher,
        "kd": opts["kd"],
        "capacity_code": code.tolist() if code is not None else None,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "precision": precision,
        "resumed_from_epoch": resumed_from,
        "train_seconds_total": round(time.perf_counter() - t0, 2),
        "train_images": len(data.train),
        **result,
    }
    run.write_results(results)
    run.event("done", test_accuracy=result["test_accuracy"])
    results["run_dir"] = str(run.path)
    return results
