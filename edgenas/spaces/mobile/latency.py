"""LUT kernels of the mobile space: one table entry per block shape, as Once-for-All's latency tables.

OFA (Cai et al., ICLR 2020, `latency_lookup_table.py`) and ProxylessNAS price a MobileNet-style
network as the sum of its blocks' latencies, each block keyed by its shape: here
`mb_k5e4/s2:24x28x28->40 relu+se` (kernel, expansion, stride, input C×H×W, output width,
activation, SE). What onnxruntime fuses inside a block (BN, activations, SE, the residual add)
is in its entry, because blocks are timed as the exporter writes them, in graphs: a 1×1 conv
(so the first block reads its input in a network's layout), then a chain of distinct copies
(`chain_model`), as NB201's and DARTS' kernels are timed; the entry of a later block of a
stage is the slope of its 1- and N-copy chains, that of a stage's first block its chain (the
block, then later blocks) less the later block's. A chain reads N blocks' weights per run, as a
network does, so the entries price in weights that a lone block would keep in cache. The stem
(with the fixed first block) and the head are timed as graphs, the run overhead as an Identity
graph; the `frame:` entry is the cheapest network whole (the `REFERENCE` on which `--check`
reports drift) less its parts. A prediction is overhead + stem + frame + Σ blocks + head,
additive per position, so `position_terms` is exact for the table. The profile is split as
NB201's (`profile_spec`, `profile_graphs`, `profile_fusion`, `profile_entries`), so profiling
kits and INT8 tables use the same graphs. What was tried and measured: docs/methods/lut.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgenas.core.errors import ArchError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.lut.table import LatencyTable, ProfileSpec, profile_here
from edgenas.cost.lut.timing import (
    CHAIN_EXTRA,
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    NCHWC_DOMAIN,
    check_settings,
    checked_profile_input,
    identity_model,
    onnx_model,
)
from edgenas.spaces.mobile.arch import BLOCK_OPS, MAX_DEPTH, OPS, SKIP, MobileArch
from edgenas.spaces.mobile.network import (
    BlockSpec,
    Macro,
    MobileClassifier,
    MobileNetwork,
    macro,
    make_final_expand,
    make_stem,
)

if TYPE_CHECKING:
    import onnx

SUMMARY_COLUMNS = ("width", "block", "C x H x W -> C'", *(f"{op} µs" for op in BLOCK_OPS))
LAYOUTS = ("nchwc", "nchw")


def _reference() -> MobileArch:
    from edgenas.spaces.mobile import MobileSpace

    return MobileSpace().cheapest()


REFERENCE = _reference()  # depth 2, k3e3 everywhere: `check_table` reports the machine's drift on it


# --------------------------------------------------------------------------- keys
def dims(c: int, h: int) -> str:
    return f"{c}x{h}x{h}"


def block_key(op: str, spec: BlockSpec) -> str:
    """`mb_k5e4/s2:24x28x28->40 relu+se`: a block of op `op` at this position's shape."""
    stride = "/s2" if spec.stride == 2 else ""
    extras = spec.act + ("+se" if spec.se else "")
    return f"mb_{op}{stride}:{dims(spec.c_in, spec.side)}->{spec.c_out} {extras}"


def stem_key(shape: NetShape, m: Macro) -> str:
    return f"stem/s{m.stem_stride}:{dims(shape.in_channels, shape.resolution)}->{m.stem_width}"


def head_key(shape: NetShape, m: Macro) -> str:
    return f"head:{dims(m.last_width, m.head_side)}->{m.expand_width}->{m.mix_width}->{shape.num_classes}"


def _positions(m: Macro) -> list[BlockSpec]:
    """One position per distinct block shape (a stage's first block, then its later blocks)."""
    seen: dict[tuple, BlockSpec] = {}
    for spec in m.blocks:
        seen.setdefault((spec.c_in, spec.c_out, spec.stride, spec.side, spec.act, spec.se), spec)
    return list(seen.values())


def frame_key(shape: NetShape, m: Macro) -> str:
    """What a whole network of `shape` costs beyond overhead, stem, blocks and head (ms)."""
    return f"frame:{dims(shape.in_channels, shape.resolution)}->{m.stem_width}"


def required_keys(shape: NetShape) -> list[str]:
    """Every entry `predict_ms` reads for networks of `shape`."""
    m = macro(shape)
    keys = [stem_key(shape, m), head_key(shape, m), frame_key(shape, m)]
    keys += [block_key(op, spec) for spec in _positions(m) for op in BLOCK_OPS]
    return list(dict.fromkeys(keys))


def fusion_keys(shape: NetShape) -> list[str]:
    """`conv:CxHxW` per block input shape: the layout of a 1×1 conv there."""
    return list(dict.fromkeys(f"conv:{dims(s.c_in, s.side)}" for s in _positions(macro(shape))))


def check_fusion(fusion: Mapping[str, str]) -> None:
    for k, value in fusion.items():
        if value not in LAYOUTS:
            raise ValueError(f"fusion {k!r} is {value!r}")


# --------------------------------------------------------------------------- predictions
def position_terms(table: LatencyTable, shape: NetShape) -> tuple[float, np.ndarray]:
    """`(fixed_ms, (20, 10) terms)`: overhead + stem + head + frame, and every block's entry at its
    position (skip: 0)."""
    m = macro(shape)
    e = table.entries
    fixed = table.overhead_ms + e[stem_key(shape, m)] + e[head_key(shape, m)] + e[frame_key(shape, m)]
    return float(fixed), _block_weights(table.entries, m)


def _block_weights(entries: Mapping[str, float], m: Macro) -> np.ndarray:
    """(20, 10): every block's raw entry at its position (skip: 0)."""
    weights = np.zeros((len(m.blocks), len(OPS)))
    for p, spec in enumerate(m.blocks):
        for o, op in enumerate(OPS):
            if op != SKIP:
                weights[p, o] = entries[block_key(op, spec)]
    return weights


def predict_ms(table: LatencyTable, arch: Any, shape: NetShape) -> float:
    """Predicted batch-1 latency (ms) of `MobileNetwork(arch, shape)`: overhead + stem + Σ blocks + head."""
    from edgenas.spaces.mobile import MobileSpace

    if isinstance(arch, str):
        arch = MobileArch.parse(arch)
    if not isinstance(arch, MobileArch):
        raise ArchError(f"a mobile latency table predicts mobile archs, not {type(arch).__name__}")
    fixed, weights = position_terms(table, shape)
    index = MobileSpace().encode(arch)
    return float(fixed + weights[np.arange(len(index)), index].sum())


# --------------------------------------------------------------------------- graphs
def chainable(spec: BlockSpec) -> bool:
    """A block whose output has its input's shape (stride 1, same width) can follow copies of itself."""
    return spec.stride == 1 and spec.c_in == spec.c_out


def later_position(spec: BlockSpec, m: Macro) -> BlockSpec:
    """The position after a stage's first block: the stage's later blocks, which chain."""
    later = m.blocks[spec.stage * MAX_DEPTH + 1]
    assert chainable(later), later
    return later


def chain_name(op: str, spec: BlockSpec, copies: int) -> str:
    """Graph name of a chain at a block position: `copies` copies of the block (a chainable position),
    or the block then `copies - 1` copies of its stage's later block of the same op."""
    return f"{block_key(op, spec)}#{copies}"


def chains(m: Macro) -> list[tuple[str, str, list[BlockSpec]]]:
    """`(graph name, op, the positions of its blocks)` of every block chain a profile times at `m`:
    at a position that chains 1 and `1 + CHAIN_EXTRA` copies, at a stage's first block the block and
    `CHAIN_EXTRA` copies of the stage's later block (of the same op)."""
    out = []
    for pos in _positions(m):
        for op in BLOCK_OPS:
            if chainable(pos):
                out += [(chain_name(op, pos, n), op, [pos] * n) for n in (1, 1 + CHAIN_EXTRA)]
            else:
                later = [later_position(pos, m)] * CHAIN_EXTRA
                out.append((chain_name(op, pos, 1 + CHAIN_EXTRA), op, [pos, *later]))
    return out


def conv_shapes(m: Macro) -> list[tuple[int, int]]:
    """(C, side) of every `conv:` graph: each block position's input and the head's."""
    return sorted({(s.c_in, s.side) for s in _positions(m)} | {(m.last_width, m.head_side)})


def graph_names(spec: ProfileSpec) -> list[str]:
    """The names of every graph `profile_graphs` writes for `spec` (the ones `profile_entries` reads)."""
    names = ["overhead"]
    for shape in spec.shapes():
        m = macro(shape)
        names += [stem_key(shape, m), head_key(shape, m), f"frame@{shape.width}"]
        names += [f"conv:{dims(c, side)}" for c, side in conv_shapes(m)]
        names += [name for name, _, _ in chains(m)]
    return list(dict.fromkeys(names))


class _After(nn.Module):
    """A 1×1 conv at `c` channels, then `body`."""

    def __init__(self, c: int, body: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.conv(x))


class _Side(nn.Module):
    """Blocks side by side on one input: one export for all of them."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(b(x) for b in self.blocks)


def block_graphs(spec: BlockSpec, folder: Path, ops: Sequence[str] = BLOCK_OPS) -> dict[str, onnx.ModelProto]:
    """op -> the ONNX graph the exporter writes for that block at `spec` (one export of the blocks side
    by side, cut into one graph per block with `onnx.utils.Extractor`)."""
    import onnx
    import onnx.utils

    from edgenas.export.onnx import export_onnx

    module = _Side([spec.block(int(op[1]), int(op[3])) for op in ops]).eval()
    tag = f"{spec.c_in}x{spec.side}-{spec.c_out}s{spec.stride}"
    path = export_onnx(module, (spec.c_in, spec.side, spec.side), folder / f"ops_{tag}.onnx", dynamic_batch=False)
    model = onnx.load(str(path))
    cut = onnx.utils.Extractor(model)
    x = model.graph.input[0].name
    return {op: cut.extract_model([x], [out.name]) for op, out in zip(ops, model.graph.output, strict=True)}


def chain_model(c: int, side: int, blocks: Sequence[onnx.ModelProto], seed: Sequence[object] = ()) -> onnx.ModelProto:
    """A graph of a 1×1 conv at (c, side, side) and then `blocks` (exported block graphs), each feeding the next.

    Each block's nodes are copied as the exporter wrote them; the copies after the first of a
    graph get their float weights shuffled (`seed` tags the draw), so that no two share weights
    and a chain of N copies reads N blocks' weights per run, as N blocks of a network do. The
    conv in front makes the first block read its input in the layout a block inside a network
    reads (NCHWc on x86), and is in every chain of a position, so that differences drop it.
    """
    import onnx
    from onnx import helper, numpy_helper

    rng = numpy_rng(0, "lut-mobile-chain", c, side, *seed)
    lead = (numpy_rng(0, "lut-mobile-lead", c, side).standard_normal((c, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
    inits = [numpy_helper.from_array(lead, "lead.weight")]
    nodes = [helper.make_node("Conv", ["input", "lead.weight"], ["lead"], name="lead", kernel_shape=[1, 1])]
    x, out_shape = "lead", [c, side, side]
    for i, block in enumerate(blocks):
        g = block.graph
        rename = {g.input[0].name: x}

        def name(t: str, i: int = i, rename: dict[str, str] = rename) -> str:
            return rename.get(t, f"b{i}/{t}") if t else t

        for init in g.initializer:
            values = numpy_helper.to_array(init)
            if i > 0 and values.dtype == np.float32 and values.size > 1:
                values = rng.permutation(values.ravel()).reshape(values.shape)
            inits.append(numpy_helper.from_array(values, name(init.name)))
        for node in g.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = f"b{i}/{node.name}"
            copy.input[:] = [name(t) for t in node.input]
            copy.output[:] = [name(t) for t in node.output]
            nodes.append(copy)
        x = name(g.output[0].name)
        out_shape = [d.dim_value for d in g.output[0].type.tensor_type.shape.dim][1:]
    model = onnx_model(nodes, inits, (c, side, side), x, out_shape)
    if blocks:
        del model.opset_import[:]
        model.opset_import.extend(blocks[0].opset_import)
    return model


def _layout(graph: Any) -> str:
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    return "nchwc" if nodes and all(n.domain == NCHWC_DOMAIN for n in nodes) else "nchw"


# --------------------------------------------------------------------------- profiling
def profile_spec(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    precision: str = "fp32",
    **_: Any,
) -> ProfileSpec:
    """The checked `ProfileSpec` of a profile of mobile networks of these stem widths at this input."""
    widths, _ = checked_profile_input(resolution, in_channels, num_classes, widths, example="--widths 16")
    return ProfileSpec("mobile", resolution, in_channels, num_classes, tuple(widths), precision=precision)


def profile_graphs(spec: ProfileSpec, folder: Path, *, bar: Any = None) -> dict[str, Path]:
    """Every graph a profile times, written to `folder`.

    Per width: the run overhead (an Identity graph), the stem (with the fixed first block), a 1×1
    conv alone at every block input shape (`conv:`), the head after such a conv, the cheapest
    network whole (`frame@W`), and per block position and op the chains of `chain_model`: at a
    position that chains (a stage's later blocks) 1 and `1 + CHAIN_EXTRA` copies, at a stage's
    first block the block then `CHAIN_EXTRA` copies of the stage's later block.
    """
    import onnx

    from edgenas.export.onnx import export_onnx

    files: dict[str, Path] = {}

    def add(gname: str, model: onnx.ModelProto) -> None:
        if gname not in files:
            files[gname] = folder / f"g{len(files)}.onnx"
            onnx.save(model, str(files[gname]))

    def export(gname: str, module: nn.Module, shp: tuple[int, int, int]) -> None:
        if gname not in files:
            path = folder / f"g{len(files)}.onnx"
            files[gname] = export_onnx(module.eval(), shp, path, dynamic_batch=False)

    add("overhead", identity_model((spec.in_channels, spec.resolution, spec.resolution)))
    shapes = spec.shapes()
    total = sum(3 + len(_positions(macro(shape))) for shape in shapes)
    task = bar.add_task("export blocks", total=total, status="") if bar is not None else None
    torch.manual_seed(0)
    exported: dict[BlockSpec, dict[str, onnx.ModelProto]] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-mobile-blocks-") as tmp:

        def graphs(spec: BlockSpec) -> dict[str, onnx.ModelProto]:
            if spec not in exported:
                exported[spec] = block_graphs(spec, Path(tmp))
                if task is not None:
                    bar.advance(task)
            return exported[spec]

        for shape in shapes:
            m = macro(shape)
            export(stem_key(shape, m), make_stem(shape, m), shape.input_shape)
            head = nn.Sequential(make_final_expand(m), MobileClassifier(m, shape.num_classes))
            export(head_key(shape, m), _After(m.last_width, head), (m.last_width, m.head_side, m.head_side))
            export(f"frame@{shape.width}", MobileNetwork(REFERENCE, shape), shape.input_shape)
            for c, side in conv_shapes(m):
                add(f"conv:{dims(c, side)}", chain_model(c, side, []))
            if task is not None:
                bar.advance(task, 3)
            for gname, op, specs in chains(m):
                if gname not in files:
                    blocks = [graphs(spec)[op] for spec in specs]
                    add(gname, chain_model(specs[0].c_in, specs[0].side, blocks, (gname,)))
    return files


def profile_fusion(spec: ProfileSpec, optimized: Callable[[str], onnx.GraphProto]) -> dict[str, str]:
    """Per block input shape, the layout of a 1×1 conv there, read off the optimised `conv:` graphs."""
    return {k: _layout(optimized(k)) for shape in spec.shapes() for k in fusion_keys(shape)}


def profile_entries(spec: ProfileSpec, ms: Mapping[str, float], fusion: Mapping[str, str]) -> dict[str, float]:
    """Entries from the timed graphs (`ms` by graph name).

    A block at a position that chains: the slope of its chains, `(#N - #1) / CHAIN_EXTRA`. A stage's
    first block: its chain (the block, then `CHAIN_EXTRA` later blocks of the same op) less the
    later block's `#N` chain, plus one later block's entry, plus the difference of the two chains'
    `conv:` graphs. Both N-block chains read N blocks' weights per run, so the first block is priced
    with its weights out of cache as the later blocks are (subtracting `CHAIN_EXTRA` slopes from
    its chain instead would take off the later blocks' difference from a lone, cached block too).
    The stem: its graph less the run overhead; the head: its graph less its `conv:`; the frame:
    the cheapest network less overhead, stem, head and its blocks' entries.
    """
    overhead = ms["overhead"]
    entries: dict[str, float] = {}
    for shape in spec.shapes():
        m = macro(shape)
        stem, head, frame = stem_key(shape, m), head_key(shape, m), frame_key(shape, m)
        entries[stem] = ms[stem] - overhead
        entries[head] = ms[head] - ms[f"conv:{dims(m.last_width, m.head_side)}"]
        n = 1 + CHAIN_EXTRA
        positions = _positions(m)
        for pos in filter(chainable, positions):
            for op in BLOCK_OPS:
                entries[block_key(op, pos)] = (ms[chain_name(op, pos, n)] - ms[chain_name(op, pos, 1)]) / CHAIN_EXTRA
        for pos in (p for p in positions if not chainable(p)):
            later = later_position(pos, m)
            # the conv in front of each chain: `conv:` graphs at the two chains' inputs
            convs = ms[f"conv:{dims(later.c_in, later.side)}"] - ms[f"conv:{dims(pos.c_in, pos.side)}"]
            for op in BLOCK_OPS:
                # the first block's chain less the later block's, whose blocks past the first are alike
                swap = ms[chain_name(op, pos, n)] - ms[chain_name(op, later, n)]
                entries[block_key(op, pos)] = swap + entries[block_key(op, later)] + convs
        parts = overhead + entries[stem] + entries[head]
        parts += _block_weights(entries, m)[np.arange(len(m.blocks)), _encode(REFERENCE)].sum()
        entries[frame] = ms[f"frame@{shape.width}"] - parts
    return entries


def profile_mobile(
    resolution: int,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    widths: Sequence[int] = (8, 16, 32),
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    precision: str = "fp32",
    quiet: bool = False,
    name: str = "",
    workdir: str | Path | None = None,
) -> LatencyTable:
    """Time every block shape of mobile networks of these stem widths at this input here.

    The graphs are `profile_graphs`' (blocks as chains of distinct copies, stem, head, the
    cheapest network, the run overhead), timed interleaved (`profile_here`); `profile_entries`
    turns the timings into entries. A profiling kit (`edgenas profile-device --kit`) carries the
    same graphs to the device. `precision="int8"` quantizes every graph first (`quantize_graphs`).
    """
    check_settings(threads, warmup, repeats)
    spec = profile_spec(
        resolution, in_channels=in_channels, num_classes=num_classes, widths=widths, precision=precision
    )
    return profile_here(spec, threads=threads, warmup=warmup, repeats=repeats, quiet=quiet, name=name, workdir=workdir)


profile = profile_mobile  # the `LatencyKernels` name


def _encode(arch: MobileArch) -> np.ndarray:
    from edgenas.spaces.mobile import MobileSpace

    return MobileSpace().encode(arch)


# --------------------------------------------------------------------------- checking and summary
def check_archs(n: int, seed: int) -> list[MobileArch]:
    """`n` random distinct mobile archs."""
    from edgenas.spaces.mobile import MobileSpace

    return MobileSpace().sample_distinct(n, numpy_rng(seed, "lut-check"))  # type: ignore[return-value]


def summary_rows(table: LatencyTable) -> list[tuple[object, ...]]:
    """Per width and block shape, the 9 block entries (µs)."""
    rows: list[tuple[object, ...]] = []
    for w in table.widths:
        shape = NetShape(w, 1, table.in_channels, table.resolution, table.num_classes)
        for spec in _positions(macro(shape)):
            cells = []
            for op in BLOCK_OPS:
                k = block_key(op, spec)
                cells.append(f"{table.entries[k] * 1e3:.1f}" if k in table.entries else "")
            where = f"stage {spec.stage + 1} {'first' if spec.index == 0 else 'rest'}"
            rows.append((w, where, f"{dims(spec.c_in, spec.side)} -> {spec.c_out}", *cells))
    return rows
