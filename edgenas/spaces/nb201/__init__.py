"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020).

A cell is a DAG of 4 nodes; each of its 6 edges (j <- i, i < j) carries one of 5 ops, so
the space holds 5**6 = 15,625 cells. The network ("TinyNetwork") is a stem, three stages
of N identical cells at widths C, 2C, 4C separated by residual reduction blocks, then
BN-ReLU, global pooling and a linear classifier. Canonical string:
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node 1, node 2, node 3; `~i` = input node).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from edgenas.core.space import Arch, ChoicePoint, NetShape, SearchSpace
from edgenas.spaces.nb201.arch import EDGES, EXAMPLE, NUM_NODES, OPS, TEACHER_ARCH, NB201Arch
from edgenas.spaces.nb201.network import NB201Cell, NB201Network, ResNetBasicBlock, build_tiny_layout, make_op
from edgenas.spaces.ops import ReLUConvBN

__all__ = [
    "EDGES",
    "EXAMPLE",
    "NUM_NODES",
    "OPS",
    "NB201Arch",
    "NB201Cell",
    "NB201Network",
    "NB201Space",
    "ReLUConvBN",
    "ResNetBasicBlock",
    "build_tiny_layout",
    "make_op",
]


class NB201Space(SearchSpace):
    """The 15,625-cell NAS-Bench-201 space."""

    name = "nb201"
    ops = OPS
    edges = EDGES
    choice_ops = OPS
    none_op = "none"
    keep_per_node = None  # one op per edge, every edge kept
    supernet_options = frozenset({"bottleneck", "share_sources", "alpha_cells"})
    teacher_arch = TEACHER_ARCH

    def parse(self, text: str) -> NB201Arch:
        return NB201Arch.parse(text)

    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return NB201Arch(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))

    def mutate(self, arch: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Change the op of one random edge to a different random op."""
        ops = list(arch.ops)
        edge = int(rng.integers(len(EDGES)))
        choices = [op for op in OPS if op != ops[edge]]
        ops[edge] = choices[int(rng.integers(len(choices)))]
        return NB201Arch(tuple(ops))

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def enumerate(self) -> Iterator[NB201Arch]:
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield NB201Arch(ops)

    def build(self, arch: Arch, shape: NetShape) -> NB201Network:
        return NB201Network(_nb201(arch), shape)

    def cheapest(self) -> NB201Arch:
        """Every edge `none`: the other ops only add params and FLOPs; no arch measured has a lower peak."""
        return NB201Arch(("none",) * len(EDGES))

    def supernet(
        self, shape: NetShape, k: int = 1, bottleneck: int = 1, share_sources: bool = False, alpha_cells: str = "all"
    ) -> torch.nn.Module:
        from edgenas.spaces.nb201.supernet import NB201SuperNet

        return NB201SuperNet(shape, k=k, bottleneck=bottleneck, share_sources=share_sources, alpha_cells=alpha_cells)

    def choice_points(self) -> tuple[ChoicePoint, ...]:
        """The 6 edges `to<-from`, in `EDGES` order (the cell is shared by every stage)."""
        return tuple(ChoicePoint(f"{to}<-{frm}", str(to)) for to, frm in EDGES)

    def encode(self, arch: Arch) -> np.ndarray:
        return np.array([OPS.index(op) for op in _nb201(arch).ops], dtype=int)

    def decode(self, index: np.ndarray) -> NB201Arch:
        return NB201Arch(tuple(OPS[int(i)] for i in index))

    def live_points(self, arch: Arch) -> np.ndarray:
        live = np.zeros(len(EDGES), dtype=bool)
        live[_nb201(arch).live_edges()] = True
        return live

    def position_costs(self, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
        from edgenas.spaces.nb201.cost_terms import position_costs

        return position_costs(kind, shape)

    def subnet(self, supernet: torch.nn.Module, arch: Arch) -> NB201Network:
        from edgenas.spaces.nb201.supernet import extract_subnet

        return extract_subnet(supernet, _nb201(arch))


def _nb201(arch: Arch) -> NB201Arch:
    return arch if isinstance(arch, NB201Arch) else NB201Arch.parse(str(arch))
