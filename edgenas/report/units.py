"""Pretty units for people (code and JSON keep raw units: bytes, FLOPs, ms)."""

from __future__ import annotations


def si(value: float | None, unit: str = "") -> str:
    """1234567 -> '1.23M' (powers of 10)."""
    if value is None:
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{unit}"
    return f"{value:.3g}{unit}"


def binary_bytes(value: float | None) -> str:
    """262144 -> '256 KiB' (powers of 2, as memory is sold)."""
    if value is None:
        return "-"
    for factor, prefix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{int(value)} B"


def ms(value: float | None) -> str:
    """Milliseconds with 3 significant digits."""
    return "-" if value is None else f"{value:.3g} ms"


def format_budget_value(budget: str, value: float | None) -> str:
    """Format a cost value in the unit of its budget."""
    if budget in ("max_peak_memory_bytes", "max_model_bytes"):
        return binary_bytes(value)
    if budget == "max_latency_ms":
        return ms(value)
    return si(value)
