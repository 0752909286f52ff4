"""Static costs from position costs: the same figures and the same budget verdicts as building and
measuring every network, for every registered space; peak memory measured only when needed."""

from __future__ import annotations

import numpy as np
import pytest

from edgenas.core.device import Budgets, fits
from edgenas.core.space import NetShape
from edgenas.cost.measure import measure_cost
from edgenas.cost.static import StaticCosts, additive_cost
from edgenas.spaces import SPACES, get_space
from edgenas.spaces.nb201 import NB201Arch

SHAPES = {
    "nb201": NetShape(width=4, cells=1, in_channels=1, resolution=9, num_classes=10),
    "darts": NetShape(width=4, cells=3, in_channels=1, resolution=8, num_classes=10),
    "mobile": NetShape(width=4, cells=1, in_channels=1, resolution=12, num_classes=10),
}
# NB201 cells whose dead or missing edges make the built network smaller than the sum of every point
NB201_EDGE_CASES = [
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # no path: the cell outputs zeros
    "|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|",  # node 1 is dead (leads nowhere)
    "|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_1x1~2|",  # edge 2<-1 reads a zero node
]


@pytest.fixture(params=SPACES.names())
def space(request):
    return get_space(request.param)


def _archs(space, n: int) -> list:
    archs = space.sample_distinct(n, np.random.default_rng(3))
    if space.name == "nb201":
        archs += [NB201Arch.parse(a) for a in NB201_EDGE_CASES]
    return archs


def test_static_costs_equal_the_built_networks(space) -> None:
    shape = SHAPES[space.name]
    static = StaticCosts(space, shape)
    for arch in _archs(space, 10 if space.name == "nb201" else 6):
        built = measure_cost(space.build(arch, shape), shape.input_shape)
        assert static.additive(arch) == (built.params, built.flops), str(arch)
        assert static.additive(str(arch)) == (built.params, built.flops)  # strings are archs too
        assert static.cost(arch) == built
        assert additive_cost(space, arch, "flops", shape) == built.flops


def test_static_budget_filter_gives_the_verdicts_of_built_networks(space) -> None:
    """Budgets at the sample's medians split it: every verdict must match measuring the built network."""
    shape = SHAPES[space.name]
    archs = _archs(space, 10 if space.name == "nb201" else 6)
    built = [measure_cost(space.build(a, shape), shape.input_shape) for a in archs]
    med = {
        k: sorted(getattr(c, k) for c in built)[(len(built) - 1) // 2] for k in ("params", "flops", "peak_memory_bytes")
    }
    budget_sets = [
        Budgets(max_params=med["params"]),
        Budgets(max_flops=med["flops"]),
        Budgets(max_peak_memory_bytes=med["peak_memory_bytes"]),
        Budgets(max_params=med["params"], max_flops=med["flops"], max_peak_memory_bytes=med["peak_memory_bytes"]),
        Budgets(max_latency_ms=0.001),  # not static: not held against any arch here
    ]
    static = StaticCosts(space, shape)
    for budgets in budget_sets:
        verdicts = [static.fits(a, budgets) for a in archs]
        assert verdicts == [fits(budgets, c) for c in built], budgets
        # both verdicts occur where some arch lies above the median (the mobile space's peak memory
        # is mostly set by its first stages, so most of a small sample share the top value)
        above = any(getattr(c, k) > med[k] for c in built for k in med if getattr(budgets, f"max_{k}") is not None)
        assert 0 < sum(verdicts) < len(archs) or budgets.max_latency_ms is not None or not above
    assert static.fits(archs[0], None)


def test_peak_memory_is_measured_only_for_archs_inside_the_additive_budgets(monkeypatch) -> None:
    space = get_space("nb201")
    shape = SHAPES["nb201"]
    static = StaticCosts(space, shape)
    built: list[str] = []
    original = space.build
    monkeypatch.setattr(space, "build", lambda arch, s: built.append(str(arch)) or original(arch, s))
    archs = _archs(space, 10)
    params = sorted(static.additive(a)[0] for a in archs)
    budgets = Budgets(max_params=params[len(params) // 2], max_peak_memory_bytes=10**9)
    inside = [str(a) for a in archs if static.fits(a, budgets)]
    assert built == inside and 0 < len(inside) < len(archs)
    assert static.fits(archs[0], Budgets(max_params=1)) is False
    static.cost(inside[0])  # its peak is known: no second build
    assert built == inside
