"""The run's mobile-space model against stock MobileNetV3-Small and MobileNetV2 in the same budgets (issue 18).

Usage:  .venv/bin/python benchmarks/mobile_vs_stock.py [--config examples/fashion_mobile.yaml]
        [--seeds 3] [--sample 2000] [--families mbv3-small,mbv2] [--work DIR] [--out FILE]
        [--threads 1] [--quiet]

1. `edgenas run CONFIG` into WORK/run (resumed when rerun).
2. `edgenas bench e2e WORK/run --seeds S --sample N`: per device the run's pick, the
   largest-FLOPs mobile arch inside every budget and a random one, each trained over S seeds
   with the run's student protocol (distilled from the run's teacher); resumable.
3. Per device and stock family: the largest width multiplier on a 0.05 grid whose exact cost
   (latency measured the profile's way) meets every budget (`edgenas baseline`), trained
   over the same S training seeds with the same protocol (`cfg.train`, the same data, KD from
   the same teacher). Each finished training is kept in WORK/stock.json, so a rerun continues.
4. Per device: mean ± std of every arm, pick − each stock network and pick − largest paired
   over the seeds (95% t intervals), and whether the pick beats the better stock network by
   ≥ 1.0 point at equal or lower latency (the issue's goal, reported either way).

Writes benchmarks/results/mobile_vs_stock.json. Not run in CI; a tiny setting (digits, one
device, 2 seeds) is what `--config` with a small config checks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edgenas.bench.e2e import bench_e2e, train_seed
from edgenas.bench.stats import mean_std, paired_difference
from edgenas.core.atomic import atomic_write_json
from edgenas.pipeline.baseline import run_baseline
from edgenas.pipeline.config import load_run_config
from edgenas.pipeline.run import run_pipeline
from edgenas.train.trainer import TrainConfig

GOAL_POINTS = 1.0


def _interval(iv: Any) -> dict[str, Any]:
    d = iv.as_dict()
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("examples/fashion_mobile.yaml"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="mobile archs costed for the largest/random arms")
    ap.add_argument("--families", default="mbv3-small,mbv2")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/results/mobile_vs_stock"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/mobile_vs_stock.json"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    start = time.perf_counter()
    cfg, profiles = load_run_config(args.config)
    run_dir = args.work / "run"
    if (run_dir / "results.json").is_file():
        print(f"run: {run_dir} (finished)")
    elif run_dir.is_dir():
        run_pipeline(args.config, resume=run_dir, threads=args.threads, quiet=args.quiet)
    else:
        run_pipeline(args.config, run_dir=run_dir, threads=args.threads, quiet=args.quiet)
    e2e = bench_e2e(run_dir, seeds=args.seeds, sample=args.sample, threads=args.threads, quiet=args.quiet)
    protocol = e2e["protocol"]
    data = protocol["dataset"]  # the run's students' data: name, data_dir, subset, val_fraction, resize
    state_file = args.work / "stock.json"
    done: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
    families = [f for f in args.families.split(",") if f]
    for p in profiles:
        for family in families:
            for k in range(args.seeds):
                key = f"{p.name}/{family}/seed{k}"
                if key in done:
                    continue
                train = TrainConfig(**{**protocol["train"], "seed": train_seed(cfg.seed, k)})
                res = run_baseline(
                    family,
                    p,
                    dataset=data["name"],
                    data_dir=data.get("data_dir"),
                    subset=data.get("subset"),
                    val_fraction=data.get("val_fraction", 0.1),
                    resize=data.get("resize"),
                    train=train,
                    teacher=protocol["teacher"],
                    kd=protocol["kd"],
                    run_dir=args.work / "stock" / f"{p.name}-{family}-seed{k}",
                    quiet=args.quiet,
                )
                done[key] = {k2: res[k2] for k2 in ("arch", "multiplier", "cost", "fits", "test_accuracy")}
                atomic_write_json(state_file, done)
    devices = []
    for dev in e2e["devices"]:
        name = dev["device"]
        pick = dev["arms"]["pick"]["test_accuracy"]
        arms: dict[str, Any] = {a: v for a, v in dev["arms"].items()}
        diffs = dict(dev["differences"])  # pick-largest, pick-random
        for family in families:
            runs = [done[f"{name}/{family}/seed{k}"] for k in range(args.seeds)]
            accs = [r["test_accuracy"] for r in runs]
            mean, std = mean_std(accs)
            arms[family] = {"arch": runs[0]["arch"], "cost": runs[0]["cost"], "test_accuracy": accs, "mean": mean,
                            "std": std, "n": len(accs)}  # fmt: skip
            diffs[f"pick-{family}"] = _interval(paired_difference(pick, accs))
        better = max(families, key=lambda f: arms[f]["mean"])
        pick_lat = (arms["pick"].get("cost") or {}).get("latency_ms")
        stock_lat = arms[better]["cost"].get("latency_ms")
        gain = 100 * (arms["pick"]["mean"] - arms[better]["mean"])
        devices.append(
            {
                "device": name,
                "budgets": dev["budgets"],
                "arms": arms,
                "differences": diffs,
                "better_stock": better,
                "goal": {
                    "points_over_better_stock": gain,
                    "latency_not_higher": None if pick_lat is None or stock_lat is None else pick_lat <= stock_lat,
                    "met": gain >= GOAL_POINTS and (pick_lat is None or stock_lat is None or pick_lat <= stock_lat),
                },
            }
        )
    out = {
        "schema_version": 1,
        "benchmark": "mobile vs stock MobileNets (issue 18)",
        "config": str(args.config),
        "seeds": args.seeds,
        "train_seeds": e2e["train_seeds"],
        "protocol": protocol,
        "families": families,
        "devices": devices,
        "goal": f">= {GOAL_POINTS} point over the better stock network at equal or lower latency on >= 2 of 3 devices",
        "devices_meeting_goal": sum(d["goal"]["met"] for d in devices),
        "units": "test_accuracy, mean, std and the differences are fractions of the test set (0.01 = 1 point)",
        "seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(args.out, out)
    for d in devices:
        print(d["device"], {a: round(v["mean"], 4) for a, v in d["arms"].items()}, "goal met:", d["goal"]["met"])
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
