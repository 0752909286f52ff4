"""The least a space's networks can cost, and budgets refused up front when they lie below it.

Without this check a device with `max_params: 10` sends `edgenas run` into a full search
before anything says that no architecture can fit. The floor is the exact cost of the
space's `cheapest()` arch at the deployed shape (params, FLOPs, peak activation memory;
latency too when the profile predicts it from a table that covers the shape).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.core.cost import Cost
from edgenas.core.device import DeviceProfile
from edgenas.core.errors import ConfigError
from edgenas.core.space import NetShape, SearchSpace
from edgenas.cost.measure import measure_cost
from edgenas.report.units import format_budget_value


@dataclass(frozen=True)
class Unreachable:
    """One budget that no arch of the space can meet."""

    budget: str
    limit: float
    floor: float

    def message(self, device: str, space: str, shape: NetShape) -> str:
        return (
            f"device {device!r}: {self.budget} {format_budget_value(self.budget, self.limit)} is below the "
            f"smallest network of the {space} space at width {shape.width}, cells {shape.cells} "
            f"({format_budget_value(self.budget, self.floor)}); no architecture can fit: raise the budget "
            f"or make the networks smaller (space width/cells)"
        )


def cost_floor(space: SearchSpace, shape: NetShape) -> Cost:
    """Exact params, FLOPs and peak memory of the space's cheapest network at `shape` (no latency)."""
    model = space.build(space.cheapest(), shape).eval()
    return measure_cost(model, shape.input_shape, latency=None)


def unreachable_budgets(profile: DeviceProfile, space: SearchSpace, shape: NetShape) -> list[Unreachable]:
    """The profile's budgets that lie below the space's floor at `shape`."""
    floor = cost_floor(space, shape)
    values = {c.budget: c.value for c in profile.check(floor)}  # byte budgets at the profile's precision
    if profile.budgets.max_latency_ms is not None:
        values["max_latency_ms"] = _table_latency(profile, space, shape)
    return [
        Unreachable(name, limit, values[name])
        for name, limit in profile.budgets.items()
        if values.get(name) is not None and limit < values[name]
    ]


def check_reachable(profile: DeviceProfile, space: SearchSpace, shape: NetShape, where: str = "") -> None:
    """Raise a one-line `ConfigError` (prefixed by `where`) for the first budget no arch can meet."""
    for bad in unreachable_budgets(profile, space, shape):
        raise ConfigError(f"{where}{bad.message(profile.name, space.name, shape)}")


def _table_latency(profile: DeviceProfile, space: SearchSpace, shape: NetShape) -> float | None:
    """The cheapest network's latency predicted by the profile's table, if it has one covering `shape`.

    A measured latency is not used: timing at config load would make the check depend on the
    machine's load; the budget is checked on the chosen network as before.
    """
    if profile.latency.source != "table":
        return None
    from edgenas.cost.lut import latency_table_for

    try:
        table = latency_table_for(profile)
        if table is None or table.space != space.name:  # another space's table: the budget check says so
            return None
        return float(table.predict_ms(space.cheapest(), shape))
    except ConfigError:  # the table does not cover this shape: the run reports that itself
        return None
