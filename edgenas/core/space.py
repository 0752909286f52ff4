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


class SearchSpace(ABC):
    """A family of architectures: sample, mutate, enumerate, parse, build."""

    name: str

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
    def supernet(self, shape: NetShape) -> nn.Module:
        """The weight-sharing supernet at full channels: `forward(x, weights)` with `weights` a
        tensor of decision weights such as `onehot(arch)`."""

    @abstractmethod
    def cost_terms(self, budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, Any]:
        """Expected-cost terms for every budget that is set, differentiable in the supernet's decision
        weights (`terms[name].expected(weights)`); latency needs the device's lookup `table`."""

    @abstractmethod
    def onehot(self, arch: Arch) -> torch.Tensor:
        """The supernet's decision weights that select exactly `arch`."""

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
