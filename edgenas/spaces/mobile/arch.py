"""A mobile-space architecture as an `Arch`: per stage 2-4 inverted-residual blocks, each a kernel and an expansion.

The space is Once-for-All's MobileNetV3 space (Cai et al., "Once-for-All", ICLR 2020; Howard
et al., "Searching for MobileNetV3", ICCV 2019): 5 stages, per block a depthwise kernel
k ∈ {3, 5, 7} and an expansion ratio e ∈ {3, 4, 6}, per stage a depth d ∈ {2, 3, 4}. The
canonical string writes one token `k<k>e<e>` per block, blocks joined by `-` and stages by
`|` (the depth is the number of tokens), in the spirit of timm's `ir_r2_k3_s2_e6_c32`:
`k3e4-k5e6|k3e3-k3e3-k7e4|k5e6-k5e6|k3e4-k3e4-k3e4-k3e4|k7e6-k5e3`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
STAGES = 5
MAX_DEPTH = max(DEPTHS)
MIN_DEPTH = min(DEPTHS)
SKIP = "skip"  # the supernet's identity choice of an optional block (blocks 3 and 4 of a stage)
BLOCK_OPS: tuple[str, ...] = tuple(f"k{k}e{e}" for k in KERNELS for e in EXPANSIONS)
OPS: tuple[str, ...] = (SKIP, *BLOCK_OPS)  # the columns of the supernet's decision weights
STAGE_SEP, BLOCK_SEP = "|", "-"
_TOKEN = re.compile(r"k(\d+)e(\d+)")

Block = tuple[int, int]  # (kernel, expansion)
Stage = tuple[Block, ...]


def block_name(block: Block) -> str:
    """`k5e4` for (5, 4)."""
    return f"k{block[0]}e{block[1]}"


def parse_block(token: str, where: str) -> Block:
    """(kernel, expansion) of a `k<k>e<e>` token; `ArchError` naming the token otherwise."""
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise ArchError(f"{where}: {token!r} is not a block; write k<kernel>e<expansion>, e.g. k5e4")
    k, e = int(m.group(1)), int(m.group(2))
    if k not in KERNELS:
        raise ArchError(f"{where}: {token!r} has kernel {k}; choose one of {', '.join(map(str, KERNELS))}")
    if e not in EXPANSIONS:
        raise ArchError(f"{where}: {token!r} has expansion {e}; choose one of {', '.join(map(str, EXPANSIONS))}")
    return k, e


@dataclass(frozen=True)
class MobileArch(Arch):
    """Five stages of (kernel, expansion) blocks, 2 to 4 per stage."""

    stages: tuple[Stage, ...]
    space_name = "mobile"

    def __post_init__(self) -> None:
        stages = tuple(tuple((int(k), int(e)) for k, e in stage) for stage in self.stages)
        if len(stages) != STAGES:
            raise ArchError(f"a mobile arch has {STAGES} stages, found {len(stages)}")
        for s, stage in enumerate(stages, 1):
            if len(stage) not in DEPTHS:
                raise ArchError(f"stage {s} has {len(stage)} blocks; a stage has {', '.join(map(str, DEPTHS))} blocks")
            for b, (k, e) in enumerate(stage, 1):
                if k not in KERNELS or e not in EXPANSIONS:
                    raise ArchError(f"stage {s} block {b}: {block_name((k, e))} is not a block of the space")
        object.__setattr__(self, "stages", stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.stages)

    @classmethod
    def parse(cls, text: str) -> MobileArch:
        """Parse `k3e4-k5e6|...` (5 stages); errors name the bad token."""
        s = "".join(text.split())
        if not s:
            raise ArchError(f"empty architecture string; expected a mobile arch, e.g. {EXAMPLE}")
        parts = s.split(STAGE_SEP)
        if len(parts) != STAGES:
            raise ArchError(
                f"{text.strip()[:60]!r}: a mobile arch has {STAGES} stages separated by {STAGE_SEP!r}, "
                f"found {len(parts)}; e.g. {EXAMPLE}"
            )
        stages = []
        for i, part in enumerate(parts, 1):
            tokens = part.split(BLOCK_SEP) if part else []
            if len(tokens) not in DEPTHS:
                raise ArchError(
                    f"stage {i} {part!r}: {len(tokens)} blocks; a stage has {', '.join(map(str, DEPTHS))} "
                    f"blocks joined by {BLOCK_SEP!r}"
                )
            stages.append(tuple(parse_block(t, f"stage {i} block {b}") for b, t in enumerate(tokens, 1)))
        return cls(tuple(stages))

    def __str__(self) -> str:
        return STAGE_SEP.join(BLOCK_SEP.join(block_name(b) for b in stage) for stage in self.stages)


EXAMPLE = "k3e4-k5e6|k3e3-k3e3-k7e4|k5e6-k5e6|k3e4-k3e4-k3e4-k3e4|k7e6-k5e3"
