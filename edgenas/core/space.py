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
    (exact additive cost of every (point, op)) and `live_points`. The methods with a body
    here (`none_index`, `node_points`, `mask_live_points`, `mask_admits_arch`,
    `supernet_gaps`, `cost_terms`, `onehot`, `top_weighted`) are derived from those; a space
    overrides them only where its graph needs it.
    """

    name: str
    # -- supernet description (class attributes) --
    choice_ops: tuple[str, ...] = ()  # candidate ops, the columns of the decision weights
    none_op: str | None = "none"  # the op that means "no edge" (never computed), if the space has one
    keep_per_node: int | None = None  # None: every point keeps its own op (NB201); k: top-k inputs per node
    supernet_options: frozenset[str] = frozenset()
    """Options of `supernet(...)` beyond `k` that this space implements (none by default, see `supernet`)."""
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
    def supernet(self, shape: NetShape, k: int = 1, **options: Any) -> nn.Module:
        """The weight-sharing supernet: `forward(x, op_weights, edge_weights=None)` with `op_weights`
        a (points, ops) tensor such as `onehot(arch)` and `edge_weights` an optional (points,)
        scale per point; `forward_features` returns (logits, block outputs); an `alive` bool
        buffer (points, ops) switches ops off for good (DNAD). `k` > 1: partial channels
        (PC-DARTS), only 1/k of each point's channels go through the mixed op.

        `options`, only those named in `supernet_options` (searches ask through `build_supernet`):
        `bottleneck` b > 1: a 1×1 conv takes each mixed op's input to C/b channels, the ops run
        there and a 1×1 conv per point takes their weighted sum back to C (DCA-NAS's channel
        bottleneck); `share_sources`: one module per (source node, op), computed once and mixed
        into every point leaving that node with the point's own weights (DCA-NAS Eq. 5);
        `alpha_cells="per-type"`: only the first cell of each cell type mixes with `op_weights`,
        the others run the one-hot arch passed as `forward(..., fixed=...)` (DCA-NAS Sec. 3.3)."""

    def build_supernet(
        self,
        shape: NetShape,
        k: int = 1,
        *,
        bottleneck: int = 1,
        share_sources: bool = False,
        alpha_cells: str = "all",
    ) -> nn.Module:
        """`supernet` with the options a search asks for; one this space does not implement is a `ConfigError`.

        Options at their defaults are not passed, so a space without `supernet_options` serves every
        search that does not ask for them.
        """
        from edgenas.core.errors import ConfigError

        asked: dict[str, Any] = {}
        if bottleneck != 1:
            asked["bottleneck"] = bottleneck
        if share_sources:
            asked["share_sources"] = True
        if alpha_cells != "all":
            asked["alpha_cells"] = alpha_cells
        missing = sorted(set(asked) - self.supernet_options)
        if missing:
            raise ConfigError(
                f"the {self.name} space's supernet has no {' or '.join(missing)} option "
                f"(SearchSpace.supernet_options); leave it off for this space"
            )
        return self.supernet(shape, k, **asked)

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

    def cost_terms(self, budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, Any]:
        """Expected-cost terms for every budget that is set, differentiable in the supernet's decision
        weights (`terms[name].expected(weights)`); latency needs the device's lookup `table`.

        Default: `edgenas.cost.terms.terms_for_budgets` (params/FLOPs from `position_costs`, peak
        memory fitted on sampled archs, latency from the table's per-position terms).
        """
        from edgenas.cost.terms import terms_for_budgets

        return terms_for_budgets(self, budgets, shape, table, seed)

    def op_mask(self) -> np.ndarray:
        """(points, ops) bool: the ops each point may take. Default: every op at every point.

        A space whose points differ (mobile: a stage's first two blocks cannot be skipped) says so
        here; DCA-NAS gives the others no probability, the paper derivation never picks them, and
        a point that may not take `none_op` must keep a computing op (`mask_admits_arch`).
        """
        return np.ones((len(self.choice_points()), len(self.choice_ops)), dtype=bool)

    @property
    def none_index(self) -> int | None:
        """Column of `none_op` in the decision weights, or None if the space has no such op."""
        return self.choice_ops.index(self.none_op) if self.none_op in self.choice_ops else None

    def node_points(self) -> dict[str, list[int]]:
        """The choice points (row indices) feeding each node, nodes in order of first appearance.

        Edge normalisation (a softmax of β over each node's points) and the top-k derivation
        (`keep_per_node`) work per node.
        """
        nodes: dict[str, list[int]] = {}
        for p, point in enumerate(self.choice_points()):
            nodes.setdefault(point.node, []).append(p)
        return nodes

    def mask_live_points(self, alive: np.ndarray) -> np.ndarray:
        """(points,) bool: the points whose ops are built when the supernet runs only the `alive`
        (points, ops) ops (DNAD's shrinking multi-op cell), i.e. that carry a live op other than
        `none_op` and lie on a path the space builds.

        Default: with `keep_per_node` None, the live points of the arch that puts a computing op
        on every point with one (a point's liveness then depends only on none-or-not); otherwise
        every point with a live computing op.
        """
        on = np.asarray(alive, dtype=bool).copy()
        if self.none_index is not None:
            on[:, self.none_index] = False
        carries = on.any(axis=1)
        if self.keep_per_node is not None:
            return carries
        index = np.where(carries, on.argmax(axis=1), self.none_index if self.none_index is not None else 0)
        return self.live_points(self.decode(index)) & carries

    def mask_admits_arch(self, alive: np.ndarray) -> bool:
        """True while the supernet restricted to the `alive` (points, ops) ops still holds a usable arch
        (DNAD never deletes an op that breaks this): with `keep_per_node` None some point is live
        (`mask_live_points`), else every node has `keep_per_node` points with a live computing op."""
        if self.none_index is not None and not self.op_mask()[:, self.none_index].all():
            on = np.asarray(alive, dtype=bool) & self.op_mask()
            on[:, self.none_index] = False
            if not on[~self.op_mask()[:, self.none_index]].any(axis=1).all():
                return False  # a point that may not take `none_op` has lost every computing op
        if self.keep_per_node is None:
            return bool(self.mask_live_points(alive).any())
        on = np.asarray(alive, dtype=bool).copy()
        if self.none_index is not None:
            on[:, self.none_index] = False
        carries = on.any(axis=1)
        return all(int(carries[rows].sum()) >= self.keep_per_node for rows in self.node_points().values())

    def supernet_gaps(self) -> list[str]:
        """What the supernet description lacks (empty: DCA-NAS and DNAD can search this space)."""
        gaps: list[str] = []
        if not self.choice_ops:
            gaps.append("choice_ops")
        if self.keep_per_node is not None and (self.keep_per_node < 1 or self.none_index is None):
            gaps.append("keep_per_node needs none_op among choice_ops")
        try:
            points = self.choice_points()
            if not points:
                gaps.append("choice_points")
            arch = self.sample(np.random.default_rng(0))
            if self.decode(self.encode(arch)) != arch or len(self.live_points(arch)) != len(points):
                gaps.append("an encode/decode/live_points round trip")
        except NotImplementedError as e:
            gaps.append(str(e) or "choice_points/encode/decode/live_points")
        return gaps

    def onehot(self, arch: Arch) -> torch.Tensor:
        """The supernet's decision weights that select exactly `arch`: (points, ops), one 1 per point."""
        index = self.encode(arch)
        weights = torch.zeros(len(index), len(self.choice_ops))
        weights[torch.arange(len(index)), torch.as_tensor(index, dtype=torch.long)] = 1.0
        return weights

    def top_weighted(self, weights: np.ndarray) -> Arch:
        """The paper derivation of DARTS-style searches from (points, ops) weights.

        Only the ops `op_mask` allows at a point count. `keep_per_node` None: the top op of
        every point (`none` included). Otherwise every node keeps the `keep_per_node` points
        whose best non-`none` weight is highest, each with that op; the other points get `none`.
        """
        w = np.where(self.op_mask(), np.asarray(weights, dtype=float), -np.inf)
        if self.keep_per_node is None:
            return self.decode(w.argmax(axis=1))
        none = self.none_index
        real = w.copy()
        if none is not None:
            real[:, none] = -np.inf
        index = np.full(len(w), none if none is not None else 0, dtype=int)
        for rows in self.node_points().values():
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
