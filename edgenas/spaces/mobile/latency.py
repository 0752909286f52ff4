"""LUT kernels of the mobile space: one table entry per block shape, as Once-for-All's latency tables.

OFA (Cai et al., ICLR 2020, `latency_lookup_table.py`) and ProxylessNAS price a MobileNet-style
network as the sum of its blocks' latencies, each block keyed by its shape: here
`mb_k5e4/s2:24x28x28->40 relu+se` (kernel, expansion, stride, input C×H×W, output width,
activation, SE). What onnxruntime fuses inside a block (BN into the convs, activations, the
residual add) is in its entry, because each entry is timed as a graph: a 1×1 conv at the
block's input width, then the block, less the same conv alone (so the block reads its input
in the layout a network hands it, and the layout conversion at the end is that of a map of
about the same size in both graphs). The stem (with the fixed first block) is timed alone,
the head (final expansion, pooling, feature mix, classifier) as a block is, the run overhead
as an Identity graph; what a whole network costs beyond those parts (layout conversions at
its ends, weights from cold caches) is the `frame:` entry, timed as DARTS' frame is: the
cheapest network whole (the `REFERENCE` on which `--check` reports drift) less its parts.
A prediction is overhead + stem + frame + Σ blocks + head, additive per position, so
`position_terms` is exact for the table. The fusion record holds, per block input shape,
whether onnxruntime ran a 1×1 conv there in the blocked NCHWc layout (informational: the
entries include it). What was tried and measured: docs/methods/lut.md.
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgenas.core.errors import ArchError, ConfigError
from edgenas.core.seeding import numpy_rng
from edgenas.core.space import NetShape
from edgenas.cost.lut.table import LatencyTable
from edgenas.cost.lut.timing import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    NCHWC_DOMAIN,
    Feed,
    check_settings,
    checked_profile_input,
    identity_model,
    optimized_graph,
    processor,
    round_count,
    session,
    time_interleaved,
)
from edgenas.spaces.mobile.arch import BLOCK_OPS, OPS, SKIP, MobileArch
from edgenas.spaces.mobile.network import (
    BlockSpec,
    Macro,
    MobileClassifier,
    MobileNetwork,
    macro,
    make_final_expand,
    make_stem,
)

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
class _After(nn.Module):
    """A 1×1 conv at `c` channels, then `body` (None: the conv alone)."""

    def __init__(self, c: int, body: nn.Module | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1, bias=False)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        return self.body(h) if self.body is not None else h


def _models(shape: NetShape) -> dict[str, tuple[nn.Module, tuple[int, int, int]]]:
    """Graph name -> (module, input shape): the stem, `conv:` bases, every block after its base, the head."""
    m = macro(shape)
    out: dict[str, tuple[nn.Module, tuple[int, int, int]]] = {
        stem_key(shape, m): (make_stem(shape, m), shape.input_shape)
    }
    for spec in _positions(m):
        shp = (spec.c_in, spec.side, spec.side)
        out.setdefault(f"conv:{dims(spec.c_in, spec.side)}", (_After(spec.c_in, None), shp))
        for op in BLOCK_OPS:
            out[block_key(op, spec)] = (_After(spec.c_in, spec.block(int(op[1]), int(op[3]))), shp)
    head = nn.Sequential(make_final_expand(m), MobileClassifier(m, shape.num_classes))
    shp = (m.last_width, m.head_side, m.head_side)
    out.setdefault(f"conv:{dims(m.last_width, m.head_side)}", (_After(m.last_width, None), shp))
    out[head_key(shape, m)] = (_After(m.last_width, head), shp)
    return out


def _layout(graph: Any) -> str:
    nodes = [n for n in graph.node if n.op_type == "Conv"]
    return "nchwc" if nodes and all(n.domain == NCHWC_DOMAIN for n in nodes) else "nchw"


# --------------------------------------------------------------------------- profiling
def profile_mobile(
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
    precision: str = "fp32",
) -> LatencyTable:
    """Time every block shape of mobile networks of these stem widths at this input here.

    float32 only: INT8 op graphs and the profiling kit are not built for this space yet
    (`precision="int8"` is a one-line `ConfigError`).

    Every graph (`_models`) is exported with the exporter `check_table` uses and timed
    interleaved; a block's entry is its graph less its `conv:` base, the stem's its graph less
    the run overhead, the head's as a block's.
    """
    import onnx
    import onnxruntime

    from edgenas.core.progress import progress_bar
    from edgenas.export.onnx import export_onnx

    if precision != "fp32":
        raise ConfigError(f"--precision {precision}: the mobile space's latency table is float32 only for now")
    check_settings(threads, warmup, repeats)
    widths, _ = checked_profile_input(resolution, in_channels, num_classes, widths, example="--widths 16")
    start = time.perf_counter()
    models: dict[str, tuple[nn.Module, tuple[int, int, int]]] = {}
    for w in widths:
        models.update(_models(NetShape(w, 1, in_channels, resolution, num_classes)))
    for w in widths:
        shape = NetShape(w, 1, in_channels, resolution, num_classes)
        models[f"frame@{w}"] = (MobileNetwork(REFERENCE, shape), shape.input_shape)
    graphs: dict[str, Feed] = {}
    fusion: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgenas-lut-", dir=workdir) as tmp, progress_bar(quiet) as bar:
        tmpdir = Path(tmp)
        path = tmpdir / "overhead.onnx"
        onnx.save(identity_model((in_channels, resolution, resolution)), str(path))
        graphs["overhead"] = session(path, threads)
        task = bar.add_task("export blocks", total=len(models), status="")
        torch.manual_seed(0)
        for i, (gname, (module, shp)) in enumerate(models.items()):
            path = export_onnx(module.eval(), shp, tmpdir / f"g{i}.onnx", dynamic_batch=False)
            graphs[gname] = session(path, threads)
            if gname.startswith("conv:"):
                fusion[gname] = _layout(optimized_graph(path))
            bar.advance(task)
        task = bar.add_task("time blocks", total=round_count(repeats), status=f"{len(graphs)} graphs, {repeats} runs")
        timed = time_interleaved(graphs, warmup=warmup, repeats=repeats, advance=lambda k: bar.advance(task, k))
    ms = {g: t["ms"] for g, t in timed.items()}
    entries: dict[str, float] = {}
    for w in widths:
        shape = NetShape(w, 1, in_channels, resolution, num_classes)
        m = macro(shape)
        entries[stem_key(shape, m)] = ms[stem_key(shape, m)] - ms["overhead"]
        for spec in _positions(m):
            base = ms[f"conv:{dims(spec.c_in, spec.side)}"]
            for op in BLOCK_OPS:
                entries[block_key(op, spec)] = ms[block_key(op, spec)] - base
        entries[head_key(shape, m)] = ms[head_key(shape, m)] - ms[f"conv:{dims(m.last_width, m.head_side)}"]
        # the cheapest network whole, less its overhead, stem, blocks and head
        weights = _block_weights(entries, m)
        parts = ms["overhead"] + entries[stem_key(shape, m)] + entries[head_key(shape, m)]
        parts += weights[np.arange(len(m.blocks)), _encode(REFERENCE)].sum()
        entries[frame_key(shape, m)] = ms[f"frame@{w}"] - parts
    return LatencyTable(
        space="mobile",
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        widths=widths,
        threads=threads,
        warmup=warmup,
        repeats=repeats,
        overhead_ms=ms["overhead"],
        entries=entries,
        fusion=fusion,
        name=name,
        onnxruntime=onnxruntime.__version__,
        platform=platform.platform(),
        processor=processor(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - start, 2),
        graphs=ms,
    )


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
