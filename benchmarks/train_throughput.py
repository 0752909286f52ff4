"""Training throughput (images/s) of one NB201 arch at three widths, on real Fashion-MNIST batches.

Usage:  .venv/bin/python benchmarks/train_throughput.py [--widths 8 16 32] [--steps 30] [--device auto]
Writes benchmarks/results/train_throughput.json. Uses the same optimiser, schedule and
memory layout as `edgenas train`, so the figure predicts an epoch's time.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from edgenas.core.compute import resolve_device
from edgenas.core.space import NetShape
from edgenas.cost import count_flops, count_params
from edgenas.data import BatchLoader, load_dataset
from edgenas.spaces import get_space
from edgenas.train.trainer import TrainConfig, cross_entropy_loss, make_optimizer, make_scheduler

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
OUT = Path(__file__).parent / "results" / "train_throughput.json"


def measure(width: int, cells: int, data, device: torch.device, batch: int, steps: int, warmup: int) -> dict:
    space = get_space("nb201")
    shape = NetShape.for_data(data.info, width, cells)
    torch.manual_seed(0)
    model = space.build(space.parse(ARCH), shape).to(device)
    channels_last = device.type == "cpu"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, batch_size=batch)
    loader = BatchLoader(data.train, batch, shuffle=True, drop_last=True)
    opt, loss_fn = make_optimizer(model, cfg), cross_entropy_loss(0.0)
    sched = make_scheduler(opt, cfg, len(loader))
    model.train()
    times = []
    for i, (x, y) in enumerate(loader):
        if i == warmup + steps:
            break
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = loss_fn(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    total = sum(times)
    return {
        "width": width,
        "cells": cells,
        "batch": batch,
        "steps": len(times),
        "images_per_s": round(batch * len(times) / total, 1),
        "median_step_ms": round(sorted(times)[len(times) // 2] * 1e3, 2),
        "params": count_params(model),
        "flops_per_image": count_flops(model, shape.input_shape),
        "epoch_seconds_estimate": round(len(data.train) / (batch * len(times) / total), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, seed=0)
    rows = [measure(w, args.cells, data, device, args.batch, args.steps, args.warmup) for w in args.widths]
    result = {
        "schema_version": 1,
        "benchmark": "train_throughput",
        "arch": ARCH,
        "dataset": args.dataset,
        "device": str(device),
        "device_name": torch.cuda.get_device_name()
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(
            f"width {r['width']:3d}: {r['images_per_s']:8.1f} img/s  (step {r['median_step_ms']} ms, "
            f"~{r['epoch_seconds_estimate']} s/epoch, {r['params']} params, {r['flops_per_image'] / 1e6:.1f} MFLOPs)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
