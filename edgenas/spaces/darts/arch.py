"""A DARTS genotype as an `Arch`: a normal and a reduction cell, 4 nodes of 2 (op, input) pairs each.

The canonical string is DARTS' own `Genotype` (Liu et al., ICLR 2019, `genotypes.py`):
`Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
reduce=[...], reduce_concat=[2, 3, 4, 5])`, so genotypes published with DARTS, PC-DARTS and
their successors paste in as they are (`range(2, 6)` concats, either quote, any spacing, an
optional `NAME = ` in front). Pairs (op, j) list node 2's two inputs, then node 3's, up to
node 5; inputs 0 and 1 are the cell's two inputs (the outputs of the cells two back and one
back), j >= 2 an earlier node. The canonical form lists each node's inputs by input index.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from edgenas.core.errors import ArchError
from edgenas.core.space import Arch

# DARTS' PRIMITIVES, in its order: the columns of the supernet's decision weights.
OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
REAL_OPS: tuple[str, ...] = OPS[1:]  # what a genotype may name: `none` is the supernet's "no edge"
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
NODES: tuple[int, ...] = (2, 3, 4, 5)  # intermediate nodes; 0 and 1 are the cell's inputs
INPUTS_PER_NODE = 2
CONCAT: tuple[int, ...] = NODES  # every intermediate node goes to the cell's output
# The edges node i <- input j (j < i) of one cell, in DARTS' order (node 2's, then node 3's, ...).
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in NODES for j in range(i))

Pair = tuple[str, int]
Cell = tuple[Pair, ...]


def _canonical(cell: Cell) -> Cell:
    """Each node's two pairs ordered by input index (their sum does not depend on the order)."""
    out: list[Pair] = []
    for k in range(len(NODES)):
        out.extend(sorted(cell[INPUTS_PER_NODE * k : INPUTS_PER_NODE * (k + 1)], key=lambda p: (p[1], p[0])))
    return tuple(out)


def _check_cell(kind: str, cell: Cell) -> None:
    """One-line `ArchError` naming the bad pair of a cell."""
    want = INPUTS_PER_NODE * len(NODES)
    if len(cell) != want:
        raise ArchError(
            f"Genotype {kind}: a cell has {len(NODES)} nodes of {INPUTS_PER_NODE} (op, input) pairs, "
            f"{want} in all; found {len(cell)}"
        )
    for k, node in enumerate(NODES):
        pairs = cell[INPUTS_PER_NODE * k : INPUTS_PER_NODE * (k + 1)]
        for op, j in pairs:
            token = repr((op, j))
            if op == "none":
                raise ArchError(f"Genotype {kind} node {node}: {token}: 'none' is not an op of a genotype (no edge)")
            if op not in REAL_OPS:
                raise ArchError(
                    f"Genotype {kind} node {node}: unknown op {op!r} in {token}; choose one of {', '.join(REAL_OPS)}"
                )
            if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < node:
                raise ArchError(f"Genotype {kind} node {node}: input {j!r} in {token} is out of range 0..{node - 1}")
        if pairs[0][1] == pairs[1][1]:
            raise ArchError(
                f"Genotype {kind} node {node}: {pairs[0]!r} and {pairs[1]!r} read the same input {pairs[0][1]}; "
                "a node takes two different inputs"
            )


@dataclass(frozen=True)
class DartsArch(Arch):
    """A DARTS genotype: 8 (op, input) pairs for the normal cell and 8 for the reduction cell.

    Stored canonically (each node's pairs by input index), so equal cells compare equal.
    """

    normal: Cell
    reduce: Cell
    space_name = "darts"

    def __post_init__(self) -> None:
        for kind in CELL_TYPES:
            cell = tuple((op, j) for op, j in getattr(self, kind))
            _check_cell(kind, cell)
            object.__setattr__(self, kind, _canonical(cell))

    def cell(self, kind: str) -> Cell:
        """The pairs of the `normal` or `reduce` cell."""
        return self.normal if kind == "normal" else self.reduce

    @classmethod
    def parse(cls, text: str) -> DartsArch:
        """Parse a `Genotype(...)` string (DARTS' form); errors name the bad token."""
        return parse_genotype(text)

    def __str__(self) -> str:
        concat = ", ".join(map(str, CONCAT))
        return (
            f"Genotype(normal={list(self.normal)!r}, normal_concat=[{concat}], "
            f"reduce={list(self.reduce)!r}, reduce_concat=[{concat}])"
        )


EXAMPLE = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('max_pool_3x3', 1), ('skip_connect', 2)], reduce_concat=[2, 3, 4, 5])"
)  # DARTS_V2, in the canonical form
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _snippet(text: str, node: ast.AST) -> str:
    """The source text of `node`, shortened to one readable token."""
    seg = ast.get_source_segment(text, node) or ast.dump(node)
    seg = " ".join(seg.split())
    return seg if len(seg) <= 60 else seg[:57] + "..."


def _int(node: ast.AST) -> int | None:
    """The value of an integer literal (a negative one too, so its range error can name it)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _pairs(text: str, kind: str, node: ast.AST) -> Cell:
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise ArchError(f"Genotype {kind}: expected a list of (op, input) pairs, found {_snippet(text, node)}")
    out: list[Pair] = []
    for item in node.elts:
        ok = isinstance(item, (ast.Tuple, ast.List)) and len(item.elts) == 2
        if ok:
            op, j = item.elts[0], _int(item.elts[1])
            ok = isinstance(op, ast.Constant) and isinstance(op.value, str) and j is not None
        if not ok:
            raise ArchError(f"Genotype {kind}: {_snippet(text, item)} is not an ('op', input) pair")
        out.append((op.value, j))
    return tuple(out)


def _concat(text: str, kind: str, node: ast.AST) -> None:
    """Accept `[2, 3, 4, 5]`, `(2, 3, 4, 5)` or `range(2, 6)`: every intermediate node (the space's only concat)."""
    values: list[int] | None = None
    if isinstance(node, (ast.List, ast.Tuple)) and all(isinstance(e, ast.Constant) for e in node.elts):
        values = [e.value for e in node.elts]
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "range"
        and not node.keywords
        and all(isinstance(a, ast.Constant) and isinstance(a.value, int) for a in node.args)
        and 1 <= len(node.args) <= 3
    ):
        values = list(range(*[a.value for a in node.args]))
    if values != list(CONCAT):
        raise ArchError(
            f"Genotype {kind}: {_snippet(text, node)}: this space concatenates every intermediate node, "
            "[2, 3, 4, 5] (or range(2, 6))"
        )


def parse_genotype(text: str) -> DartsArch:
    """`Genotype(normal=[...], normal_concat=..., reduce=[...], reduce_concat=...)` -> `DartsArch`.

    Read with Python's parser (nothing is evaluated), so spacing, line breaks, either quote
    and trailing commas are as free as in a `genotypes.py` file.
    """
    s = text.strip()
    if not s:
        raise ArchError("empty architecture string; expected a DARTS genotype, e.g. " + EXAMPLE)
    if not re.match(r"(\w+\s*=\s*)?Genotype\s*\(", s):
        first = s.split("(", 1)[0].strip()[:40] or s[:40]
        raise ArchError(
            f"{first!r}: a DARTS genotype reads Genotype(normal=[...], normal_concat=..., reduce=[...], ...)"
        )
    try:
        tree = ast.parse(s, mode="exec")
    except SyntaxError as exc:
        at = max((exc.offset or 1) - 1, 0)
        line = s.splitlines()[(exc.lineno or 1) - 1] if s.splitlines() else s
        near = " ".join(line[max(at - 20, 0) : at + 20].split())
        raise ArchError(f"not a DARTS genotype: cannot read it near {near!r} ({exc.msg})") from None
    body = tree.body[0] if len(tree.body) == 1 else None
    call = body.value if isinstance(body, (ast.Expr, ast.Assign)) else None  # `NAME = Genotype(...)` too
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
        first = s.split("(", 1)[0].strip() or s[:20]
        raise ArchError(
            f"{first!r}: a DARTS genotype reads Genotype(normal=[...], normal_concat=..., reduce=[...], ...)"
        )
    if len(call.args) > len(FIELDS):
        raise ArchError(f"Genotype takes {len(FIELDS)} fields ({', '.join(FIELDS)}), found {len(call.args)}")
    fields: dict[str, ast.AST] = dict(zip(FIELDS, call.args, strict=False))
    for kw in call.keywords:
        if kw.arg not in FIELDS:
            raise ArchError(f"Genotype: unknown field {kw.arg!r}; the fields are {', '.join(FIELDS)}")
        if kw.arg in fields:
            raise ArchError(f"Genotype: field {kw.arg!r} is given twice")
        fields[kw.arg] = kw.value
    missing = [f for f in FIELDS if f not in fields]
    if missing:
        raise ArchError(f"Genotype: missing field {missing[0]!r}")
    for kind in CELL_TYPES:
        _concat(s, f"{kind}_concat", fields[f"{kind}_concat"])
    return DartsArch(_pairs(s, "normal", fields["normal"]), _pairs(s, "reduce", fields["reduce"]))
