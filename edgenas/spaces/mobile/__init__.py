"""The mobile space: MobileNetV3-style inverted residuals, searched as in Once-for-All and ProxylessNAS.

Once-for-All's MobileNetV3 space (Cai et al., ICLR 2020; blocks of Howard et al., ICCV 2019):
5 stages; per block a depthwise kernel in {3, 5, 7} and an expansion in {3, 4, 6}, per stage
a depth in {2, 3, 4}; widths, strides, activations and SE fixed per stage (`network.py`,
a 224-pixel and a 28/32-pixel macro). About 2.2e19 archs.

Supernet description (ProxylessNAS / FBNet style: Cai et al., ICLR 2019; Wu et al., CVPR 2019):
20 choice points, the 4 block positions of each stage; 10 candidate ops each, `skip` (the
identity: the block is not built) and the 9 (kernel, expansion) blocks. Blocks 1 and 2 of a
stage are always built (`op_mask` bans `skip` there); a stage's depth is 2 + its non-skip
optional blocks, so a skip at block 3 under a built block 4 decodes as depth 3 (the two
positions have the same shape and cost).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch, ChoicePoint, NetShape, SearchSpace
from edgenas.spaces.mobile.arch import (
    BLOCK_OPS,
    DEPTHS,
    EXAMPLE,
    EXPANSIONS,
    KERNELS,
    MAX_DEPTH,
    MIN_DEPTH,
    OPS,
    SKIP,
    STAGES,
    MobileArch,
    block_name,
)
from edgenas.spaces.mobile.network import MobileNetwork

__all__ = ["EXAMPLE", "OPS", "MobileArch", "MobileNetwork", "MobileSpace"]

SKIP_INDEX = OPS.index(SKIP)
BLOCKS: tuple[tuple[int, int], ...] = tuple((k, e) for k in KERNELS for e in EXPANSIONS)  # BLOCK_OPS order


class MobileSpace(SearchSpace):
    """Five stages of 2-4 inverted residuals, each with its own kernel and expansion."""

    name = "mobile"
    choice_ops = OPS
    none_op = SKIP  # the identity of an optional block: never computed as a block
    keep_per_node = None  # every point keeps its own op
    teacher_arch = "|".join("-".join(["k5e6"] * MAX_DEPTH) for _ in range(STAGES))  # the deepest k5e6 network

    def parse(self, text: str) -> MobileArch:
        return MobileArch.parse(text)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> MobileArch:
        """Per stage a depth uniform in {2, 3, 4}, then every block's (kernel, expansion) uniform (as OFA samples)."""
        stages = []
        for _ in range(STAGES):
            depth = DEPTHS[int(rng.integers(len(DEPTHS)))]
            stages.append(tuple(BLOCKS[int(rng.integers(len(BLOCKS)))] for _ in range(depth)))
        return MobileArch(tuple(stages))

    def mutate(self, arch: Arch, rng: np.random.Generator) -> MobileArch:
        """Change one block's kernel, one block's expansion, or one stage's depth (a new block is drawn uniformly)."""
        a = _mobile(arch)
        stages = [list(s) for s in a.stages]
        s = int(rng.integers(STAGES))
        what = int(rng.integers(3))
        if what == 2:  # depth
            depth = len(stages[s])
            others = [d for d in DEPTHS if d != depth]
            new = others[int(rng.integers(len(others)))]
            if new < depth:
                stages[s] = stages[s][:new]
            else:
                stages[s] += [BLOCKS[int(rng.integers(len(BLOCKS)))] for _ in range(new - depth)]
        else:
            b = int(rng.integers(len(stages[s])))
            k, e = stages[s][b]
            if what == 0:
                choices = [x for x in KERNELS if x != k]
                stages[s][b] = (choices[int(rng.integers(len(choices)))], e)
            else:
                choices = [x for x in EXPANSIONS if x != e]
                stages[s][b] = (k, choices[int(rng.integers(len(choices)))])
        return MobileArch(tuple(tuple(st) for st in stages))

    def size(self) -> int:
        """(Σ_d 9^d over depths 2, 3, 4)^5 ≈ 2.2e19: too many to enumerate."""
        return sum(len(BLOCKS) ** d for d in DEPTHS) ** STAGES

    def enumerate(self) -> Iterator[MobileArch]:
        """Every arch, lazily (about 2.2e19: callers sample instead, see `size`)."""
        per_stage = [blocks for d in DEPTHS for blocks in itertools.product(BLOCKS, repeat=d)]
        for stages in itertools.product(per_stage, repeat=STAGES):
            yield MobileArch(stages)

    # -- networks ---------------------------------------------------------------------------
    def build(self, arch: Arch, shape: NetShape) -> MobileNetwork:
        return MobileNetwork(_mobile(arch), shape)

    def cheapest(self) -> MobileArch:
        """Depth 2 everywhere, every block k3e3: the fewest and narrowest blocks with the smallest kernels."""
        return MobileArch(tuple(((KERNELS[0], EXPANSIONS[0]),) * MIN_DEPTH for _ in range(STAGES)))

    def supernet(self, shape: NetShape, k: int = 1, **options) -> torch.nn.Module:
        from edgenas.spaces.mobile.supernet import MobileSuperNet

        return MobileSuperNet(shape, k=k)

    def subnet(self, supernet: torch.nn.Module, arch: Arch) -> MobileNetwork:
        from edgenas.spaces.mobile.supernet import extract_subnet

        return extract_subnet(supernet, _mobile(arch))

    # -- supernet description ---------------------------------------------------------------
    def choice_points(self) -> tuple[ChoicePoint, ...]:
        """`stage s block b` for the 4 positions of each stage (each its own node)."""
        return tuple(
            ChoicePoint(f"stage {s} block {b}", f"stage {s} block {b}")
            for s in range(1, STAGES + 1)
            for b in range(1, MAX_DEPTH + 1)
        )

    def op_mask(self) -> np.ndarray:
        """`skip` only at the optional blocks (3 and 4) of a stage."""
        mask = np.ones((STAGES * MAX_DEPTH, len(OPS)), dtype=bool)
        for s in range(STAGES):
            mask[s * MAX_DEPTH : s * MAX_DEPTH + MIN_DEPTH, SKIP_INDEX] = False
        return mask

    def encode(self, arch: Arch) -> np.ndarray:
        index = np.full(STAGES * MAX_DEPTH, SKIP_INDEX, dtype=int)
        for s, stage in enumerate(_mobile(arch).stages):
            for b, block in enumerate(stage):
                index[s * MAX_DEPTH + b] = OPS.index(block_name(block))
        return index

    def decode(self, index: np.ndarray) -> MobileArch:
        """The arch of one op per point; skips at optional blocks drop them (a stage keeps its built blocks)."""
        index = np.asarray(index, dtype=int)
        if index.shape != (STAGES * MAX_DEPTH,):
            raise ArchError(f"a mobile decision has {STAGES * MAX_DEPTH} points, got shape {index.shape}")
        stages = []
        for s in range(STAGES):
            row = index[s * MAX_DEPTH : (s + 1) * MAX_DEPTH]
            if (row[:MIN_DEPTH] == SKIP_INDEX).any():
                raise ArchError(f"stage {s + 1}: blocks 1 and 2 are always built; only blocks 3 and 4 may be skipped")
            stages.append(tuple(BLOCKS[BLOCK_OPS.index(OPS[int(o)])] for o in row if int(o) != SKIP_INDEX))
        return MobileArch(tuple(stages))

    def live_points(self, arch: Arch) -> np.ndarray:
        """The positions holding a built block (a skipped block builds nothing)."""
        return self.encode(arch) != SKIP_INDEX

    def mask_live_points(self, alive: np.ndarray) -> np.ndarray:
        """Every point with a live block op is built (blocks lie on the one path)."""
        on = np.asarray(alive, dtype=bool).copy()
        on[:, SKIP_INDEX] = False
        return on.any(axis=1)

    def position_costs(self, kind: str, shape: NetShape) -> tuple[float, np.ndarray]:
        from edgenas.spaces.mobile.cost_terms import position_costs

        return position_costs(kind, shape)


def _mobile(arch: Arch) -> MobileArch:
    return arch if isinstance(arch, MobileArch) else MobileArch.parse(str(arch))
