"""Per-op latency lookup tables (LUTs) for the NAS-Bench-201 space, made on the device itself.

`edgenas profile-device` times every operator the NB201 network runs, at every shape it
runs it at, with onnxruntime on the machine it runs on, and writes the times to a JSON
table. A network's latency is then predicted by adding up its operators (`predict_ms`)
in microseconds instead of exporting and timing the whole network (seconds); search uses
the per-edge form (`nb201_terms`) as a differentiable expected latency (FBNet,
ProxylessNAS), and a device profile can point at a table made on the real target
(`latency: {source: table, table: FILE}`). `check_table` measures whole networks and
reports how well the sums predict them (MAPE, Kendall tau, Spearman rho).

What an entry is. onnxruntime does not run the ONNX operators one by one: it folds BN
into the conv, computes identical nodes once, folds an add or a ReLU into the conv that
feeds it, and on x86 keeps a whole run of convs and pools in a blocked channel layout
(NCHWc), converting to and from it only at the graph's edges. A graph holding one
operator therefore also times a layout conversion in, one out, and the per-`session.run`
cost, which inside a network are paid once, not per operator: summing such graphs
over-predicts small networks by half (measured: MAPE 47 %, Kendall tau 0.79). So:

- each entry is a kernel's *marginal* cost inside a graph. Cell kernels (`CELL_KERNELS`:
  `conv_1x1`, `conv_3x3` with BN folded, `avg_pool_3x3`, a plain `relu`, a plain `add`,
  an add folded into a conv that accumulates in place (`fused_add`) or into a copy of the
  other input (`fused_add_copy`), a ReLU folded into a conv (`fused_relu`)) are timed at
  each stage's (C, H, W) as a chain of 1 copy and one of `1 + CHAIN_EXTRA` copies; the
  entry is the difference over `CHAIN_EXTRA`, which cancels the run overhead and the
  boundary conversions. They are single ONNX operators, the nodes the exporter writes,
  built directly with `onnx.helper` (exporting ~100 tiny modules through torch.export
  would take minutes).
- a network is costed by the kernels onnxruntime actually runs for it: `stage_kernels`
  replays onnxruntime's sharing and folding rules on the cells (it matches onnxruntime's
  optimised graphs kernel for kernel), and each kernel is priced at its entry.
- the frame every network shares (stem, the two reduction blocks, the head) is exported
  from an `NB201Network` whose cells are identities, as growing prefixes: stem; stem +
  reduction 1; + reduction 2; the whole network. `stem` is the first prefix minus the
  overhead, each later entry the difference of consecutive prefixes, so the frame adds up
  to exactly the measured identity-cell network.
- `overhead_ms`: one run of a trivial (Identity) graph of the network's input shape,
  counted once per network.

A prediction is `overhead + stem + reductions + head + the cells' kernels` (see
`LatencyTable.predict_ms`). On the 2-core development VM (onnxruntime 1.32, 1 thread,
28 px, 30 random connected archs, 1 cell) it is within 1-2 % of measured whole networks
(MAPE), Kendall tau 0.98.

Timing protocol (`_time_interleaved`): `warmup` untimed runs per graph, then `repeats`
timed runs per graph in blocks of `BLOCK`, all graphs taking turns block by block (in a
seeded order per round) so slow spells of a shared machine hit every graph alike; the
figure is the lowest block median. The median of a block shrugs off single slow runs;
taking the fastest block drops the rounds in which another process held the core, which
on a shared machine is what makes two runs of the profile (and the check) agree.
Whole networks in `check_table` are timed the same way, with the table's settings.
"""

from __future__ import annotations

import functools
import itertools
import math
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgenas.core.atomic import atomic_write_json
from edgenas.core.errors import ArchError, ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape

if TYPE_CHECKING:
    import onnx
    from torch import nn

    from edgenas.core.device import DeviceProfile
    from edgenas.spaces.nb201 import NB201Arch

SCHEMA_VERSION = 1
TABLE_KIND = "edgenas-latency-table"
SPACES = ("nb201",)
# Cell-level entries, the kernels onnxruntime runs for a cell (see `stage_kernels`): the
# convs (BN folded; the ReLU before them is a kernel of its own), the pool, a plain ReLU,
# a plain add, an add folded into the conv that produces one of its inputs (accumulating
# in place into the other input's buffer, or into a copy of it when that input is still
# needed later), and a ReLU folded into the conv before it.
CELL_KERNELS = (
    "conv_1x1",
    "conv_3x3",
    "avg_pool_3x3",
    "relu",
    "add",
    "fused_add",
    "fused_add_copy",
    "fused_relu",
)
# Chains timed per stage shape (see `chain_model`); the fused kernels are conv_1x1 chains
# with the add / ReLU, less the plain conv_1x1 chain (twice for `conv_1x1x2+add`).
CHAINS = (
    "conv_1x1",
    "conv_3x3",
    "avg_pool_3x3",
    "relu",
    "add",
    "conv_1x1x2+add",
    "conv_1x1+add",
    "conv_1x1+relu",
)
_FUSED_CHAINS = {
    "fused_add": ("conv_1x1x2+add", 2),
    "fused_add_copy": ("conv_1x1+add", 1),
    "fused_relu": ("conv_1x1+relu", 1),
}
CHAIN_EXTRA = 4  # a chain of 1 and of 1 + CHAIN_EXTRA copies; the slope is the entry
BLOCK = 20  # timed runs per block; graphs take turns block by block
DEFAULT_WARMUP = 20
DEFAULT_REPEATS = 1000
OPSET = 18
_STATISTIC = f"lowest median of blocks of {BLOCK} runs, graphs interleaved block by block"


# --------------------------------------------------------------------------- shapes and keys
def stage_shapes(shape: NetShape) -> list[tuple[int, int, int]]:
    """(C, H, W) of the cells of each of the 3 stages (widths C, 2C, 4C; each reduction halves H, W, rounding up)."""
    c, h = shape.width, shape.resolution
    out = []
    for mult in (1, 2, 4):
        out.append((c * mult, h, h))
        h = (h + 1) // 2
    return out


def _dims(c: int, h: int, w: int) -> str:
    return f"{c}x{h}x{w}"


def cell_key(kernel: str, c: int, h: int, w: int) -> str:
    """Entry name of a cell-level kernel at (C, H, W), e.g. `conv_3x3:16x28x28`."""
    return f"{kernel}:{_dims(c, h, w)}"


def frame_keys(shape: NetShape) -> dict[str, str]:
    """Entry names of the stem, the two reductions and the head of `shape`'s network."""
    (c0, h0, w0), (c1, h1, w1), (c2, h2, w2) = stage_shapes(shape)
    return {
        "stem": f"stem:{_dims(shape.in_channels, h0, w0)}->{_dims(c0, h0, w0)}",
        "reduce1": f"reduce:{_dims(c0, h0, w0)}->{_dims(c1, h1, w1)}",
        "reduce2": f"reduce:{_dims(c1, h1, w1)}->{_dims(c2, h2, w2)}",
        "head": f"head:{_dims(c2, h2, w2)}->{shape.num_classes}",
    }


def required_keys(shape: NetShape) -> list[str]:
    """Every entry `predict_ms` reads for networks of `shape`."""
    keys = list(frame_keys(shape).values())
    for c, h, w in stage_shapes(shape):
        keys += [cell_key(k, c, h, w) for k in CELL_KERNELS]
    return keys


# --------------------------------------------------------------------------- the table
@dataclass
class LatencyTable:
    """A per-op latency table of one device: settings, provenance and `entries` (ms)."""

    space: str
    resolution: int
    in_channels: int
    num_classes: int
    widths: list[int]
    threads: int
    warmup: int
    repeats: int
    overhead_ms: float
    entries: dict[str, float]
    name: str = ""
    block: int = BLOCK
    chain_extra: int = CHAIN_EXTRA
    statistic: str = _STATISTIC
    onnxruntime: str = ""
    platform: str = ""
    processor: str = ""
    created: str = ""
    seconds: float = 0.0
    # raw timings of every graph (ms), for the curious; predictions use `entries` only
    graphs: dict[str, float] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    # ---- file
    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema-versioned)."""
        d = asdict(self)
        d.pop("path")
        return {"schema_version": SCHEMA_VERSION, "kind": TABLE_KIND, **d}

    def save(self, path: str | Path) -> Path:
        """Write the table atomically as JSON; returns the path."""
        self.path = Path(path)
        return atomic_write_json(self.path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by `save`; a missing or malformed file is a `ConfigError` naming it."""
        import json

        path = Path(path)
        hint = "make one with `edgenas profile-device`"
        if not path.is_file():
            raise ConfigError(f"latency table {path}: no such file; {hint}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"latency table {path}: not readable JSON ({str(e).splitlines()[0]}); {hint}") from None
        try:
            table = cls._from_dict(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"latency table {path}: not an edgenas latency table ({e}); {hint}") from None
        table.path = path
        return table

    @classmethod
    def _from_dict(cls, data: Any) -> LatencyTable:
        if not isinstance(data, dict):
            raise TypeError("expected a JSON object")
        if data.get("kind") != TABLE_KIND:
            raise ValueError(f"'kind' is {data.get('kind')!r}, expected {TABLE_KIND!r}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {data.get('schema_version')!r}; this edgenas reads {SCHEMA_VERSION}")
        required = ("space", "resolution", "in_channels", "num_classes", "widths", "threads", "warmup", "repeats")
        missing = [k for k in (*required, "overhead_ms", "entries") if k not in data]
        if missing:
            raise KeyError(f"missing {', '.join(missing)}")
        ints = {k: data[k] for k in ("resolution", "in_channels", "num_classes", "threads", "warmup", "repeats")}
        for k, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k == "warmup" else 1):
                raise ValueError(f"{k} must be a positive int, got {v!r}")
        widths = data["widths"]
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"widths must be a list of positive ints, got {widths!r}")
        overhead = data["overhead_ms"]
        if isinstance(overhead, bool) or not isinstance(overhead, int | float) or not math.isfinite(overhead):
            raise ValueError(f"overhead_ms is {overhead!r}, not a number of ms")
        entries = data["entries"]
        if not isinstance(entries, dict):
            raise TypeError("entries must be an object of name: ms")
        for k, v in entries.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"entry {k!r} is {v!r}, not a number of ms")
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def _source(self) -> str:
        return str(self.path) if self.path is not None else f"latency table {self.name or '(unsaved)'}"

    # ---- coverage
    def _mismatch(self, shape: NetShape) -> str | None:
        """Why `shape` is not covered, or None."""
        if self.space != "nb201":
            return f"it is for the {self.space!r} space, not nb201"
        wrong = [
            f"{label} {got} (table: {have})"
            for label, got, have in (
                ("resolution", shape.resolution, self.resolution),
                ("in_channels", shape.in_channels, self.in_channels),
                ("classes", shape.num_classes, self.num_classes),
            )
            if got != have
        ]
        if wrong:
            return "it was made for another input/output: " + ", ".join(wrong)
        if shape.width not in self.widths:
            return f"it has widths {','.join(map(str, self.widths))}, not {shape.width}"
        missing = [k for k in required_keys(shape) if k not in self.entries]
        if missing:
            return f"it lacks {len(missing)} entries, e.g. {missing[0]}"
        return None

    def covers(self, shape: NetShape) -> bool:
        """True when every entry a network of `shape` needs is in the table (any number of cells)."""
        return self._mismatch(shape) is None

    def _require(self, shape: NetShape) -> None:
        why = self._mismatch(shape)
        if why is None:
            return
        same_io = (shape.resolution, shape.in_channels, shape.num_classes) == (
            self.resolution,
            self.in_channels,
            self.num_classes,
        )
        widths = sorted(set(self.widths) | {shape.width}) if same_io else [shape.width]
        raise ConfigError(
            f"{self._source()} does not cover width {shape.width} at {shape.in_channels}x{shape.resolution}x"
            f"{shape.resolution} with {shape.num_classes} classes: {why}; rerun `edgenas profile-device "
            f"--name {self.name or 'DEVICE'} --space nb201 --resolution {shape.resolution} "
            f"--in-channels {shape.in_channels} --classes {shape.num_classes} "
            f"--widths {','.join(map(str, widths))} --threads {self.threads}` on the device"
        )

    # ---- predictions
    def _frame_ms(self, shape: NetShape) -> float:
        return self.overhead_ms + sum(self.entries[k] for k in frame_keys(shape).values())

    def _stage_ms(self, arch: NB201Arch, shape: NetShape, stage: int) -> float:
        c, h, w = stage_shapes(shape)[stage]
        counts = stage_kernels(arch.ops, shape.cells, stage)
        return sum(n * self.entries[cell_key(k, c, h, w)] for k, n in zip(CELL_KERNELS, counts, strict=True) if n)

    def predict_ms(self, arch: NB201Arch, shape: NetShape) -> float:
        """Predicted batch-1 latency (ms) of `NB201Network(arch, shape)` on the table's device.

        `overhead + stem + reduction 1 + reduction 2 + head + the cells of the 3 stages`,
        where the `shape.cells` cells of a stage cost the kernels onnxruntime runs for them
        (`stage_kernels`: the conv, pool, ReLU and add kernels of the live edges, after
        onnxruntime shares identical ReLUs/pools/adds and folds adds and ReLUs into convs),
        each at its entry for the stage's (C, H, W). skip_connect and none cost nothing
        themselves; joining k live edges at a node costs k - 1 adds (plain or folded); a
        cell with no live edge outputs `x * 0`, costed as one add.
        A shape the table does not cover is a `ConfigError` saying how to extend the table.
        """
        arch = _as_nb201(arch)
        self._require(shape)
        return self._frame_ms(shape) + sum(self._stage_ms(arch, shape, s) for s in range(3))

    def nb201_terms(self, shape: NetShape) -> tuple[float, np.ndarray]:
        """Per-edge latency terms for a differentiable expected latency: `(fixed_ms, terms)`.

        `terms[s, j]` (shape `(3, len(OPS))`, columns in `OPS` order, `none` = 0) is the
        cost of one edge carrying `OPS[j]` in one cell of stage `s`, such that for an arch
            fixed_ms + shape.cells * sum_s sum_edges terms[s, op_index(edge)]
        approximates `predict_ms`; with softmax weights over each edge's ops in place of
        the one-hot choice it is the expected latency of a mixed-op supernet (FBNet).
        `fixed_ms` is the frame: overhead, stem, reductions and head.

        `predict_ms` is not additive over edges: how many adds a node needs depends on how
        many edges meet there, ReLUs, pools and adds of one node are shared, a conv absorbs
        an add or a ReLU only when its neighbours allow, and dead edges cost nothing. So
        the terms are the least-squares fit, per stage, of `stage cost / cells = sum of the
        6 edges' terms` over the 4**6 cells without a `none` edge (all edges live); each
        edge carries its share of the adds and ReLUs. Measured on a real table (widths 8,
        16 at 28 px, 1 cell): mean error 1.6 % on those cells (a few degenerate ones, all
        skip_connect or all avg_pool, where sharing removes most adds, reach 15 %). For
        cells with `none` edges the approximation drops each `none` edge's share; it still
        counts edges that are not `none` but dead, so it over-estimates such cells.
        """
        from edgenas.spaces.nb201 import OPS

        self._require(shape)
        features = _none_free_features()
        terms = np.zeros((3, len(OPS)), dtype=np.float64)
        for s, (c, h, w) in enumerate(stage_shapes(shape)):
            costs = np.array([self.entries[cell_key(k, c, h, w)] for k in CELL_KERNELS])
            y = _none_free_kernel_counts(shape.cells, s) @ costs / shape.cells
            terms[s, 1:], *_ = np.linalg.lstsq(features, y, rcond=None)
        return self._frame_ms(shape), terms


def _as_nb201(arch: Any) -> NB201Arch:
    from edgenas.spaces.nb201 import NB201Arch

    if isinstance(arch, NB201Arch):
        return arch
    if isinstance(arch, str):
        return NB201Arch.parse(arch)
    raise ArchError(f"a latency table predicts NB201 architectures, not {type(arch).__name__}")


# --------------------------------------------------------------------------- kernels of a stage
@functools.lru_cache(maxsize=1 << 16)
def stage_kernels(ops: tuple[str, ...], cells: int, stage: int) -> tuple[int, ...]:
    """How many of each `CELL_KERNELS` kernel onnxruntime runs for the `cells` cells of one stage.

    The cells are laid out as the exporter writes them: only live edges; a conv edge is
    ReLU(node) -> Conv (BN folded); a pool edge AveragePool(node); skip_connect is the
    node itself; the inputs of a node are summed by Adds in edge order; a cell with no
    live edge outputs `x * 0` (counted as one `add`). Then onnxruntime's graph
    optimisations (level "all") are applied, in graph order:
    - common subexpressions are computed once: the ReLU of a node read by several conv
      edges, the pools of one node, an Add that two nodes both start with;
    - an Add one of whose inputs (the first tried first) is a conv output used only by
      that Add, the conv not yet having an add or activation folded in, becomes part of
      the conv, which accumulates into the other input's buffer (`fused_add`) or, when
      that input is read again later (in graph order, or by the next block), into a copy
      of it (`fused_add_copy`); else the Add is a plain `add`;
    - a ReLU whose input is a conv output used only by it, the conv not yet having an
      activation, becomes the conv's activation (`fused_relu`); else a plain `relu`.
    The stage's input is the stem conv's output (stage 0) or that of a reduction block's
    conv with the block's Add folded in (stages 1, 2); its output is read twice by the
    next reduction block (ReLU and pool) or once by the head. These are the rules of
    onnxruntime's NCHWc transformer (x86) and match its optimised graphs kernel for kernel
    (onnxruntime 1.32, random archs, 1 and 2 cells); one effect is left out: when the
    last node of the last cell is a single conv, onnxruntime also folds the head's BN into
    it, saving about a microsecond. Where the NCHWc layout is not used (other CPUs, or
    channel counts that are not a multiple of its block, 8 with AVX2, 16 with AVX-512)
    onnxruntime's generic conv fusions are similar but not identical, so the counts there
    are an approximation.
    """
    from edgenas.spaces.nb201 import EDGES, NB201Arch

    live = NB201Arch(tuple(ops)).live_edges()
    nodes: list[tuple[str, tuple[int, ...], int]] = []  # (kind, inputs, output), values are ints
    shared: dict[tuple[str, tuple[int, ...]], int] = {}

    def emit(kind: str, inputs: tuple[int, ...], cse: bool = True) -> int:
        key = (kind, inputs)
        if cse and key in shared:
            return shared[key]
        out = len(nodes) + 1  # value 0 is the stage input
        nodes.append((kind, inputs, out))
        if cse:
            shared[key] = out
        return out

    x = 0
    for _ in range(cells):
        value: list[int | None] = [x, None, None, None]
        for k in live:
            (to, frm), op = EDGES[k], ops[k]
            src = value[frm]
            assert src is not None  # live edges leave reachable nodes
            if op == "skip_connect":
                out = src
            elif op == "avg_pool_3x3":
                out = emit("avg_pool_3x3", (src,))
            else:  # convs have their own weights: never shared
                out = emit("conv_1x1" if op == "nor_conv_1x1" else "conv_3x3", (emit("relu", (src,)),), cse=False)
            value[to] = out if value[to] is None else emit("add", (value[to], out))
        x = value[3] if value[3] is not None else emit("mul0", (x,))
    uses = dict.fromkeys(range(len(nodes) + 1), 0)
    for _kind, inputs, _out in nodes:
        for v in inputs:
            uses[v] += 1
    uses[x] += 1 if stage == 2 else 2
    last_use = {x: len(nodes)}  # the stage output is read after every node of the stage
    for i, (_kind, inputs, _out) in enumerate(nodes):
        for v in inputs:
            last_use[v] = max(last_use.get(v, i), i)
    # value -> [has_add, has_activation] of the conv that produces it (None: not a conv)
    conv: dict[int, list[bool] | None] = {0: [stage > 0, False]}
    counts = dict.fromkeys(CELL_KERNELS, 0)
    for i, (kind, inputs, out) in enumerate(nodes):
        if kind in ("conv_1x1", "conv_3x3"):
            counts[kind] += 1
            conv[out] = [False, False]
        elif kind == "add":
            target = next((v for v in inputs if uses[v] == 1 and conv.get(v) is not None and not any(conv[v])), None)
            if target is None:
                counts["add"] += 1
                conv[out] = None
            else:
                other = inputs[1] if target == inputs[0] else inputs[0]
                counts["fused_add" if last_use[other] == i and other != target else "fused_add_copy"] += 1
                conv[target][0] = True
                conv[out] = conv[target]
        elif kind == "relu":
            producer = conv.get(inputs[0])
            if uses[inputs[0]] == 1 and producer is not None and not producer[1]:
                counts["fused_relu"] += 1
                producer[1] = True
            else:
                counts["relu"] += 1
            conv[out] = None
        else:  # avg_pool_3x3; mul0 (x * 0) is an elementwise op like an add
            counts["add" if kind == "mul0" else kind] += 1
            conv[out] = None
    return tuple(counts[k] for k in CELL_KERNELS)


def _none_free_cells() -> list[tuple[str, ...]]:
    from edgenas.spaces.nb201 import EDGES, OPS

    return list(itertools.product(OPS[1:], repeat=len(EDGES)))


@functools.cache
def _none_free_features() -> np.ndarray:
    """Per cell without a `none` edge: how many edges carry each op of `OPS[1:]`."""
    from edgenas.spaces.nb201 import OPS

    return np.array([[ops.count(op) for op in OPS[1:]] for ops in _none_free_cells()], dtype=np.float64)


@functools.cache
def _none_free_kernel_counts(cells: int, stage: int) -> np.ndarray:
    """`stage_kernels` of every cell without a `none` edge (rows as in `_none_free_features`)."""
    return np.array([stage_kernels(ops, cells, stage) for ops in _none_free_cells()], dtype=np.float64)


# --------------------------------------------------------------------------- device profiles
_TABLE_CACHE: dict[tuple[str, int], LatencyTable] = {}


def latency_table_for(profile: DeviceProfile) -> LatencyTable | None:
    """The latency table a device profile points at (`latency.source: table`), or None.

    Tables are cached by path and modification time, so a search loop can call this for
    every candidate. A bad table file is a `ConfigError` naming the profile and the file.
    """
    spec = profile.latency
    if spec.source != "table":
        return None
    if not spec.table:
        raise ConfigError(f"device profile {profile.name!r}: latency.source is 'table' but latency.table is not set")
    path = Path(spec.table)
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except OSError:
        key = None
    if key is None or key not in _TABLE_CACHE:
        try:
            table = LatencyTable.load(path)
        except ConfigError as e:
            raise ConfigError(f"device profile {profile.name!r}: {e}") from None
        if key is None:
            return table
        _TABLE_CACHE[key] = table
    return _TABLE_CACHE[key]


# --------------------------------------------------------------------------- timing
Feed = tuple[Any, dict[str, np.ndarray]]


def _session(path: Path, threads: int) -> Feed:
    """An onnxruntime session (the timing setup of `onnx_session`) and a seeded input for it."""
    from edgenas.export.onnx import input_spec, onnx_session

    session = onnx_session(path, threads=threads)
    name, _batch, dtype = input_spec(session)
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    feed = {name: numpy_rng(0, "lut-input", path.name).standard_normal(shape).astype(dtype)}
    session.run(None, feed)
    return session, feed


def _time_interleaved(
    graphs: Mapping[str, Feed],
    *,
    warmup: int,
    repeats: int,
    advance: Callable[[int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per graph: `ms` (lowest block median) and `median_ms` (median of all timed runs).

    `warmup` untimed runs per graph, then `repeats` timed runs per graph in blocks of
    `BLOCK`; each round runs one block of every graph, in a seeded order per round.
    `advance(1)` is called after each round.
    """
    names = list(graphs)
    block = min(BLOCK, repeats)
    rounds = math.ceil(repeats / block)
    for name in names:
        session, feed = graphs[name]
        for _ in range(warmup):
            session.run(None, feed)
    medians: dict[str, list[float]] = {n: [] for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    rng = numpy_rng(0, "lut-order")
    clock = time.perf_counter
    for r in range(rounds):
        runs = min(block, repeats - r * block)
        for i in rng.permutation(len(names)):
            name = names[int(i)]
            session, feed = graphs[name]
            ts = []
            for _ in range(runs):
                start = clock()
                session.run(None, feed)
                ts.append(clock() - start)
            medians[name].append(float(np.median(ts)))
            times[name].extend(ts)
        if advance is not None:
            advance(1)
    return {n: {"ms": min(medians[n]) * 1e3, "median_ms": float(np.median(times[n])) * 1e3} for n in names}


def _check_settings(threads: int, warmup: int, repeats: int) -> None:
    from edgenas.cost.latency import _check_protocol

    _check_protocol(threads, warmup, repeats)


# --------------------------------------------------------------------------- graphs
def _model(nodes: list, inits: list, in_shape: Sequence[int], out: str, out_shape: Sequence[int]) -> onnx.ModelProto:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "edgenas_lut",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *in_shape])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, *out_shape])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=10)


def chain_model(chain: str, c: int, h: int, w: int, copies: int, seed: int = 0) -> onnx.ModelProto:
    """A graph of `copies` copies of one cell-level kernel (a `CHAINS` name) at (C, H, W), each feeding the next.

    The nodes are those the exporter writes for the NB201 ops: Conv (its BN folded into
    weights and bias; distinct weights per copy), Relu, AveragePool (3x3, stride 1, pad 1,
    count_include_pad=0) and Add (the running value plus the graph input: two tensors
    read, as at a node of a cell). onnxruntime folds the add / ReLU of the other chains
    into a conv: `conv_1x1+relu` is ReLU(conv(x)); `conv_1x1+add` is conv(x) + x, whose
    sum goes into a copy of x (x is the conv's input too); `conv_1x1x2+add` is
    conv_a(x) + conv_b(x), accumulated in place into conv_b's output.
    """
    from onnx import helper, numpy_helper

    if chain not in CHAINS:
        raise ValueError(f"unknown chain {chain!r}")
    kernel, _, extra = chain.partition("+")
    twice = kernel.endswith("x2")
    kernel = kernel.removesuffix("x2")
    rng = numpy_rng(seed, "lut-weights", chain, c, h, w)
    nodes, inits, x = [], [], "input"
    for i in range(copies):
        y = f"y{i}"
        out = f"k{i}" if extra else y
        if kernel in ("conv_1x1", "conv_3x3"):
            k = 1 if kernel == "conv_1x1" else 3
            weight = (rng.standard_normal((c, c, k, k)) / math.sqrt(c * k * k)).astype(np.float32)
            inits += [
                numpy_helper.from_array(weight, f"w{i}"),
                numpy_helper.from_array(np.zeros(c, np.float32), f"b{i}"),
            ]
            nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [out], kernel_shape=[k, k], pads=[k // 2] * 4))
        elif kernel == "avg_pool_3x3":
            nodes.append(
                helper.make_node(
                    "AveragePool", [x], [out], kernel_shape=[3, 3], strides=[1, 1], pads=[1] * 4, count_include_pad=0
                )
            )
        elif kernel == "relu":
            nodes.append(helper.make_node("Relu", [x], [out]))
        else:  # add
            nodes.append(helper.make_node("Add", [x, "input"], [out]))
        if twice:
            weight = (rng.standard_normal((c, c, 1, 1)) / math.sqrt(c)).astype(np.float32)
            inits += [
                numpy_helper.from_array(weight, f"v{i}"),
                numpy_helper.from_array(np.zeros(c, np.float32), f"d{i}"),
            ]
            nodes.append(helper.make_node("Conv", [x, f"v{i}", f"d{i}"], [f"m{i}"], kernel_shape=[1, 1]))
            nodes.append(helper.make_node("Add", [out, f"m{i}"], [y]))
        elif extra == "add":
            nodes.append(helper.make_node("Add", [out, x], [y]))
        elif extra == "relu":
            nodes.append(helper.make_node("Relu", [out], [y]))
        x = y
    return _model(nodes, inits, (c, h, w), x, (c, h, w))


def identity_model(in_shape: Sequence[int]) -> onnx.ModelProto:
    """A graph that only passes its input through: the fixed cost of one `session.run`."""
    from onnx import helper

    return _model([helper.make_node("Identity", ["input"], ["output"])], [], in_shape, "output", in_shape)


def _frame_modules(shape: NetShape) -> list[nn.Module]:
    """Growing prefixes of an identity-cell `NB201Network`: stem; + reduction 1; + reduction 2; + head."""
    import torch
    from torch import nn

    from edgenas.spaces.nb201 import NB201Arch, NB201Network, ResNetBasicBlock

    identity = NB201Arch(("none", "none", "none", "skip_connect", "none", "none"))
    net = NB201Network(identity, NetShape(shape.width, 1, shape.in_channels, shape.resolution, shape.num_classes))
    reductions = [b for b in net.blocks if isinstance(b, ResNetBasicBlock)]

    class Prefix(nn.Module):
        def __init__(self, upto: int) -> None:
            super().__init__()
            self.stem = net.stem
            self.reductions = nn.ModuleList(reductions[: min(upto, 2)])
            self.head = nn.Sequential(net.lastact, net.pool, nn.Flatten(1), net.classifier) if upto == 3 else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            for block in self.reductions:
                h = block(h)
            return h if self.head is None else self.head(h)

    return [Prefix(i).eval() for i in range(4)]


# --------------------------------------------------------------------------- profiling
def profile_nb201(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    quiet: bool = False,
    name: str = "",
    workdir: str | Path | None = None,
) -> LatencyTable:
    """Time every op of NB201 networks of these widths at this input on this machine.

    See the module docstring for what is timed and how. Takes about 5 s per width for the
    frame exports plus the timing (`repeats` runs of each of ~35 graphs per width).
    """
    import onnx
    import onnxruntime

    from edgenas.core.progress import progress_bar
    from edgenas.export.onnx import export_onnx

    _check_settings(threads, warmup, repeats)
    widths = sorted({int(w) for w in widths})
    for label, value, low in (
        ("resolution", resolution, 4),
        ("in_channels", in_channels, 1),
        ("classes", num_classes, 1),
        *(("width", w, 1) for w in widths),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"profile-device: {label} must be an int >= {low}, got {value!r}")
    if not widths:
        raise ConfigError("profile-device: give at least one width (--widths 8,16,32)")
    start = time.perf_counter()
    shapes = [NetShape(w, 1, in_channels, resolution, num_classes) for w in widths]
    graphs: dict[str, Feed] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-lut-", dir=workdir) as tmp, progress_bar(quiet) as bar:
        tmpdir = Path(tmp)

        def add(gname: str, model: onnx.ModelProto) -> None:
            path = tmpdir / f"g{len(graphs)}.onnx"
            onnx.save(model, str(path))
            graphs[gname] = _session(path, threads)

        add("overhead", identity_model(shapes[0].input_shape))
        cell_shapes = sorted({dims for shape in shapes for dims in stage_shapes(shape)})
        for c, h, w in cell_shapes:
            for chain in CHAINS:
                for copies in (1, 1 + CHAIN_EXTRA):
                    add(f"{chain}:{_dims(c, h, w)}#{copies}", chain_model(chain, c, h, w, copies))
        task = bar.add_task("export frame", total=4 * len(shapes), status="")
        for shape in shapes:
            for i, module in enumerate(_frame_modules(shape)):
                bar.update(task, status=f"width {shape.width}, prefix {i + 1}/4")
                path = export_onnx(module, shape.input_shape, tmpdir / f"w{shape.width}_p{i}.onnx", dynamic_batch=False)
                graphs[f"frame{i}@{shape.width}"] = _session(path, threads)
                bar.advance(task)
        rounds = math.ceil(repeats / min(BLOCK, repeats))
        task = bar.add_task("time ops", total=rounds, status=f"{len(graphs)} graphs, {repeats} runs each")
        timed = _time_interleaved(graphs, warmup=warmup, repeats=repeats, advance=lambda k: bar.advance(task, k))
    ms = {g: t["ms"] for g, t in timed.items()}
    overhead = ms["overhead"]
    entries: dict[str, float] = {}
    for c, h, w in cell_shapes:
        dims = _dims(c, h, w)
        slope = {
            chain: (ms[f"{chain}:{dims}#{1 + CHAIN_EXTRA}"] - ms[f"{chain}:{dims}#1"]) / CHAIN_EXTRA for chain in CHAINS
        }
        for kernel in CELL_KERNELS:
            if kernel in _FUSED_CHAINS:
                chain, convs = _FUSED_CHAINS[kernel]
                entries[cell_key(kernel, c, h, w)] = slope[chain] - convs * slope["conv_1x1"]
            else:
                entries[cell_key(kernel, c, h, w)] = slope[kernel]
    for shape in shapes:
        keys = frame_keys(shape)
        prefix = [ms[f"frame{i}@{shape.width}"] for i in range(4)]
        entries[keys["stem"]] = prefix[0] - overhead
        entries[keys["reduce1"]] = prefix[1] - prefix[0]
        entries[keys["reduce2"]] = prefix[2] - prefix[1]
        entries[keys["head"]] = prefix[3] - prefix[2]
    return LatencyTable(
        space="nb201",
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        widths=widths,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        overhead_ms=overhead,
        entries=entries,
        name=name,
        onnxruntime=onnxruntime.__version__,
        platform=platform.platform(),
        processor=_processor(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 2),
        graphs=ms,
    )


def _processor() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- checking
def check_table(
    table: LatencyTable,
    shape: NetShape,
    n: int = 30,
    seed: int = 0,
    *,
    threads: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    quiet: bool = True,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Predicted against measured latency of `n` random distinct connected NB201 networks.

    Each network is exported and timed whole with onnxruntime under the table's threads,
    warm-up and repeats (overridable) and its timing statistic, all networks interleaved
    as the table's graphs were. Also timed: the identity-cell network, whose prediction
    is the frame measured at profiling time, so `reference.drift_pct` tells how much
    faster or slower the machine runs now than when the table was made (not corrected
    for). Returns the rows and MAPE (%), Kendall tau and Spearman rho of predicted
    against `measured_ms` (the table's statistic); `median_ms`, the plain median of all
    timed runs, is kept per row, with `mape_vs_median_pct`, for comparison.
    """
    import onnxruntime

    from edgenas.bench.correlation import kendall, spearman
    from edgenas.core.progress import progress_bar
    from edgenas.export.onnx import export_onnx
    from edgenas.spaces.nb201 import NB201Arch, NB201Network, NB201Space

    table._require(shape)
    threads = table.threads if threads is None else threads
    warmup = table.warmup if warmup is None else warmup
    repeats = table.repeats if repeats is None else repeats
    _check_settings(threads, warmup, repeats)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"check: n must be an int >= 2 (two networks to rank at least), got {n!r}")
    start = time.perf_counter()
    space = NB201Space()
    archs = space.sample_distinct(n, numpy_rng(seed, "lut-check"), accept=lambda a: a.is_connected)
    identity = NB201Arch(("none", "none", "none", "skip_connect", "none", "none"))
    nets = {str(a): a for a in archs}
    reference = str(identity)
    nets.setdefault(reference, identity)
    graphs: dict[str, Feed] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-lut-check-", dir=workdir) as tmp, progress_bar(quiet) as bar:
        task = bar.add_task("export nets", total=len(nets), status="")
        for i, (text, arch) in enumerate(nets.items()):
            path = export_onnx(
                NB201Network(arch, shape), shape.input_shape, Path(tmp) / f"n{i}.onnx", dynamic_batch=False
            )
            graphs[text] = _session(path, threads)
            bar.advance(task)
        rounds = math.ceil(repeats / min(BLOCK, repeats))
        task = bar.add_task("time nets", total=rounds, status=f"{len(graphs)} nets, {repeats} runs each")
        timed = _time_interleaved(graphs, warmup=warmup, repeats=repeats, advance=lambda k: bar.advance(task, k))
    rows = []
    for arch in archs:
        pred, t = table.predict_ms(arch, shape), timed[str(arch)]
        rows.append(
            {
                "arch": str(arch),
                "predicted_ms": pred,
                "measured_ms": t["ms"],
                "median_ms": t["median_ms"],
                "error_pct": 100 * (pred - t["ms"]) / t["ms"],
            }
        )
    predicted = np.array([r["predicted_ms"] for r in rows])
    measured = np.array([r["measured_ms"] for r in rows])
    medians = np.array([r["median_ms"] for r in rows])
    errors = np.abs(predicted - measured) / measured
    ref_pred, ref_meas = table.predict_ms(identity, shape), timed[reference]["ms"]
    here = {"processor": _processor(), "onnxruntime": onnxruntime.__version__}
    return {
        "schema_version": SCHEMA_VERSION,
        "table": str(table.path) if table.path else None,
        "device": table.name,
        "shape": asdict(shape),
        "n": len(rows),
        "seed": seed,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "statistic": _STATISTIC,
        # the check measures here: a table made elsewhere (another CPU / runtime) is not comparable
        "same_machine": all(getattr(table, k) == v for k, v in here.items()),
        "here": here,
        "mape_pct": float(100 * errors.mean()),
        "max_error_pct": float(100 * errors.max()),
        "bias_pct": float(100 * np.mean((predicted - measured) / measured)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "kendall_tau": kendall(predicted, measured),
        "spearman_rho": spearman(predicted, measured),
        "mape_vs_median_pct": float(100 * np.mean(np.abs(predicted - medians) / medians)),
        "reference": {
            "arch": reference,
            "predicted_ms": ref_pred,
            "measured_ms": ref_meas,
            "drift_pct": 100 * (ref_meas - ref_pred) / ref_pred,
        },
        "seconds": round(time.perf_counter() - start, 2),
        "rows": rows,
    }


def check_plot(path: str | Path, result: Mapping[str, Any]) -> Path:
    """Predicted against measured latency, one point per network, the y = x line and +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.array([r["predicted_ms"] for r in result["rows"]])
    meas = np.array([r["measured_ms"] for r in result["rows"]])
    lo, hi = 0.9 * min(pred.min(), meas.min()), 1.1 * max(pred.max(), meas.max())
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    line = np.array([lo, hi])
    ax.plot(line, line, color="black", lw=1, label="predicted = measured")
    ax.fill_between(line, line / 1.1, line * 1.1, color="tab:gray", alpha=0.2, label="±10 %")
    ax.scatter(meas, pred, s=18, color="tab:blue", edgecolor="black", linewidth=0.4, zorder=3)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms, whole network, onnxruntime)")
    ax.set_ylabel("predicted latency (ms, sum of table entries)")
    shape = result["shape"]
    ax.set_title(
        f"{result.get('device') or 'latency table'}: C={shape['width']} N={shape['cells']} "
        f"{shape['resolution']}px, {result['n']} nets\nMAPE {result['mape_pct']:.1f} %, "
        f"Kendall τ {result['kendall_tau']:.3f}, Spearman ρ {result['spearman_rho']:.3f}",
        fontsize=9,
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def summary_rows(table: LatencyTable) -> list[tuple[object, ...]]:
    """Rows for a console summary: per width and stage, the main entries in microseconds."""
    rows: list[tuple[object, ...]] = []
    for width in table.widths:
        shape = NetShape(width, 1, table.in_channels, table.resolution, table.num_classes)
        frame = frame_keys(shape)
        for s, (c, h, w) in enumerate(stage_shapes(shape)):
            us = [f"{table.entries[cell_key(k, c, h, w)] * 1e3:.1f}" for k in ("conv_1x1", "conv_3x3", "avg_pool_3x3")]
            us += [f"{table.entries[cell_key(k, c, h, w)] * 1e3:.1f}" for k in ("relu", "add", "fused_add_copy")]
            block = ("stem", "reduce1", "reduce2")[s]
            rows.append((width, s + 1, _dims(c, h, w), *us, f"{block} {table.entries[frame[block]] * 1e3:.1f}"))
        rows.append((width, "", "", "", "", "", "", "", "", f"head {table.entries[frame['head']] * 1e3:.1f}"))
    return rows


SUMMARY_COLUMNS = (
    "width",
    "stage",
    "C x H x W",
    "conv 1x1 µs",
    "conv 3x3 µs",
    "avg pool µs",
    "relu µs",
    "add µs",
    "conv+add copy µs",
    "frame µs",
)
