"""Does an architecture fit a device? Measure its cost and compare with every budget."""

from __future__ import annotations

from edgenas.core.cost import Cost
from edgenas.core.device import BudgetCheck, DeviceProfile, check_budgets
from edgenas.core.space import NetShape, SearchSpace
from edgenas.cost.measure import measure_cost


def check_arch_on_device(
    space: SearchSpace, arch: str, shape: NetShape, profile: DeviceProfile, *, latency: bool = True
) -> tuple[Cost, list[BudgetCheck]]:
    """Cost of `arch` at `shape` (latency measured with the profile's settings) and the checks."""
    model = space.build(space.parse(arch), shape).eval()
    want_latency = latency and profile.budgets.max_latency_ms is not None
    spec = profile.latency
    cost = measure_cost(
        model,
        shape.input_shape,
        latency="onnx" if want_latency else None,
        threads=spec.threads,
        repeats=spec.repeats,
        warmup=spec.warmup,
    )
    return cost, check_budgets(profile.budgets, cost)
