"""Device profiles: a target's budgets and how its latency is obtained.

A profile is a small YAML file (see `examples/devices/`). Budgets left out are not
checked. Latency is either measured on this machine with onnxruntime (`source: measured`,
with the profile's threads, warm-up and repeats) or predicted from a per-op lookup table
made on the real device by `edgenas profile-device` (`source: table`, `table: FILE`, a
path relative to the profile's folder); see `edgenas.cost.lut`. `lookup_graph: FILE` names a
DCA-NAS lookup graph (`edgenas.search.lookup`) that searches for this device read.

`precision: fp32 | int8` is the number format deployed on the device. Byte budgets
(`max_model_bytes`, flash; `max_peak_memory_bytes`, SRAM) are judged at it: one byte per
weight and per activation at int8 (onnxruntime static quantization, as MCUNet, Lin et al.,
NeurIPS 2020, budgets flash and SRAM of INT8 models), four at fp32. Search and screen,
which cost float32 networks, see the budgets translated into float32 terms
(`DeviceProfile.search_budgets`), so they aim at what will be deployed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
Precision = Literal["fp32", "int8"]
# bytes per weight and per activation at each precision (the costs PyTorch measures are fp32)
BYTES_PER_VALUE: dict[str, int] = {"fp32": 4, "int8": 1}


class Budgets(BaseModel):
    """Upper limits a model must meet on this device (None = not constrained)."""

    model_config = ConfigDict(extra="forbid")

    max_params: Annotated[PositiveInt | None, Quantity] = None
    max_flops: Annotated[PositiveInt | None, Quantity] = None
    max_peak_memory_bytes: Annotated[PositiveInt | None, Quantity] = None
    max_latency_ms: Annotated[PositiveFloat | None, Quantity] = None
    # size of the deployed model file (flash), at the profile's precision
    max_model_bytes: Annotated[PositiveInt | None, Quantity] = None

    def items(self) -> list[tuple[str, float]]:
        """The budgets that are set, as (name, limit)."""
        return [(k, v) for k, v in self.model_dump().items() if v is not None]

    @model_serializer(mode="wrap")
    def _omit_unset_model_bytes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without `max_model_bytes` the budgets dump as before it existed (stored runs compare equal)."""
        data = handler(self)
        if data.get("max_model_bytes") is None:
            data.pop("max_model_bytes", None)
        return data


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
    # the deployed number format: byte budgets are judged at it; `edgenas run` quantizes int8 devices
    precision: Precision = "fp32"

    @model_serializer(mode="wrap")
    def _omit_unset_graph(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without a lookup graph, or at fp32, the profile dumps as before those keys existed
        (stored runs compare equal)."""
        data = handler(self)
        if data.get("lookup_graph") is None:
            data.pop("lookup_graph", None)
        if data.get("precision") == "fp32":
            data.pop("precision", None)
        return data

    def search_budgets(self) -> Budgets:
        """The budgets in the terms of the float32 costs search and screen compute.

        At precision p with b bytes per value: a peak-memory limit L becomes 4L/b bytes of
        float32 activations, and a model-size limit M becomes at most M/b parameters
        (with `max_params`, the tighter of the two). A float32 profile without
        `max_model_bytes` gets its budgets back as they are.
        """
        b = BYTES_PER_VALUE[self.precision]
        budgets = self.budgets
        update: dict[str, Any] = {}
        if budgets.max_peak_memory_bytes is not None and b != 4:
            update["max_peak_memory_bytes"] = budgets.max_peak_memory_bytes * 4 // b
        if budgets.max_model_bytes is not None:
            params = max(1, budgets.max_model_bytes // b)
            update["max_params"] = min(params, budgets.max_params or params)
            update["max_model_bytes"] = None
        return budgets.model_copy(update=update) if update else budgets

    def check(self, cost: Cost) -> list[BudgetCheck]:
        """Every set budget against `cost` taken to this profile's precision (`at_precision`)."""
        return check_budgets(self.budgets, at_precision(cost, self.precision))

    def fits(self, cost: Cost) -> bool:
        """True when no measured cost, at this profile's precision, exceeds its budget."""
        return all(c.passed is not False for c in self.check(cost))


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
    "max_model_bytes": "model_bytes",
}


def at_precision(cost: Cost, precision: str) -> Cost:
    """`cost` with its byte counts at `precision` (a cost already at it comes back as it is).

    From float32 measurements: peak activation memory scales by bytes per value / 4; the
    model size, when no file was measured, stays unset (budgets then judge params x bytes
    per weight). Parameter and FLOP counts do not change; latency is whatever was measured.
    """
    if cost.precision == precision:
        return cost
    if cost.precision != "fp32":
        raise ValueError(f"cannot take a {cost.precision} cost to {precision}")
    b = BYTES_PER_VALUE[precision]
    return replace(cost, precision=precision, peak_memory_bytes=cost.peak_memory_bytes * b // 4)


def model_bytes(cost: Cost) -> int:
    """The model file's measured size, else params x bytes per weight at the cost's precision."""
    return cost.model_bytes if cost.model_bytes is not None else cost.params * BYTES_PER_VALUE[cost.precision]


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
    """Compare every set budget with the matching cost, as the cost states it (its `precision`;
    `DeviceProfile.check` first takes a cost to the profile's precision)."""
    return [
        BudgetCheck(name, limit, model_bytes(cost) if name == "max_model_bytes" else getattr(cost, COST_FIELD[name]))
        for name, limit in budgets.items()
    ]


def fits(budgets: Budgets, cost: Cost) -> bool:
    """True when no measured cost exceeds its budget (unmeasured ones are not held against it)."""
    return all(c.passed is not False for c in check_budgets(budgets, cost))
