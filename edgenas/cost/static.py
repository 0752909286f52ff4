"""Static costs (params, FLOPs, peak memory) of many archs of one space, building few networks.

Params and FLOPs are additive over a space's choice points: the supernet description gives
the exact count of every (point, op) at the deployed shape (`SearchSpace.position_costs`),
so cost(arch) = fixed + Σ over the arch's live points of w[p, op_p] — the number
`count_params` / `count_flops` give for the built network, without building it (the same
terms DCA-NAS puts in its loss; Dutta et al., PReMI 2023). Peak activation memory is a
maximum over time, not a sum, so it is measured on the built network
(`peak_activation_bytes`), and a screen measures it only for archs the additive budgets
let through. Latency is not static: `edgenas.cost.budget_check` measures it.
"""

from __future__ import annotations

import numpy as np

from edgenas.core.cost import Cost
from edgenas.core.device import Budgets
from edgenas.core.space import Arch, NetShape, SearchSpace
from edgenas.cost.memory import peak_activation_bytes

ADDITIVE_KINDS = ("params", "flops")
# (space name, kind, shape) -> (fixed, (points, ops) weights); a few shapes per process at most
_POSITION_COSTS: dict[tuple[str, str, NetShape], tuple[float, np.ndarray]] = {}


def position_costs(space: SearchSpace, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
    """`space.position_costs(kind, shape)`, computed once per process (it counts every op module)."""
    key = (space.name, kind, shape)
    if key not in _POSITION_COSTS:
        fixed, weights = space.position_costs(kind, shape)
        weights = np.array(weights, dtype=np.float64)
        weights.flags.writeable = False
        _POSITION_COSTS[key] = (float(fixed), weights)
    return _POSITION_COSTS[key]


def additive_cost(space: SearchSpace, arch: Arch, kind: str, shape: NetShape) -> int:
    """Exact `kind` ("params" or "flops", batch 1) of `space.build(arch, shape)`, from position costs."""
    fixed, weights = position_costs(space, kind, shape)
    index = space.encode(arch)
    live = space.live_points(arch)
    return round(fixed + float(weights[np.flatnonzero(live), index[live]].sum()))


class StaticCosts:
    """Params, FLOPs and peak memory of archs of `space` at `shape`, each figure computed at most once.

    Archs are given as `Arch`s or canonical strings. Several screens of one sample (one per
    device) share an instance, so an arch costed for one device is not costed again.
    """

    def __init__(self, space: SearchSpace, shape: NetShape) -> None:
        self.space = space
        self.shape = shape
        self._additive: dict[str, tuple[int, int]] = {}
        self._peak: dict[str, int] = {}

    def _arch(self, arch: Arch | str) -> Arch:
        return self.space.parse(arch) if isinstance(arch, str) else arch

    def additive(self, arch: Arch | str) -> tuple[int, int]:
        """(params, FLOPs) of the arch's network, exact, without building it."""
        key = str(arch)
        if key not in self._additive:
            a = self._arch(arch)
            self._additive[key] = (
                additive_cost(self.space, a, "params", self.shape),
                additive_cost(self.space, a, "flops", self.shape),
            )
        return self._additive[key]

    def peak_memory_bytes(self, arch: Arch | str) -> int:
        """Peak activation bytes of one batch-1 inference, measured on the built network."""
        key = str(arch)
        if key not in self._peak:
            net = self.space.build(self._arch(arch), self.shape)
            self._peak[key] = peak_activation_bytes(net, self.shape.input_shape)
        return self._peak[key]

    def cost(self, arch: Arch | str) -> Cost:
        """The static `Cost` (no latency); builds the network the first time if its peak is not known yet."""
        params, flops = self.additive(arch)
        return Cost(params=params, flops=flops, peak_memory_bytes=self.peak_memory_bytes(arch))

    def fits(self, arch: Arch | str, budgets: Budgets | None) -> bool:
        """True when the arch meets every static budget set (params, FLOPs, peak memory).

        The additive budgets are checked first; peak memory is measured only when they pass
        and the budgets limit it. Latency budgets are not static and not checked here.
        """
        if budgets is None:
            return True
        params, flops = self.additive(arch)
        if budgets.max_params is not None and params > budgets.max_params:
            return False
        if budgets.max_flops is not None and flops > budgets.max_flops:
            return False
        limit = budgets.max_peak_memory_bytes
        return limit is None or self.peak_memory_bytes(arch) <= limit
