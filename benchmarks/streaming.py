"""Streaming vs in-memory training (issue 20): one epoch on a 60k-image PNG folder at 64×64.

Usage:  .venv/bin/python benchmarks/streaming.py [--folder /tmp/edgenas-fmnist64] [--threads 1]
        [--modes memory stream0 stream1] [--repeats 2] [--width 8] [--subset N]

1. Writes Fashion-MNIST's 60,000 training images (IDX under /usr/share/datasets/fashion-mnist)
   as a class-per-folder PNG dataset, resized to 64×64 with PIL's bilinear filter (skipped
   when the folder is already complete; nothing is committed).
2. For each mode, in a fresh child process (so peak RSS is that mode's alone): load the
   folder (`in_memory=True`, or streaming with 0 or 1 decoding workers), then train one
   epoch of an NB201 network with `Trainer` (the path `edgenas train` takes), at a fixed
   torch thread count. Images/s is the epoch's (loading excluded; it is reported apart);
   peak RSS is the child's high-water mark, plus its decoding workers' for streaming.
   Images per CPU-second (training process plus decoding workers) is reported too: on a
   machine shared with other jobs it moves much less than wall-clock images/s.
3. `--repeats R` runs the modes interleaved R times (m, s0, s1, m, s0, s1, ...), so a change
   in the machine's load hits every mode alike; the summary takes each mode's median.
Writes benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "streaming.json"
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
SIDE = 64
MODES = {"memory": (True, 0), "stream0": (False, 0), "stream1": (False, 1)}


def write_folder(root: Path, side: int = SIDE) -> dict:
    """Fashion-MNIST train images as `root/<class>/<index>.png` at side×side; returns what it did."""
    import numpy as np
    from PIL import Image

    from edgenas.data.datasets import DEFAULT_DIRS, FASHION_MNIST_CLASSES
    from edgenas.data.idx import load_idx_dataset

    done = root / ".complete"
    if done.is_file():
        return {"written": False, "images": int(done.read_text())}
    x, y, _, _ = load_idx_dataset(DEFAULT_DIRS["fashion-mnist"], "fashion-mnist", num_classes=10)
    t0 = time.perf_counter()
    names = [c.replace("/", "-") for c in FASHION_MNIST_CLASSES]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(len(y)):
        im = Image.fromarray(np.asarray(x[i])).resize((side, side), Image.Resampling.BILINEAR)
        im.save(root / names[y[i]] / f"{i:05d}.png")
    done.write_text(str(len(y)))
    return {"written": True, "images": len(y), "seconds": round(time.perf_counter() - t0, 1)}


def child(mode: str, folder: str, threads: int, width: int, subset: int | None, batch: int) -> dict:
    """One mode, measured in this (fresh) process."""
    import torch

    from edgenas.core.space import NetShape
    from edgenas.data import load_dataset
    from edgenas.spaces import get_space
    from edgenas.train.trainer import TrainConfig, Trainer

    torch.set_num_threads(threads)
    in_memory, workers = MODES[mode]
    t0, c0 = time.perf_counter(), time.process_time()
    data = load_dataset("folder", folder, seed=0, val_fraction=0.1, subset=subset, in_memory=in_memory, workers=workers)
    load_s = time.perf_counter() - t0
    rss_after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    space = get_space("nb201")
    torch.manual_seed(0)
    model = space.build(space.parse(ARCH), NetShape.for_data(data.info, width, 1))
    cfg = TrainConfig(epochs=1, batch_size=batch, seed=0)
    trainer = Trainer(model, data, cfg, torch.device("cpu"), quiet=True)
    trainer.hooks.evaluate = lambda _trainer: {}  # time the training epoch alone
    c1 = time.process_time()
    trainer.train_epochs()
    own_cpu = time.process_time() - c1
    rec = trainer.history[0]
    workers_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "mode": mode,
        "in_memory": in_memory,
        "decode_workers": workers,
        "train_images": len(data.train),
        "images_per_s": rec["images_per_s"],
        "epoch_seconds": rec["seconds"],
        "train_loss": rec["train_loss"],
        "load_seconds": round(load_s, 1),
        "load_cpu_seconds": round(c1 - c0, 1),
        "epoch_cpu_seconds_main": round(own_cpu, 1),
        "epoch_cpu_seconds_workers": round(workers_usage.ru_utime + workers_usage.ru_stime, 1),
        "peak_rss_bytes_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_bytes_after_load": rss_after_load,
        "peak_rss_bytes_workers_max": workers_usage.ru_maxrss * 1024,
        "skipped_images": getattr(trainer.train_batches, "skipped", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/edgenas-fmnist64"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process (1)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds of all modes (1)")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--subset", type=int, help="training pool size (default: the whole folder's)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, str(args.folder), args.threads, args.width, args.subset, args.batch)))
        return
    folder = write_folder(args.folder)
    runs = []
    for round_ in range(args.repeats):
        for mode in args.modes:
            cmd = [sys.executable, __file__, "--child", mode, "--folder", str(args.folder)]
            cmd += ["--threads", str(args.threads), "--width", str(args.width), "--batch", str(args.batch)]
            if args.subset:
                cmd += ["--subset", str(args.subset)]
            load_before = os.getloadavg()
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            cpu = result["epoch_cpu_seconds_main"] + result["epoch_cpu_seconds_workers"]
            result["images_per_cpu_s"] = round(result["train_images"] / max(cpu, 1e-9), 1)
            result["peak_rss_bytes_total"] = result["peak_rss_bytes_main"] + result["peak_rss_bytes_workers_max"]
            result["round"] = round_
            result["loadavg_before"] = [round(v, 2) for v in load_before]
            result["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
            runs.append(result)
            print(json.dumps(result), flush=True)
    summary: dict = {}
    for mode in args.modes:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "images_per_s_median": statistics.median(r["images_per_s"] for r in mine),
            "images_per_cpu_s_median": statistics.median(r["images_per_cpu_s"] for r in mine),
            "peak_rss_gib_max": round(max(r["peak_rss_bytes_total"] for r in mine) / 2**30, 3),
        }
    if "memory" in summary:
        base = summary["memory"]
        for mode in ("stream0", "stream1"):
            if mode in summary:
                for key in ("images_per_s_median", "images_per_cpu_s_median"):
                    ratio = summary[mode][key] / base[key]
                    summary[mode][f"{key.removesuffix('_median')}_vs_memory"] = round(ratio, 3)
    report = {
        "schema_version": 1,
        "what": "one training epoch, NB201 cell, streaming vs in-memory, same PNG folder and splits",
        "dataset": {"source": "fashion-mnist train (IDX)", "images": folder["images"], "side": SIDE, **folder},
        "arch": ARCH,
        "width": args.width,
        "cells": 1,
        "batch": args.batch,
        "torch_threads": args.threads,
        "repeats": args.repeats,
        "nice": os.nice(0),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "gpu": "none available this session (CPU only)",
        "runs": runs,
        "summary": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
