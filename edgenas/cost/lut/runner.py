"""Timing of ONNX graphs with onnxruntime: the loop every latency table is made with, and the kit's runner.

This file needs only Python 3.9+, numpy and onnxruntime: `edgenas profile-device --kit DIR`
copies it verbatim into the kit as `runner.py`, so the op graphs are timed on the target
device by the very code that times them in-process (`edgenas.cost.lut.timing` imports
`session_options` and `time_interleaved` from here). Run on the device:

    python runner.py [--threads T] [--warmup W] [--repeats R] [--out FILE]

It reads `kit.json` beside it, times every op graph interleaved block by block (warm-up,
then the lowest median of blocks of `BLOCK` runs), then the kit's whole networks the same
way, reads which ops onnxruntime fused (the node list of its optimised graphs) and writes
`<name>.timings.json`. Bring that file back and run `edgenas profile-device --import FILE`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping  # noqa: UP035 (the runner runs on Python 3.9)

import numpy as np

BLOCK = 20  # timed runs per block; graphs take turns block by block
RESULT_KIND = "edgenas-kit-timings"
RESULT_SCHEMA_VERSION = 1
KIT_KIND = "edgenas-latency-kit"
ORDER_SEED = 20190  # seeds the order graphs take turns in, round by round

Feed = tuple[Any, dict[str, np.ndarray]]  # a session and the seeded input it is run on


def session_options(threads: int) -> Any:
    """onnxruntime options for reproducible timing: one intra-op pool of `threads`, no inter-op
    parallelism, sequential execution, full graph optimisation, errors only in the log."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def time_interleaved(
    graphs: Mapping[str, Feed],
    *,
    warmup: int,
    repeats: int,
    rng: np.random.Generator | None = None,
    advance: Callable[[int], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per graph: `ms` (lowest block median) and `median_ms` (median of all timed runs).

    `warmup` untimed runs per graph, then `repeats` timed runs per graph in blocks of
    `BLOCK`; each round runs one block of every graph, in an order drawn from `rng` per
    round (default: seeded with `ORDER_SEED`). `advance(1)` is called after each round.
    """
    names = list(graphs)
    block = min(BLOCK, repeats)
    rng = rng if rng is not None else np.random.default_rng(ORDER_SEED)
    for name in names:
        sess, feed = graphs[name]
        for _ in range(warmup):
            sess.run(None, feed)
    medians: dict[str, list[float]] = {n: [] for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for r in range(round_count(repeats)):
        runs = min(block, repeats - r * block)
        for i in rng.permutation(len(names)):
            name = names[int(i)]
            sess, feed = graphs[name]
            ts = []
            for _ in range(runs):
                start = clock()
                sess.run(None, feed)
                ts.append(clock() - start)
            medians[name].append(float(np.median(ts)))
            times[name].extend(ts)
        if advance is not None:
            advance(1)
    return {n: {"ms": min(medians[n]) * 1e3, "median_ms": float(np.median(times[n])) * 1e3} for n in names}


def round_count(repeats: int) -> int:
    """How many rounds `time_interleaved` makes of `repeats` runs (for progress bars)."""
    return math.ceil(repeats / min(BLOCK, repeats))


# --------------------------------------------------------------------------- optimised graphs
def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Any:
    """(field number, value) of one protobuf message; length-delimited values as memoryviews."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire} not expected in an ONNX file")
        yield field, value


def graph_summary(model_bytes: bytes) -> dict[str, Any]:
    """The node list of an ONNX model without the onnx package: per node its op type, domain,
    inputs, outputs and attribute names, and the graph's output names (ONNX's protobuf field
    numbers: ModelProto.graph 7; GraphProto.node 1, output 12; NodeProto input 1, output 2,
    op_type 4, attribute 5, domain 7; AttributeProto/ValueInfoProto name 1)."""
    graph = next(bytes(v) for f, v in _fields(memoryview(model_bytes)) if f == 7)
    nodes, outputs = [], []
    for field, value in _fields(memoryview(graph)):
        if field == 1:
            node: dict[str, Any] = {"op_type": "", "domain": "", "input": [], "output": [], "attribute": []}
            for f, v in _fields(value):
                if f == 1:
                    node["input"].append(bytes(v).decode())
                elif f == 2:
                    node["output"].append(bytes(v).decode())
                elif f == 4:
                    node["op_type"] = bytes(v).decode()
                elif f == 5:
                    node["attribute"].append(next(bytes(a).decode() for g, a in _fields(v) if g == 1))
                elif f == 7:
                    node["domain"] = bytes(v).decode()
            nodes.append(node)
        elif field == 12:
            outputs.append(next(bytes(v).decode() for f, v in _fields(value) if f == 1))
    return {"node": nodes, "output": outputs}


def optimized_summary(path: Path) -> dict[str, Any]:
    """`graph_summary` of the graph onnxruntime runs for `path` on this machine."""
    import onnxruntime as ort

    opts = session_options(1)
    with tempfile.TemporaryDirectory(prefix="edgenas-kit-") as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return graph_summary(Path(opts.optimized_model_filepath).read_bytes())


# --------------------------------------------------------------------------- the runner
def _session(path: Path, threads: int, seed: int) -> Feed:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    spec = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    feed = {spec.name: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
    sess.run(None, feed)
    return sess, feed


def processor() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_kit(
    kit_dir: Path, *, threads: int | None = None, warmup: int | None = None, repeats: int | None = None
) -> dict[str, Any]:
    """Time the kit in `kit_dir` on this machine; returns the timings document (see the module docstring)."""
    import onnxruntime as ort

    manifest = json.loads((kit_dir / "kit.json").read_text(encoding="utf-8"))
    if manifest.get("kind") != KIT_KIND:
        raise SystemExit(f"{kit_dir / 'kit.json'}: not an edgenas latency kit")
    settings = manifest["settings"]
    threads = threads or settings["threads"]
    warmup = settings["warmup"] if warmup is None else warmup
    repeats = repeats or settings["repeats"]
    start = time.perf_counter()

    def load(files: Mapping[str, str]) -> dict[str, Feed]:
        return {name: _session(kit_dir / f, threads, k) for k, (name, f) in enumerate(files.items())}

    def progress(label: str, total: int) -> Callable[[int], None]:
        done = [0]

        def advance(k: int) -> None:
            done[0] += k
            print(f"\r{label}: round {done[0]}/{total}", end="", file=sys.stderr, flush=True)

        return advance

    rounds = round_count(repeats)
    ops = time_interleaved(
        load(manifest["graphs"]), warmup=warmup, repeats=repeats, advance=progress("op graphs", rounds)
    )
    print(file=sys.stderr)
    nets = time_interleaved(
        load(manifest["nets"]), warmup=warmup, repeats=repeats, advance=progress("whole networks", rounds)
    )
    print(file=sys.stderr)
    optimized = {name: optimized_summary(kit_dir / manifest["graphs"][name]) for name in manifest["optimized"]}
    return {
        "kind": RESULT_KIND,
        "schema_version": RESULT_SCHEMA_VERSION,
        "kit": manifest,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "ms": {n: t["ms"] for n, t in ops.items()},
        "median_ms": {n: t["median_ms"] for n, t in ops.items()},
        "nets_ms": {n: t["ms"] for n, t in nets.items()},
        "nets_median_ms": {n: t["median_ms"] for n, t in nets.items()},
        "optimized": optimized,
        "onnxruntime": ort.__version__,
        "platform": platform.platform(),
        "processor": processor(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description="Time an edgenas latency kit on this device.")
    ap.add_argument("--kit", type=Path, default=here, help="the kit folder (default: this file's)")
    ap.add_argument("--threads", type=int, help="inference threads (default: the kit's)")
    ap.add_argument("--warmup", type=int, help="untimed runs per graph (default: the kit's)")
    ap.add_argument("--repeats", type=int, help="timed runs per graph (default: the kit's)")
    ap.add_argument("--out", type=Path, help="timings file (default: KIT/<name>.timings.json)")
    args = ap.parse_args(argv)
    for label, value in (("threads", args.threads), ("repeats", args.repeats)):
        if value is not None and value < 1:
            ap.error(f"--{label} must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        ap.error("--warmup must be >= 0")
    result = run_kit(args.kit, threads=args.threads, warmup=args.warmup, repeats=args.repeats)
    out = args.out or args.kit / f"{result['kit']['name'] or 'device'}.timings.json"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, out)
    print(f"{len(result['ms'])} op graphs and {len(result['nets_ms'])} networks timed in {result['seconds']:.0f}s; "
          f"bring back {out} and run: edgenas profile-device --import {out.name}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
