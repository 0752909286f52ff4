"""Screening speed (issue 16): AZ scoring per arch against the AZ-NAS authors' code, and the README
example's screen stage, each before and after the screen's speed-ups.

Usage:
  .venv/bin/python benchmarks/screen_speed.py --baseline ff09f84 \
      --aznas /work/.mirror/cvlab-yonsei+AZ-NAS/repo [--archs 50] [--rounds 2] [--stage-rounds 2]

- `--baseline REV`: the commit whose `edgenas/` is "before" (extracted with `git archive`).
- `--aznas PATH`: a checkout of github.com/cvlab-yonsei/AZ-NAS, or its bare git directory (its
  `NB201/` is extracted to a temp folder). Nothing of it is copied into edgenas; it is imported
  from there: `NB201/ZeroShotProxy/compute_az_nas_score.py` and the network it scores,
  `NB201/custom/tss_model.py: TinyNetwork` (xautodl cells). Two adaptations, both outside
  their code: `compute_nas_score` calls `model.cuda()` unconditionally, so `nn.Module.cuda` is
  an identity while it runs (gpu=None keeps everything on the CPU); and their stem is fixed at
  3 input channels, so it is replaced by the same conv with 1 (Fashion-MNIST). The input is our
  N(0,1) batch, passed as their `trainloader`. Their complexity s^C is read from the NATS-Bench
  table, not computed, so their timing has no FLOPs count (ours does, from position costs).

Every measurement runs in a worker process pinned to one core (`taskset -c 0`, one torch
thread), variants interleaved and rotated (A, B, C, B, C, A, ...), so load from other jobs on
this shared machine lands on all of them alike; medians are reported with `uptime` before and after.
Part 1 (`az`): the same seeded NB201 archs at the README shape (C=16, N=1, 1x28x28, 10 classes,
batch 64): per-arch seconds of (new) `score_arch` (build + the four AZ proxies), (old) the
baseline's `score_arch`, (authors) building their TinyNetwork + `compute_nas_score`; and the
scoring alone on an already built network (the authors' own timing protocol). New and old AZ
values must agree to 1e-6 relative. Part 2 (`stage`): the pipeline's screen job on
`examples/fashion_three_devices.yaml` (300 archs, 3 devices), before vs after; the picks of every
device must be identical. Writes benchmarks/results/screen_speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "screen_speed.json"
CONFIG = REPO / "examples" / "fashion_three_devices.yaml"
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- workers
def _shape():
    from edgenas.core.space import NetShape

    return NetShape(width=16, cells=1, in_channels=1, resolution=28, num_classes=10)


def _noise(batch: int, shape):
    import torch

    from edgenas.core.seeding import torch_generator

    return torch.randn((batch, *shape.input_shape), generator=torch_generator(0, "proxy", "input"))


@contextlib.contextmanager
def _cuda_is_identity():
    """Their `compute_nas_score` calls `model.cuda()`; on a CPU-only machine that must be a no-op."""
    from torch import nn

    saved = nn.Module.cuda
    nn.Module.cuda = lambda self, device=None: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.cuda = saved  # type: ignore[method-assign]


def _passes_s(forward, x, ones: dict) -> float:
    """Seconds of the network work any exact AZ implementation must do: one forward keeping the block
    outputs in the graph, and the chain of block VJPs (fixed ±1 cotangents; no draws, Grams or SVDs)."""
    import torch

    x = x.detach().requires_grad_(True)
    t0 = time.perf_counter()
    feats = forward(x)
    for i in range(len(feats) - 1, 0, -1):
        out, inp = feats[i], feats[i - 1]
        if out.requires_grad and inp.requires_grad:
            v = ones.setdefault(tuple(out.shape), torch.ones_like(out))
            torch.autograd.grad(out, inp, grad_outputs=v, allow_unused=True)
    return time.perf_counter() - t0


def _block_outputs(net):
    """`net.forward_features` less the logits."""
    return lambda x: net.forward_features(x)[1]


def worker_az(variant: str, archs: list[str], batch: int, aznas: str | None) -> list[dict[str, Any]]:
    """Per arch: seconds to build + score, seconds to score a built network, the AZ values, and the
    seconds of the network's forward + VJP chain alone (`passes_s`)."""
    import torch

    from edgenas.proxies import AZ_PROXIES
    from edgenas.proxies.pool import score_arch
    from edgenas.proxies.score import score_network
    from edgenas.spaces import get_space

    torch.set_num_threads(1)
    space, shape, names = get_space("nb201"), _shape(), list(AZ_PROXIES)
    rows: list[dict[str, Any]] = []
    ones: dict = {}
    if variant in ("new", "old"):
        score_arch(space, archs[0], shape, names, batch=batch)  # warm-up (first-call allocations)
        for arch in archs:
            t0 = time.perf_counter()
            values, _ = score_arch(space, arch, shape, names, batch=batch, seed=0)
            full = time.perf_counter() - t0
            parsed = space.parse(arch)
            net = space.build(parsed, shape)
            t0 = time.perf_counter()
            if variant == "new":  # as the screen scores: no copy, FLOPs from the position costs
                from edgenas.cost.static import additive_cost

                flops = additive_cost(space, parsed, "flops", shape)
                score_network(net, shape.input_shape, names, batch=batch, seed=0, copy_model=False, flops=flops)
            else:
                score_network(net, shape.input_shape, names, batch=batch, seed=0)
            alone = time.perf_counter() - t0
            if variant == "new":
                from edgenas.core.seeding import torch_generator
                from edgenas.proxies.context import reinit_

                reinit_(net, torch_generator(0, "proxy", "reinit"))
                passes = _passes_s(_block_outputs(net.train()), _noise(batch, shape), ones)
            else:
                passes = None
            row = {"arch": arch, "build_and_score_s": full, "score_s": alone, "values": values, "passes_s": passes}
            rows.append(row)
        return rows
    # the authors' code
    sys.path.insert(0, aznas)
    from custom.tss_model import TinyNetwork  # type: ignore[import-not-found]
    from torch import nn
    from xautodl.models.cell_searchs.genotypes import Structure  # type: ignore[import-not-found]
    from ZeroShotProxy import compute_az_nas_score  # type: ignore[import-not-found]

    x = _noise(batch, shape)

    def build(arch: str) -> nn.Module:
        net = TinyNetwork(shape.width, shape.cells, Structure.str2structure(arch), shape.num_classes)
        net.stem[0] = nn.Conv2d(shape.in_channels, shape.width, kernel_size=3, padding=1, bias=False)
        return net.train()

    def score(net: nn.Module) -> dict[str, float]:
        with _cuda_is_identity():
            return compute_az_nas_score.compute_nas_score(
                net, gpu=None, trainloader=[(x, None)], resolution=shape.resolution, batch_size=batch
            )

    score(build(archs[0]))
    for i, arch in enumerate(archs):
        torch.manual_seed(i)
        t0 = time.perf_counter()
        info = score(build(arch))
        full = time.perf_counter() - t0
        net = build(arch)
        t0 = time.perf_counter()
        score(net)
        alone = time.perf_counter() - t0
        compute_az_nas_score.init_model(net, "kaiming_norm_fanin")
        passes = _passes_s(net.train().extract_cell_features, x, ones)
        values = {f"az_{k}": float(v) for k, v in info.items()}
        row = {"arch": arch, "build_and_score_s": full, "score_s": alone, "values": values, "passes_s": passes}
        rows.append(row)
    return rows


def worker_stage(config: str, n: int, timing_exporter: str | None) -> dict[str, Any]:
    """The pipeline's screen job for the config's devices (as `edgenas run` runs it), timed by part;
    `timing_exporter` overrides the exporter tried first for latency files (new code only)."""
    import torch

    import edgenas.cost.measure as measure_mod
    import edgenas.search.screen as screen_mod

    if timing_exporter:
        measure_mod.TIMING_EXPORTER = timing_exporter
    from edgenas.pipeline.config import load_run_config
    from edgenas.pipeline.jobs import screen_job

    torch.set_num_threads(1)
    parts = {"proxies_s": 0.0, "latency_s": 0.0}

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[key] += time.perf_counter() - t0

        return wrapper

    screen_mod.score_arch = timed(screen_mod.score_arch, "proxies_s")
    screen_mod.first_fitting = timed(screen_mod.first_fitting, "latency_s")
    cfg, profiles = load_run_config(config)
    d = cfg.dataset
    dataset = {
        "name": d.name,
        "data_dir": d.data_dir,
        "subset": d.subset,
        "val_fraction": d.val_fraction,
        "resize": d.resize,
    }
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = screen_job(
            folder=tmp,
            profiles=[p.model_dump(mode="json") for p in profiles],
            dataset=dataset,
            space=cfg.space.model_dump(),
            screen={**cfg.screen.model_dump(), "n": n},
            seed=cfg.seed,
            compute="cpu",
        )
        seconds = time.perf_counter() - t0
    searched = sum(v["seconds"] for v in res.values())
    return {
        "seconds": seconds,
        **parts,
        # run_screen's search_seconds = costing + proxies; costing is what is left of it
        "costing_s": searched - parts["proxies_s"],
        "picks": {k: v["ranked"] for k, v in res.items()},
        "latency_ms": {k: [c["latency_ms"] for c in v["chosen"]] for k, v in res.items()},
        "in_budget": {k: v["in_budget"] for k, v in res.items()},
    }


def worker_export(archs: list[str], rounds: int) -> list[dict[str, Any]]:
    """Per arch: seconds to export the batch-1 timing file with each exporter, onnxruntime's optimised
    graph of each (node types compared), and the median latency of each file (1 thread, interleaved)."""
    import logging
    from collections import Counter

    import onnx
    import onnxruntime as ort
    import torch

    from edgenas.cost.latency import measure_onnx_latency
    from edgenas.export.onnx import export_onnx
    from edgenas.spaces import get_space

    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    space, shape = get_space("nb201"), _shape()

    def optimised_nodes(path: Path) -> Counter:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(path) + ".opt"
        opts.log_severity_level = 3
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(str(path) + ".opt").graph.node)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            net = space.build(space.parse(arch), shape).eval()
            row: dict[str, Any] = {"arch": arch}
            files = {}
            for name in ("dynamo", "torchscript"):
                files[name] = Path(tmp) / f"{name}.onnx"
                t0 = time.perf_counter()
                export_onnx(net, shape.input_shape, files[name], dynamic_batch=False, prefer=name)
                row[f"export_{name}_s"] = time.perf_counter() - t0
            nodes = {name: optimised_nodes(f) for name, f in files.items()}
            row["optimised_only_dynamo"] = dict(nodes["dynamo"] - nodes["torchscript"])
            row["optimised_only_torchscript"] = dict(nodes["torchscript"] - nodes["dynamo"])
            lat: dict[str, list[float]] = {name: [] for name in files}
            for _ in range(rounds):
                for name, f in files.items():
                    stats = measure_onnx_latency(f, shape.input_shape, threads=1, warmup=10, repeats=100)
                    lat[name].append(stats.median_ms)
            for name, values in lat.items():
                row[f"latency_{name}_ms"] = statistics.median(values)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- driver
def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _extract(repo: Path, rev: str, paths: list[str], dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, *paths], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def _aznas_dir(path: Path, tmp: Path) -> Path:
    """The authors' NB201 folder: `path/NB201` of a checkout, or extracted from a bare git directory."""
    if (path / "NB201" / "ZeroShotProxy").is_dir():
        return path / "NB201"
    _extract(path, "HEAD", ["NB201"], tmp)
    return tmp / "NB201"


def _run_worker(src: Path, args: list[str]) -> Any:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = ["taskset", "-c", "0", sys.executable, str(Path(__file__).resolve()), *args]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([*cmd, "--worker-out", out.name], env=env, check=True, cwd=tempfile.gettempdir())
        return json.loads(Path(out.name).read_text())


def _rotated(variants: list[str], r: int) -> list[str]:
    """Round r starts with variant r mod k, so no variant always runs first (load drifts over time)."""
    k = r % len(variants)
    return variants[k:] + variants[:k]


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def _max_rel_diff(a: dict[str, float], b: dict[str, float]) -> float:
    worst = 0.0
    for k, v in a.items():
        w = b[k]
        if v == w:
            continue
        if math.isinf(v) or math.isinf(w):
            return math.inf
        worst = max(worst, abs(v - w) / max(abs(v), 1e-300))
    return worst


def _sample(n: int) -> list[str]:
    """The same seeded NB201 archs on every run."""
    from edgenas.core.seeding import numpy_rng
    from edgenas.spaces import get_space

    return [str(a) for a in get_space("nb201").sample_distinct(n, numpy_rng(0, "screen-speed"))]


def bench_az(srcs: dict[str, Path], aznas: Path, n: int, rounds: int, batch: int) -> dict[str, Any]:
    archs = _sample(n)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(archs, f)
    runs: dict[str, list[list[dict]]] = {"new": [], "old": [], "authors": []}
    load = [_uptime()]
    for r in range(rounds):
        for variant in _rotated(list(runs), r):
            src = srcs["old" if variant == "old" else "new"]
            extra = ["--aznas-dir", str(aznas)] if variant == "authors" else []
            runs[variant].append(
                _run_worker(
                    src, ["--worker", "az", "--variant", variant, "--archs-file", f.name, "--batch", str(batch), *extra]
                )
            )
            print(f"az round {r + 1}/{rounds} {variant} done", file=sys.stderr)
    load.append(_uptime())
    os.unlink(f.name)
    out: dict[str, Any] = {"archs": n, "rounds": rounds, "batch": batch, "uptime": load}
    for variant, rs in runs.items():
        keys = ("build_and_score_s", "score_s") + (("passes_s",) if variant != "old" else ())
        out[variant] = {key: _median_ms([row[key] for run in rs for row in run]) for key in keys}
        out[variant]["unit"] = "ms per arch, median over archs and rounds"
    out["passes_note"] = (
        "passes_s: the network's forward keeping block outputs + the chain of block VJPs alone, on the "
        "implementation's own network (the authors' computes every edge, none and dead ones too)"
    )
    worst = max(_max_rel_diff(o["values"], nw["values"]) for o, nw in zip(runs["old"][0], runs["new"][0], strict=True))
    assert worst <= 1e-6, f"new AZ values differ from the baseline's by {worst:.3g} relative"
    out["new_vs_old_max_rel_diff"] = worst
    for key in ("build_and_score_s", "score_s"):
        out[f"speedup_vs_old_{key[:-2]}"] = round(out["old"][key] / out["new"][key], 2)
        out[f"speedup_vs_authors_{key[:-2]}"] = round(out["authors"][key] / out["new"][key], 2)
    # the two implementations draw different weights and noise: agreement is a rank correlation
    from scipy.stats import kendalltau

    ours, theirs = runs["new"][0], runs["authors"][0]
    out["kendall_tau_new_vs_authors"] = {
        k: round(float(kendalltau([r["values"][k] for r in ours], [r["values"][k] for r in theirs]).statistic), 3)
        for k in ("az_expressivity", "az_progressivity", "az_trainability")
    }
    return out


def bench_stage(srcs: dict[str, Path], n: int, rounds: int) -> dict[str, Any]:
    """Old code, new code, and new code with the dynamo exporter for latency files (`new_dynamo_export`)."""
    runs: dict[str, list[dict]] = {"old": [], "new": [], "new_dynamo_export": []}
    load = [_uptime()]
    for r in range(rounds):
        for variant in _rotated(list(runs), r):
            args = ["--worker", "stage", "--n", str(n)]
            if variant == "new_dynamo_export":
                args += ["--timing-exporter", "dynamo"]
            runs[variant].append(_run_worker(srcs["old" if variant == "old" else "new"], args))
            print(f"stage round {r + 1}/{rounds} {variant}: {runs[variant][-1]['seconds']:.1f} s", file=sys.stderr)
    load.append(_uptime())
    picks = {json.dumps(run["picks"], sort_keys=True) for rs in runs.values() for run in rs}
    assert len(picks) == 1, f"the screen's picks differ between runs: {picks}"
    out: dict[str, Any] = {"config": str(CONFIG.relative_to(REPO)), "n": n, "rounds": rounds, "uptime": load}
    for variant, rs in runs.items():
        out[variant] = {
            key: round(statistics.median(run[key] for run in rs), 2)
            for key in ("seconds", "costing_s", "proxies_s", "latency_s")
        }
        out[variant]["runs_seconds"] = [round(run["seconds"], 2) for run in rs]
    out["speedup"] = round(out["old"]["seconds"] / out["new"]["seconds"], 2)
    out["speedup_with_dynamo_export"] = round(out["old"]["seconds"] / out["new_dynamo_export"]["seconds"], 2)
    out["speedup_per_round"] = [
        round(o["seconds"] / n["seconds"], 2) for o, n in zip(runs["old"], runs["new"], strict=True)
    ]
    out["picks"] = runs["new"][0]["picks"]
    out["in_budget"] = runs["new"][0]["in_budget"]
    out["pick_latency_ms"] = {variant: rs[0]["latency_ms"] for variant, rs in runs.items()}
    return out


def bench_export(src: Path, archs: list[str], rounds: int) -> dict[str, Any]:
    """Both exporters on the same archs: export seconds, optimised-graph differences, latency."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(archs, f)
    load = [_uptime()]
    rows = _run_worker(src, ["--worker", "export", "--archs-file", f.name, "--rounds", str(rounds)])
    load.append(_uptime())
    os.unlink(f.name)
    diffs = {json.dumps([r["optimised_only_dynamo"], r["optimised_only_torchscript"]], sort_keys=True) for r in rows}
    ratio = [r["latency_torchscript_ms"] / r["latency_dynamo_ms"] for r in rows]
    return {
        "archs": len(rows),
        "latency_rounds": rounds,
        "uptime": load,
        "export_dynamo_s_median": round(statistics.median(r["export_dynamo_s"] for r in rows), 3),
        "export_torchscript_s_median": round(statistics.median(r["export_torchscript_s"] for r in rows), 3),
        "optimised_graph_differences": [json.loads(d) for d in sorted(diffs)],
        "latency_ratio_torchscript_over_dynamo": {
            "median": round(statistics.median(ratio), 4),
            "min": round(min(ratio), 4),
            "max": round(max(ratio), 4),
        },
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="git revision whose edgenas/ is the 'before' code")
    ap.add_argument("--aznas", type=Path, help="AZ-NAS checkout or bare git directory")
    ap.add_argument("--archs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the AZ timing")
    ap.add_argument("--stage-rounds", type=int, default=2, help="interleaved rounds of the screen stage (0: skip)")
    ap.add_argument("--stage-n", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    # worker side
    ap.add_argument("--export-rounds", type=int, default=3, help="latency alternations per arch (0: skip)")
    ap.add_argument("--worker", choices=["az", "stage", "export"], help=argparse.SUPPRESS)
    ap.add_argument("--timing-exporter", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--archs-file", help=argparse.SUPPRESS)
    ap.add_argument("--aznas-dir", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "az":
        archs = json.loads(Path(args.archs_file).read_text())
        result = worker_az(args.variant, archs, args.batch, args.aznas_dir)
    elif args.worker == "stage":
        result = worker_stage(str(CONFIG), args.n, args.timing_exporter)
    elif args.worker == "export":
        result = worker_export(json.loads(Path(args.archs_file).read_text()), args.rounds)
    if args.worker:
        Path(args.worker_out).write_text(json.dumps(result))
        return
    if not args.baseline or not args.aznas:
        ap.error("--baseline and --aznas are required")
    sys.path.insert(0, str(REPO))  # the driver samples archs with this checkout's code
    import torch

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "old").mkdir()
        _extract(REPO, args.baseline, ["edgenas"], tmp / "old")
        srcs = {"old": tmp / "old", "new": REPO}
        aznas = _aznas_dir(args.aznas.resolve(), tmp)
        results: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "benchmark": "screen_speed",
            "baseline": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", args.baseline], capture_output=True, text=True
            ).stdout.strip(),
            "new": subprocess.run(
                ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "aznas_commit": subprocess.run(
                ["git", "-C", str(args.aznas), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
            "threads": 1,
            "pinning": "taskset -c 0",
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "shape": {"width": 16, "cells": 1, "input": [1, 28, 28], "classes": 10},
            "az": bench_az(srcs, aznas, args.archs, args.rounds, args.batch),
        }
        if args.stage_rounds:
            results["stage"] = bench_stage(srcs, args.stage_n, args.stage_rounds)
        if args.export_rounds:
            picks = results["stage"]["picks"] if args.stage_rounds else {}
            archs = [a for ranked in picks.values() for a in ranked] or _sample(10)
            results["export"] = bench_export(srcs["new"], archs, args.export_rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    summary = {k: v for k, v in results.items() if k in ("az", "stage", "export")}
    summary.get("export", {}).pop("rows", None)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
