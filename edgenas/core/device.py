"""Device profiles: a target's budgets and how its latency is obtained.

A profile is a small YAML file (see `examples/devices/`). Budgets left out are not
checked. Latency is measured on this machine with onnxruntime (`source: measured`) with
the profile's thread count; a per-op lookup table made on the real device is the next
source to add (profile-device).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat, PositiveInt

from edgenas.core.cost import Cost
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

    source: Literal["measured"] = "measured"
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


def load_device(path: str | Path) -> DeviceProfile:
    """Read and validate a device profile; errors name the file, line and key."""
    return load_model(DeviceProfile, path)


_COST_FIELD = {
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
    return [BudgetCheck(name, limit, getattr(cost, _COST_FIELD[name])) for name, limit in budgets.items()]


def fits(budgets: Budgets, cost: Cost) -> bool:
    """True when no measured cost exceeds its budget (unmeasured ones are not held against it)."""
    return all(c.passed is not False for c in check_budgets(budgets, cost))
