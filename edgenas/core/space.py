"""What every search space provides: the `Arch` and `SearchSpace` protocols.

Search, screening and training code talk to spaces only through these, so a second
space (the DARTS cell space, a mobile space) plugs in as a folder under `spaces/`.
`tests/test_spaces_contract.py` checks every registered space against this contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from edgenas.core.device import Budgets
    from edgenas.data import DataInfo


class Arch(ABC):
    """An immutable architecture with a canonical string form (`str(arch)`)."""

    space_name: str

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> Arch:
        """Parse the canonical string; raise `ArchError` naming the bad token."""

    @abstractmethod
    def __str__(self) -> str:
        """The canonical string, such that `parse(str(a)) == a`."""


@dataclass(frozen=True)
class NetShape:
    """How to instantiate an arch: macro width/depth and the task's input/output."""

    width: int = 16
    cells: int = 5
    in_channels: int = 3
    resolution: int = 32
    num_classes: int = 10

    @classmethod
    def for_data(cls, info: DataInfo, width: int = 16, cells: int = 5) -> NetShape:
        """The shape for a dataset: its channels, resolution and class count."""
        return cls(
            width=width,
            cells=cells,
            in_channels=info.channels,
            resolution=info.resolution,
            num_classes=info.num_classes,
        )

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        return (self.in_channels, self.resolution, self.resolution)


@dataclass(frozen=True)
class ChoicePoint:
    """One row of a supernet's decision weights: a place where one candidate op is chosen.

    `node` names the node the point feeds. Derivation and edge normalisation group the
    points by node: NB201 keeps every point (one op per edge), DARTS keeps the top
    `SearchSpace.keep_per_node` = 2 inputs of every node.
    """

    name: str  # e.g. "1<-0" (NB201), "normal 2<-0" (DARTS)
    node: str  # e.g. "1" (NB201), "normal 2" (DARTS)


class SearchSpace(ABC):
    """A family of architectures: sample, mutate, enumerate, parse, build.

    Differentiable searches (DCA-NAS, DNAD), the expected-cost terms, the derivation and the
    latency tables see a space only through its *supernet description*: `choice_ops` (the
    columns of the decision weights), `choice_points()` (the rows), `keep_per_node`,
    `encode`/`decode` (an arch as one op index per point), `supernet`, `position_costs`
    (exact additive cost of every (point, op)) and `live_points`.
    """

    name: str
    # -- supernet description (class attributes) --
    choice_ops: tuple[str, ...] = ()  # candidate ops, the columns of the decision weights
    none_op: str | None = "none"  # the op that means "no edge" (never computed), if the space has one
    keep_per_node: int | None = None  # None: every point keeps its own op (NB201); k: top-k inputs per node
    teacher_arch: str = ""  # the default teacher of `edgenas teacher` and the pipeline (a strong arch of the space)

    @abstractmethod
    def parse(self, text: str) -> Arch:
        """Parse a canonical arch string of this space."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """One architecture drawn uniformly from the space."""

    @abstractmethod
    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A neighbour of `arch` (differs in one choice)."""

    @abstractmethod
    def size(self) -> int | None:
        """Number of architectures, or None if not finite/enumerable."""

    @abstractmethod
    def enumerate(self) -> Iterator[Arch]:
        """Every architecture of a finite space, in a fixed order."""

    @abstractmethod
    def build(self, arch: Arch, shape: NetShape) -> nn.Module:
        """A freshly initialised network for `arch`."""

    @abstractmethod
    def cheapest(self) -> Arch:
        """The arch whose network has the fewest params, FLOPs and peak activation bytes at any shape.

        Budgets below its cost cannot be met by any arch of the space, so they are refused
        before a run starts (`edgenas.cost.floor`).
        """

    @abstractmethod
    def supernet(self, shape: NetShape, k: int = 1) -> nn.Module:
        """The weight-sharing supernet: `forward(x, op_weights, edge_weights=None)` with `op_weights`
        a (points, ops) tensor such as `onehot(arch)` and `edge_weights` an optional (points,)
        scale per point; `forward_features` returns (logits, block outputs); an `alive` bool
        buffer (points, ops) switches ops off for good (DNAD). `k` > 1: partial channels
        (PC-DARTS), only 1/k of each point's channels go through the mixed op."""

    @abstractmethod
    def choice_points(self) -> tuple[ChoicePoint, ...]:
        """The rows of the decision weights, in a fixed order."""

    @abstractmethod
    def encode(self, arch: Arch) -> np.ndarray:
        """One op index (into `choice_ops`) per choice point; `none_op` where the arch does not use the point."""

    @abstractmethod
    def decode(self, index: np.ndarray) -> Arch:
        """The arch with op `index[p]` at every point (inverse of `encode`); `ArchError` if not an arch of the space."""

    @abstractmethod
    def live_points(self, arch: Arch) -> np.ndarray:
        """(points,) bool: the points whose op is built in `build(arch)` (a point on a dead path is not)."""

    @abstractmethod
    def position_costs(self, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
        """Exact additive cost of `kind` ("params" or "flops") at the deployed `shape`:
        (fixed, (points, ops)) with cost(arch) = fixed + Σ over live points of weights[p, op_p]."""

    @abstractmethod
    def cost_terms(self, budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, Any]:
        """Expected-cost terms for every budget that is set, differentiable in the supernet's decision
        weights (`terms[name].expected(weights)`); latency needs the device's lookup `table`."""

    def onehot(self, arch: Arch) -> torch.Tensor:
        """The supernet's decision weights that select exactly `arch`: (points, ops), one 1 per point."""
        index = self.encode(arch)
        weights = torch.zeros(len(index), len(self.choice_ops))
        weights[torch.arange(len(index)), torch.as_tensor(index, dtype=torch.long)] = 1.0
        return weights

    def top_weighted(self, weights: np.ndarray) -> Arch:
        """The paper derivation of DARTS-style searches from (points, ops) weights.

        `keep_per_node` None: the top op of every point (`none` included). Otherwise every
        node keeps the `keep_per_node` points whose best non-`none` weight is highest, each
        with that op; the other points of the node get `none`.
        """
        w = np.asarray(weights, dtype=float)
        if self.keep_per_node is None:
            return self.decode(w.argmax(axis=1))
        none = self.choice_ops.index(self.none_op) if self.none_op in self.choice_ops else None
        real = w.copy()
        if none is not None:
            real[:, none] = -np.inf
        index = np.full(len(w), none if none is not None else 0, dtype=int)
        nodes: dict[str, list[int]] = {}
        for p, point in enumerate(self.choice_points()):
            nodes.setdefault(point.node, []).append(p)
        for rows in nodes.values():
            best = sorted(rows, key=lambda p: (-real[p].max(), p))[: self.keep_per_node]
            for p in best:
                index[p] = int(real[p].argmax())
        return self.decode(index)

    @abstractmethod
    def subnet(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        """The discrete network of `arch` carrying the supernet's weights for it (Once-for-All's
        `get_active_subnet`): in eval mode it computes what `supernet(x, onehot(arch))` does."""

    def sample_distinct(
        self,
        n: int,
        rng: np.random.Generator,
        accept: Callable[[Arch], bool] | None = None,
    ) -> list[Arch]:
        """Up to `n` distinct archs drawn uniformly (those `accept` allows), in draw order.

        Fewer come back when the space (or its accepted part) runs out: drawing stops after
        `50 n + 1000` draws.
        """
        seen: dict[str, Arch] = {}
        for _ in range(50 * n + 1000):
            if len(seen) == n:
                break
            arch = self.sample(rng)
            if str(arch) not in seen and (accept is None or accept(arch)):
                seen[str(arch)] = arch
        return list(seen.values())
