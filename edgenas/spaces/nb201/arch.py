"""The NAS-Bench-201 cell as an `Arch`: 6 edges of a 4-node DAG, one of 5 ops on each.

Canonical string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (node 1, node 2, node 3; `~i` = input node).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edges in canonical order: (to_node, from_node).
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_NODES = 4


@dataclass(frozen=True)
class NB201Arch(Arch):
    """One NAS-Bench-201 cell: the op on each of the 6 edges, in `EDGES` order."""

    ops: tuple[str, ...]
    space_name = "nb201"

    def __post_init__(self) -> None:
        if len(self.ops) != len(EDGES):
            raise ArchError(f"an NB201 cell has {len(EDGES)} edges, got {len(self.ops)} ops")
        for (to, frm), op in zip(EDGES, self.ops, strict=True):
            if op not in OPS:
                raise ArchError(f"unknown op {op!r} on edge {frm}->{to}; choose one of {', '.join(OPS)}")

    @classmethod
    def parse(cls, text: str) -> NB201Arch:
        """Parse `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`; errors name the bad token."""
        s = text.strip()
        if not s:
            raise ArchError("empty architecture string; expected e.g. " + EXAMPLE)
        groups = s.split("+")
        if len(groups) != NUM_NODES - 1:
            raise ArchError(
                f"{text!r}: expected {NUM_NODES - 1} node groups separated by '+', found {len(groups)}; e.g. {EXAMPLE}"
            )
        ops: list[str] = []
        for node, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise ArchError(f"{text!r}: node {node} group {group!r} must start and end with '|'")
            tokens = group[1:-1].split("|")
            if len(tokens) != node:
                raise ArchError(f"{text!r}: node {node} needs {node} input edge(s), found {len(tokens)} in {group!r}")
            for expected_src, token in enumerate(tokens):
                op, sep, src = token.partition("~")
                if not sep:
                    raise ArchError(f"{text!r}: token {token!r} of node {node} must look like 'op~input'")
                if op not in OPS:
                    raise ArchError(f"{text!r}: unknown op {op!r} in token {token!r}; choose one of {', '.join(OPS)}")
                if src != str(expected_src):
                    raise ArchError(
                        f"{text!r}: token {token!r} of node {node} must read from input {expected_src}, not {src!r}"
                    )
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        groups, k = [], 0
        for node in range(1, NUM_NODES):
            groups.append("|" + "|".join(f"{self.ops[k + i]}~{i}" for i in range(node)) + "|")
            k += node
        return "+".join(groups)

    def live_edges(self) -> list[int]:
        """Indices of edges on some input-to-output path of non-zero ops.

        Other edges compute values nobody uses (or read a zero node); a deployed graph
        drops them, so they are not built and cost nothing.
        """
        forward = {0}  # nodes reachable from the input
        for (to, frm), op in zip(EDGES, self.ops, strict=True):
            if op != "none" and frm in forward:
                forward.add(to)
        backward = {NUM_NODES - 1}  # nodes that reach the output
        for k in reversed(range(len(EDGES))):
            to, frm = EDGES[k]
            if self.ops[k] != "none" and to in backward:
                backward.add(frm)
        return [
            k
            for k, ((to, frm), op) in enumerate(zip(EDGES, self.ops, strict=True))
            if op != "none" and frm in forward and to in backward
        ]

    @property
    def is_connected(self) -> bool:
        """False when no path of non-zero ops joins input and output (the cell outputs zeros)."""
        return bool(self.live_edges())

    @property
    def index(self) -> int:
        """Position in `NB201Space.enumerate()` (base-5 digits, first edge most significant)."""
        idx = 0
        for op in self.ops:
            idx = idx * len(OPS) + OPS.index(op)
        return idx

    @classmethod
    def from_index(cls, index: int) -> NB201Arch:
        """Inverse of `index`."""
        if not 0 <= index < len(OPS) ** len(EDGES):
            raise ArchError(f"NB201 index {index} out of range 0..{len(OPS) ** len(EDGES) - 1}")
        ops = []
        for _ in EDGES:
            index, digit = divmod(index, len(OPS))
            ops.append(OPS[digit])
        return cls(tuple(reversed(ops)))


# The default teacher cell (`edgenas teacher`, the pipeline's teacher): every edge a 3x3 convolution.
TEACHER_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
