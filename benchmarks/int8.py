"""INT8 against float32 for every device of the README example (issue 19), 3 seeds.

Each device's arch is the one the README example's run selected
(`benchmarks/results/e2e_readme/results.json`). Every (device, seed) trains that arch
afresh with one protocol for all arms: the README's student protocol (Fashion-MNIST,
12,000-image subset, 10 % held out, 3 epochs, batch 128, lr 0.1 one-cycle) without its
distillation from the generic teacher (the teacher is not kept with the results; float32
and INT8 are the same trained network, so the comparison is paired by construction).
The network is then exported to float32 ONNX and quantized by `edgenas.export.int8`
(onnxruntime static QDQ, per-channel weights, MinMax calibration on 256 seeded training
images); both files are evaluated through onnxruntime on the 10,000 test images and
timed the device profile's way (its threads, warm-up and repeats). Budgets are checked
with each profile (`examples/devices/*.yaml`) on the float32 and on the INT8 model; the
mcu profile is INT8 with a flash budget only the INT8 file meets.

    OMP_NUM_THREADS=1 nice python benchmarks/int8.py            # ~15 min on 1 thread; resumes
    python benchmarks/int8.py --seeds 1 --epochs 1 --subset 2000  # a smoke run

Writes benchmarks/results/int8.json (means ± std over seeds, paired float32 − INT8
accuracy differences with a 95 % t interval; accuracies in points). Finished
(device, seed) arms are kept under --work and skipped on a rerun; an arm recorded before
the files were written deployment-compact (`edgenas.export.compact`) is exported, quantized,
evaluated and timed again from its kept model.pt, without retraining.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import onnxruntime
import torch

from edgenas.bench.stats import mean_std, paired_difference, t_interval
from edgenas.core.atomic import atomic_write_json
from edgenas.core.cost import Cost
from edgenas.core.device import load_device
from edgenas.core.seeding import derive_seed
from edgenas.core.space import NetShape
from edgenas.cost.lut.timing import processor
from edgenas.cost.static import StaticCosts
from edgenas.export.int8 import int8_export
from edgenas.export.quantize import DEFAULT_CALIBRATION_IMAGES
from edgenas.spaces import get_space
from edgenas.train.train_arch import train_arch
from edgenas.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parent
README_RUN = ROOT / "results" / "e2e_readme" / "results.json"
DEVICES = ROOT.parent / "examples" / "devices"


def arm(device: dict[str, Any], k: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one device's arch with seed k, export float32 + INT8, compare (cached in `work`)."""
    done = work / f"{device['device']}-s{k}.json"
    old = json.loads(done.read_text()) if done.is_file() else None
    if old is not None and "compact" in old["int8"]:
        return old
    profile = load_device(DEVICES / f"{device['device']}.yaml")
    seed = derive_seed(0, "bench-int8", k) % (2**31)
    run_dir = work / f"{device['device']}-s{k}"
    if old is not None and (run_dir / "model.pt").is_file():  # files made before compaction: re-export only
        trained = {"test_accuracy": old["torch_test_accuracy"], "train_seconds": old["train_seconds"]}
    else:
        cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.1, schedule="onecycle", seed=seed)
        resume = run_dir if (run_dir / "config.yaml").is_file() else None  # an interrupted arm goes on
        trained = train_arch(
            device["arch"],
            resume=resume,
            dataset="fashion-mnist",
            width=16,
            cells=1,
            train=cfg,
            subset=args.subset,
            val_fraction=0.1,
            run_dir=run_dir,
            quiet=True,
        )
    from edgenas.data import load_dataset
    from edgenas.train.model_file import load_model_file

    net, _blob = load_model_file(run_dir)
    data = load_dataset("fashion-mnist", seed=seed, val_fraction=0.1, subset=args.subset)
    spec = profile.latency
    res = int8_export(
        net,
        data,
        run_dir,
        calibration="minmax",
        calibration_images=DEFAULT_CALIBRATION_IMAGES,
        seed=k,
        threads=spec.threads,
        warmup=spec.warmup,
        repeats=spec.repeats,
    )
    checks = {}
    for precision in ("fp32", "int8"):
        deployed = Cost(**res[precision]["cost"])
        deployed_as = profile.model_copy(update={"precision": precision})
        checks[precision] = [
            {"budget": c.budget, "limit": c.limit, "value": c.value, "passed": c.passed}
            for c in deployed_as.check(deployed)
        ]
    out = {
        "device": device["device"],
        "seed_index": k,
        "train_seed": seed,
        "torch_test_accuracy": trained["test_accuracy"],
        "train_seconds": trained["train_seconds"],
        "int8": res,
        "checks": checks,
    }
    atomic_write_json(done, out)
    return out


def summarise(device: dict[str, Any], arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Means ± std over seeds and the paired float32 − INT8 accuracy difference (points)."""
    fp32 = [100 * a["int8"]["fp32"]["test_accuracy"] for a in arms]
    int8 = [100 * a["int8"]["int8"]["test_accuracy"] for a in arms]

    def ms(values: list[float]) -> dict[str, float | None]:
        m, s = mean_std(values)
        return {"mean": m, "std": s}

    diff = paired_difference(fp32, int8)
    drops = [f - i for f, i in zip(fp32, int8, strict=True)]
    lat = [a["int8"]["latency_ratio"] for a in arms]
    return {
        "device": device["device"],
        "arch": device["arch"],
        "fp32_accuracy_pct": ms(fp32),
        "int8_accuracy_pct": ms(int8),
        "accuracy_drop_points": {**diff.as_dict(), "std": mean_std(drops)[1]},
        "within_1_point": diff.estimate <= 1.0,
        "fp32_model_bytes": ms([a["int8"]["fp32"]["model_bytes"] for a in arms]),
        "int8_model_bytes": ms([a["int8"]["int8"]["model_bytes"] for a in arms]),
        "size_ratio": ms([a["int8"]["size_ratio"] for a in arms]),
        "fp32_uncompacted_model_bytes": ms([a["int8"]["fp32"]["uncompacted_model_bytes"] for a in arms]),
        "int8_uncompacted_model_bytes": ms([a["int8"]["int8"]["uncompacted_model_bytes"] for a in arms]),
        "uncompacted_size_ratio": ms([a["int8"]["uncompacted_size_ratio"] for a in arms]),
        "weight_bytes_ratio": ms([a["int8"]["weight_bytes_ratio"] for a in arms]),
        "size_ratio_at_least_3.5": min(a["int8"]["size_ratio"] for a in arms) >= 3.5,
        "fp32_peak_memory_bytes": arms[0]["int8"]["fp32"]["peak_memory_bytes"],
        "int8_peak_memory_bytes": arms[0]["int8"]["int8"]["peak_memory_bytes"],
        "fp32_latency_ms": ms([a["int8"]["fp32"]["latency_ms"] for a in arms]),
        "int8_latency_ms": ms([a["int8"]["int8"]["latency_ms"] for a in arms]),
        "latency_ratio_int8_over_fp32": {**ms(lat), "interval": t_interval(lat).as_dict()},
        "checks_by_seed": [a["checks"] for a in arms],
        "all_budgets_pass": {
            p: all(c["passed"] is not False for a in arms for c in a["checks"][p]) for p in ("fp32", "int8")
        },
        "train_seconds": [a["train_seconds"] for a in arms],
    }


def selection(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whether each selected arch is inside the budgets search and screen see, at the profile's precision
    and (for an INT8 profile) at float32: a device whose flash budget only INT8 meets admits it only at int8."""
    sp = get_space("nb201")
    static = StaticCosts(sp, NetShape(16, 1, 1, 28, 10))
    rows = []
    for d in devices:
        profile = load_device(DEVICES / f"{d['device']}.yaml")
        row = {"device": d["device"], "precision": profile.precision}
        for precision in sorted({profile.precision, "fp32"}):
            p = profile.model_copy(update={"precision": precision})
            row[f"inside_search_budgets_at_{precision}"] = static.fits(d["arch"], p.search_budgets())
            row[f"search_budgets_at_{precision}"] = dict(p.search_budgets().items())
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset", type=int, default=12000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgenas-bench-int8"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "int8.json")
    args = ap.parse_args()
    start = time.perf_counter()
    readme = json.loads(README_RUN.read_text())
    devices = [{"device": d["device"], "arch": d["arch"]} for d in readme["devices"]]
    args.work.mkdir(parents=True, exist_ok=True)
    per_device = []
    quantization: dict[str, Any] = {}
    for d in devices:
        arms = []
        for k in range(args.seeds):
            arms.append(arm(d, k, args, args.work))
            print(f"{d['device']} seed {k}: fp32 {arms[-1]['int8']['fp32']['test_accuracy']:.4f} "
                  f"int8 {arms[-1]['int8']['int8']['test_accuracy']:.4f} "
                  f"x{arms[-1]['int8']['size_ratio']:.2f} smaller, latency x{arms[-1]['int8']['latency_ratio']:.2f}",
                  flush=True)  # fmt: skip
        per_device.append(summarise(d, arms))
        quantization = {k: v for k, v in arms[0]["int8"]["quantization"].items() if k != "calibration_seed"}
    result = {
        "schema_version": 1,
        "benchmark": "int8",
        "archs_from": str(README_RUN.relative_to(ROOT.parent)),
        "protocol": {
            "train": {"epochs": args.epochs, "batch_size": 128, "lr": 0.1, "schedule": "onecycle", "kd": None},
            "dataset": {"name": "fashion-mnist", "subset": args.subset, "val_fraction": 0.1, "test_images": 10000},
            "width": 16,
            "cells": 1,
            "seeds": args.seeds,
            "quantization": quantization,
            "note": "the README run distils from a generic teacher; here every arm trains without KD "
            "(one protocol for all); float32 and INT8 are the same trained network per seed",
        },
        "units": "accuracies and their differences in points (1 = 1 % of the test set); bytes on disk "
        "(deployment-compact files; uncompacted_*: as the exporter and quantizer wrote them)",
        "machine": {
            "processor": processor(),
            "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "devices": per_device,
        "selection": selection(devices),
        "seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({d["device"]: {k: d[k] for k in ("accuracy_drop_points", "size_ratio")} for d in per_device}))


if __name__ == "__main__":
    main()
