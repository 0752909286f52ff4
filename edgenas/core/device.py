"""Device profiles: a target's budgets and how its latency is obtained.

A profile is a small YAML file (see `examples/devices/`). Budgets left out are not
checked. Latency is either measured on this machine with onnxruntime (`source: measured`,
with the profile's threads, warm-up and repeats) or predicted from a per-op lookup table
made on the real device by `edgenas profile-device` (`source: table`, `table: FILE`, a
path relative to the profile's folder); see `edgenas.cost.lut`. `lookup_graph: FILE` names a
DCA-NAS lookup graph (`edgenas.search.lookup`) that searches for this device read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from edgenas.core.cost import Cost
from edgenas.core.errors import ConfigError
from edgenas.core.yamlio import load_model, parse_quantity

Quantity = BeforeValidator(parse_quantity)


class Budgets(BaseModel):
    """Upper limits a model must meet on this device (None = not constrained)."""

    model_config = ConfigDict(extra="forbid")

    max_params: Annotated[PositiveInt | None, Quantity] = None
    max_flops: Annotated[PositiveInt | None, Quantity] = None
    max_peak_memory_bytes: Annotated[PositiveInt | None, Quantity] = None
    max_latency_ms: Annotated[PositiveFloat | None, Quantity] = None

    def items(self) -> list[tuple[str, float]]:
        """The budgets that are set, as (name, limit)."""
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


class LatencySpec(BaseModel):
    """How latency is obtained for this device."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["measured", "table"] = "measured"
    # latency table file for `source: table` (made by `edgenas profile-device`); load_device
    # resolves it against the profile's folder
    table: str | None = None
    threads: PositiveInt = 1
    warmup: PositiveInt = 10
    repeats: PositiveInt = 50


class DeviceProfile(BaseModel):
    """One target device."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    budgets: Budgets = Field(default_factory=Budgets)
    latency: LatencySpec = Field(default_factory=LatencySpec)
    # DCA-NAS lookup graph (`edgenas search --method dca --calibrate`): searches for this device run
    # at the search budgets it gives; load_device resolves it against the profile's folder
    lookup_graph: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_graph(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a lookup graph the profile dumps as before it existed (stored runs compare equal)."""
        data = handler(self)
        if data.get("lookup_graph") is None:
            data.pop("lookup_graph", None)
        return data


def load_device(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile; errors name the file, line and key.

    `latency.table` comes back as a path resolved against the profile's folder; a
    `source: table` without a table, or a table file that does not exist, is a
    `ConfigError` naming the profile.
    """
    profile = load_model(DeviceProfile, path)
    spec = profile.latency
    if spec.source == "table":
        make = "make one on the device with `edgenas profile-device --name NAME --space nb201 --resolution R`"
        if not spec.table:
            raise ConfigError(f"{path}: latency.source is 'table' but latency.table is not set; {make}")
        table = Path(spec.table).expanduser()
        if not table.is_absolute():
            table = Path(path).parent / table
        if not table.is_file():
            raise ConfigError(f"{path}: latency.table {table}: no such file; {make}")
        profile = profile.model_copy(update={"latency": spec.model_copy(update={"table": str(table)})})
    if profile.lookup_graph:
        graph = Path(profile.lookup_graph).expanduser()
        if not graph.is_absolute():
            graph = Path(path).parent / graph
        if not graph.is_file():
            raise ConfigError(
                f"{path}: lookup_graph {graph}: no such file; make one with `edgenas search --method dca --calibrate`"
            )
        profile = profile.model_copy(update={"lookup_graph": str(graph)})
    return profile


COST_FIELD = {
    "max_params": "params",
    "max_flops": "flops",
    "max_peak_memory_bytes": "peak_memory_bytes",
    "max_latency_ms": "latency_ms",
}


@dataclass(frozen=True)
class BudgetCheck:
    """One budget compared with one cost."""

    budget: str
    limit: float
    value: float | None

    @property
    def passed(self) -> bool | None:
        """True/False, or None when the cost was not measured (e.g. latency skipped)."""
        return None if self.value is None else self.value <= self.limit


def check_budgets(budgets: Budgets, cost: Cost) -> list[BudgetCheck]:
    """Compare every set budget with the matching cost."""
    return [BudgetCheck(name, limit, getattr(cost, COST_FIELD[name])) for name, limit in budgets.items()]


def fits(budgets: Budgets, cost: Cost) -> bool:
    """True when no measured cost exceeds its budget (unmeasured ones are not held against it)."""
    return all(c.passed is not False for c in check_budgets(budgets, cost))
