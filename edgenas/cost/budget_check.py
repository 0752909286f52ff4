"""Does an architecture fit a device? Measure its cost the profile's way and compare with every budget.

`check_devices` is `edgenas devices check`: one arch against several device profiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from edgenas.core.cost import Cost
from edgenas.core.device import BudgetCheck, DeviceProfile, load_device
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape, SearchSpace
from edgenas.cost.lut import latency_table_for
from edgenas.cost.measure import measure_cost


def measure_for_device(
    model: nn.Module, input_shape: tuple[int, int, int], profile: DeviceProfile, *, latency: bool = True
) -> Cost:
    """All costs, latency only when the profile has a latency budget, obtained the profile's way.

    `source: measured`: the model is exported and timed with onnxruntime here, with the
    profile's threads/warm-up/repeats. `source: table`: the latency is predicted from the
    profile's latency table (`LatencyTable.predict_ms` of the model's arch and shape), so
    the model must be a network of the table's space (`.arch`, `.shape`) of a shape it covers.
    An INT8 profile's latency is that of the INT8 network: its table must hold INT8 ops
    (`latency_table_for` refuses another), and a measured latency is the model's INT8 file,
    quantized as `edgenas export --int8` does (`quantized_latency_ms`), timed here.
    """
    spec = profile.latency
    want_latency = latency and profile.budgets.max_latency_ms is not None
    table = latency_table_for(profile) if want_latency else None
    if table is not None:
        arch, shape = getattr(model, "arch", None), getattr(model, "shape", None)
        arch_space = getattr(arch, "space_name", None)
        if arch_space != table.space or not isinstance(shape, NetShape):
            what = f"a {arch_space} network" if arch_space else f"a {type(model).__name__}"
            raise ConfigError(
                f"device {profile.name!r} predicts latency from the table {spec.table}, which covers "
                f"{table.space} networks; {what} is not one (use `latency: {{source: measured}}` for it)"
            )
        if tuple(input_shape) != shape.input_shape:
            raise ConfigError(f"input shape {tuple(input_shape)} differs from the network's {shape.input_shape}")
        cost = measure_cost(model, input_shape, latency=None)
        return replace(cost, latency_ms=table.predict_ms(arch, shape))
    if want_latency and profile.precision == "int8":
        from edgenas.export.quantize import quantized_latency_ms

        cost = measure_cost(model, input_shape, latency=None)
        timing = {"threads": spec.threads, "warmup": spec.warmup, "repeats": spec.repeats}
        return replace(cost, latency_ms=quantized_latency_ms(model.eval(), tuple(input_shape), **timing))
    return measure_cost(
        model,
        input_shape,
        latency="onnx" if want_latency else None,
        threads=spec.threads,
        repeats=spec.repeats,
        warmup=spec.warmup,
    )


def check_arch_on_device(
    space: SearchSpace, arch: str, shape: NetShape, profile: DeviceProfile, *, latency: bool = True
) -> tuple[Cost, list[BudgetCheck]]:
    """Cost of `arch` at `shape` (latency measured with the profile's settings) and the checks."""
    model = space.build(space.parse(arch), shape).eval()
    cost = measure_for_device(model, shape.input_shape, profile, latency=latency)
    return cost, profile.check(cost)


def first_fitting(
    space: SearchSpace,
    ranked: Iterable[str],
    shape: NetShape,
    profile: DeviceProfile | None,
    *,
    want: int,
    max_tries: int | None = None,
) -> tuple[list[str], dict[str, Cost]]:
    """Walk archs already inside the static budgets, best first, until `want` also meet the latency budget.

    Latency is costly to measure, so it is measured only for the archs walked (at most
    `max_tries`); returns the chosen archs and the measured cost of every arch walked.
    Without a latency budget the first `want` archs are taken as they are.
    """
    chosen: list[str] = []
    measured: dict[str, Cost] = {}
    need_latency = profile is not None and profile.budgets.max_latency_ms is not None
    for tries, arch in enumerate(ranked):
        if len(chosen) == want or (max_tries is not None and tries == max_tries):
            break
        if need_latency:
            cost = measure_for_device(space.build(space.parse(arch), shape), shape.input_shape, profile)
            measured[arch] = cost
            if not profile.fits(cost):
                continue
        chosen.append(arch)
    return chosen, measured


def check_devices(
    arch: str,
    device_files: Sequence[str | Path],
    *,
    space: str = "nb201",
    width: int = 16,
    cells: int = 1,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    resize: int | None = None,
    latency: bool = True,
) -> dict[str, Any]:
    """Cost of `arch` (built for the dataset's input at width/cells) against every profile's budgets.

    Returns the canonical `arch`, its `shape` (`NetShape`), one entry per profile
    (`file`, `profile`, `cost`, `checks`: `BudgetCheck`s) and `all_pass` (no budget missed;
    an unmeasured one does not count as missed).
    """
    from edgenas.data import dataset_info
    from edgenas.spaces import get_space

    sp = get_space(space)
    arch = str(sp.parse(arch))
    shape = NetShape.for_data(dataset_info(dataset, data_dir, resize=resize), width, cells)
    devices = []
    for path in device_files:
        profile = load_device(path)
        cost, checks = check_arch_on_device(sp, arch, shape, profile, latency=latency)
        devices.append({"file": str(path), "profile": profile, "cost": cost, "checks": checks})
    all_pass = not any(c.passed is False for d in devices for c in d["checks"])
    return {"arch": arch, "shape": shape, "devices": devices, "all_pass": all_pass}
