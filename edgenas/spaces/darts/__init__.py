"""The DARTS cell space (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019).

A genotype is a normal and a reduction cell; each of their 4 intermediate nodes sums two
ops on two different earlier states (the cell's two inputs or an earlier node), each op one
of 7 (DARTS' 8 primitives less `none`): skip_connect, max/avg_pool_3x3, sep_conv_3x3/5x5,
dil_conv_3x3/5x5. The network (`DartsNetwork`) is DARTS' NetworkCIFAR: N cells with
reductions at N//3 and 2N//3, width C (`NetShape.cells` counts *all* cells here). The
canonical string is DARTS' `Genotype(...)`, so published genotypes paste in.

Supernet description: 28 choice points, the 14 edges node i <- input j of the normal cells,
then of the reduction cells (every cell of a type shares its row, as in DARTS), 8 candidate
ops each (`none` included); a genotype keeps the top `keep_per_node` = 2 inputs per node.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from math import comb
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch, ChoicePoint, NetShape, SearchSpace
from edgenas.spaces.darts.arch import (
    CELL_TYPES,
    EDGES,
    EXAMPLE,
    INPUTS_PER_NODE,
    NODES,
    OPS,
    REAL_OPS,
    DartsArch,
    parse_genotype,
)
from edgenas.spaces.darts.network import DartsNetwork

if TYPE_CHECKING:
    from edgenas.core.device import Budgets

__all__ = [
    "CELL_TYPES",
    "DARTS_V2",
    "EDGES",
    "EXAMPLE",
    "NODES",
    "OPS",
    "REAL_OPS",
    "DartsArch",
    "DartsNetwork",
    "DartsSpace",
    "parse_genotype",
]

# DARTS-V2 (second-order DARTS' CIFAR-10 cell, the paper's Figure 4/5), as published in `genotypes.py`.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
NONE = OPS.index("none")


class DartsSpace(SearchSpace):
    """The DARTS cell space: about 1.1e18 genotypes (normal × reduction cell)."""

    name = "darts"
    choice_ops = OPS
    none_op = "none"
    keep_per_node = INPUTS_PER_NODE
    supernet_options = frozenset({"bottleneck", "share_sources", "alpha_cells"})  # DCA-NAS (`supernet`)
    teacher_arch = DARTS_V2  # the default teacher of `edgenas teacher` and the pipeline: a published cell

    def parse(self, text: str) -> DartsArch:
        return parse_genotype(text)

    # -- sampling ---------------------------------------------------------------------------
    def _sample_cell(self, rng: np.random.Generator) -> tuple[tuple[str, int], ...]:
        pairs: list[tuple[str, int]] = []
        for node in NODES:
            inputs = rng.choice(node, size=INPUTS_PER_NODE, replace=False)
            pairs.extend((REAL_OPS[int(rng.integers(len(REAL_OPS)))], int(j)) for j in inputs)
        return tuple(pairs)

    def sample(self, rng: np.random.Generator) -> DartsArch:
        """Uniform: per node two distinct inputs, each with a uniformly drawn op (never `none`)."""
        return DartsArch(self._sample_cell(rng), self._sample_cell(rng))

    def mutate(self, arch: Arch, rng: np.random.Generator) -> DartsArch:
        """Change one op, or one input of a node (to an input the node does not read yet)."""
        a = _darts(arch)
        kind = CELL_TYPES[int(rng.integers(len(CELL_TYPES)))]
        pairs = list(a.cell(kind))
        m = int(rng.integers(len(pairs)))
        op, j = pairs[m]
        node = NODES[m // INPUTS_PER_NODE]
        free = [i for i in range(node) if i not in (p[1] for p in pairs[m - m % 2 : m - m % 2 + 2])]
        if free and rng.random() < 0.5:
            pairs[m] = (op, free[int(rng.integers(len(free)))])
        else:
            others = [o for o in REAL_OPS if o != op]
            pairs[m] = (others[int(rng.integers(len(others)))], j)
        cells = {k: a.cell(k) for k in CELL_TYPES}
        cells[kind] = tuple(pairs)
        return DartsArch(cells["normal"], cells["reduce"])

    def size(self) -> int:
        """(C(2,2)·C(3,2)·C(4,2)·C(5,2) input pairs × 7² ops per node)² ≈ 1.1e18: too many to enumerate."""
        per_cell = 1
        for node in NODES:
            per_cell *= comb(node, INPUTS_PER_NODE) * len(REAL_OPS) ** INPUTS_PER_NODE
        return per_cell ** len(CELL_TYPES)

    def enumerate(self) -> Iterator[DartsArch]:
        """Every genotype, lazily (there are about 1.1e18: callers sample instead, see `size`)."""
        choices = [_node_choices(n) for n in NODES]
        for normal in itertools.product(*choices):
            for reduce in itertools.product(*choices):
                yield DartsArch(sum(normal, ()), sum(reduce, ()))

    # -- networks ---------------------------------------------------------------------------
    def build(self, arch: Arch, shape: NetShape) -> DartsNetwork:
        return DartsNetwork(_darts(arch), shape)

    def cheapest(self) -> DartsArch:
        """Parameter-free ops that allocate nothing where they can: identity (skip) on stride-1 edges,
        max-pooling on the reducing ones (a stride-2 skip is a factorized reduction, with weights)."""
        normal = tuple(pair for _ in NODES for pair in (("skip_connect", 0), ("skip_connect", 1)))
        reduce = (
            ("max_pool_3x3", 0),
            ("max_pool_3x3", 1),
            ("max_pool_3x3", 0),
            ("skip_connect", 2),
            ("skip_connect", 2),
            ("skip_connect", 3),
            ("skip_connect", 3),
            ("skip_connect", 4),
        )
        return DartsArch(normal, reduce)

    def supernet(
        self, shape: NetShape, k: int = 1, bottleneck: int = 1, share_sources: bool = False, alpha_cells: str = "all"
    ) -> torch.nn.Module:
        from edgenas.spaces.darts.supernet import DartsSuperNet

        return DartsSuperNet(shape, k=k, bottleneck=bottleneck, share_sources=share_sources, alpha_cells=alpha_cells)

    def subnet(self, supernet: torch.nn.Module, arch: Arch) -> DartsNetwork:
        from edgenas.spaces.darts.supernet import extract_subnet

        return extract_subnet(supernet, _darts(arch))

    # -- supernet description ---------------------------------------------------------------
    def choice_points(self) -> tuple[ChoicePoint, ...]:
        """The 14 edges `node<-input` of the normal cells, then those of the reduction cells."""
        return tuple(ChoicePoint(f"{kind} {i}<-{j}", f"{kind} {i}") for kind in CELL_TYPES for i, j in EDGES)

    def encode(self, arch: Arch) -> np.ndarray:
        a = _darts(arch)
        index = np.full(len(CELL_TYPES) * len(EDGES), NONE, dtype=int)
        for t, kind in enumerate(CELL_TYPES):
            for m, (op, j) in enumerate(a.cell(kind)):
                index[t * len(EDGES) + EDGES.index((NODES[m // INPUTS_PER_NODE], j))] = OPS.index(op)
        return index

    def decode(self, index: np.ndarray) -> DartsArch:
        index = np.asarray(index, dtype=int)
        if index.shape != (len(CELL_TYPES) * len(EDGES),):
            raise ArchError(f"a DARTS decision has {len(CELL_TYPES) * len(EDGES)} points, got shape {index.shape}")
        cells = []
        for t, kind in enumerate(CELL_TYPES):
            pairs: list[tuple[str, int]] = []
            for node in NODES:
                chosen = [
                    (OPS[int(index[t * len(EDGES) + e])], j)
                    for e, (i, j) in enumerate(EDGES)
                    if i == node and int(index[t * len(EDGES) + e]) != NONE
                ]
                if len(chosen) != INPUTS_PER_NODE:
                    raise ArchError(
                        f"{kind} node {node} has {len(chosen)} non-none inputs; a DARTS node takes {INPUTS_PER_NODE}"
                    )
                pairs.extend(chosen)
            cells.append(tuple(pairs))
        return DartsArch(cells[0], cells[1])

    def live_points(self, arch: Arch) -> np.ndarray:
        """Every point a genotype uses is built: all 4 nodes feed the cell's output. (A network of 1 or
        2 cells has no normal cell; its normal points then cost 0 in `position_costs`.)"""
        return self.encode(arch) != NONE

    def position_costs(self, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
        from edgenas.spaces.darts.cost_terms import position_costs

        return position_costs(kind, shape)

    def cost_terms(self, budgets: Budgets, shape: NetShape, table: Any = None, seed: int = 0) -> dict[str, Any]:
        from edgenas.spaces.darts.cost_terms import terms_for_budgets

        return terms_for_budgets(budgets, shape, table, seed)


def _node_choices(node: int) -> list[tuple[tuple[str, int], ...]]:
    """Every (pair, pair) a node can take: two inputs j1 < j2 and an op on each."""
    return [
        ((o1, j1), (o2, j2))
        for j1, j2 in itertools.combinations(range(node), INPUTS_PER_NODE)
        for o1 in REAL_OPS
        for o2 in REAL_OPS
    ]


def _darts(arch: Arch) -> DartsArch:
    return arch if isinstance(arch, DartsArch) else parse_genotype(str(arch))
