"""CDD benchmark: teacher, CDD student, CDD without gradient resetting, static-KD student.

Writes `benchmarks/results/cdd.json` and prints a table. Every student gets the same data,
seed and epoch count (compression epochs + fine-tune epochs for CDD; the same total for
static KD); the static-KD student has exactly the CDD student's architecture. Run folders
go to `benchmarks/results/cdd/` (checkpoints and ONNX files are gitignored).

    OMP_NUM_THREADS=1 python benchmarks/cdd.py            # ~15 min on one free CPU core
    OMP_NUM_THREADS=1 python benchmarks/cdd.py --quick    # smoke run, ~3 min
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from edgenas.core.atomic import atomic_write_json
from edgenas.tasks.retrieval import run_retrieval

SCHEMA_VERSION = 1
OUT = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (not the reported numbers)")
    ap.add_argument("--budget", type=float, default=0.35)
    ap.add_argument("--fresh", action="store_true", help="delete earlier run folders first (else resume/reuse)")
    ap.add_argument("--subset", type=int, default=6000, help="training images (6000)")
    ap.add_argument("--teacher-epochs", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4, help="CDD compression-stage epochs, warm-up included (4)")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="CDD fine-tune epochs after pruning (1)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = {
        "dataset": "fashion-mnist",
        "protocol": "closed",  # the protocol of the published cdd.json (open-set: benchmarks/cdd_open.py)
        "subset": 2000 if args.quick else args.subset,
        "test_subset": 2000 if args.quick else None,
        "query_fraction": 0.1,
        "seed": 0,
        "batch_size": 128,
        "lr": 0.1,
    }
    teacher_epochs = 2 if args.quick else args.teacher_epochs
    epochs, finetune = (2, 1) if args.quick else (args.epochs, args.finetune_epochs)
    root = OUT / ("cdd-quick" if args.quick else "cdd")
    if args.fresh and root.exists():
        shutil.rmtree(root)

    def role(name: str, **kw: object) -> dict:
        run_dir = root / name
        start = time.perf_counter()
        if (run_dir / "results.json").is_file():  # done earlier: reuse
            res = json.loads((run_dir / "results.json").read_text())
        elif (run_dir / "config.yaml").is_file():
            res = run_retrieval(resume=run_dir, device="cpu", quiet=True)
        else:
            res = run_retrieval(run_dir=run_dir, device="cpu", quiet=True, **cfg, **kw)
        m = res["metrics"]
        row = {
            "model": name,
            "map": m["map"],
            "recall@1": m["recall@1"],
            "recall@5": m["recall@5"],
            "cmc_rank1": m["cmc_rank1"],
            "params": res["params"],
            "flops": res["flops"],
            "latency_median_ms": res["latency_ms"],
            "inner_widths": res["inner"],
            "stage_seconds": {k: v["seconds"] for k, v in res["stages"].items()},
            "wall_seconds": round(time.perf_counter() - start, 1),
            "run_dir": str(run_dir),
        }
        print(f"{name}: mAP {row['map']:.4f}  params {row['params']}  flops {row['flops']}", flush=True)
        return row

    teacher = role("teacher", role="teacher", epochs=teacher_epochs, finetune_epochs=0)
    t_file = str(root / "teacher" / "model.pt")
    common = {"teacher": t_file, "epochs": epochs, "finetune_epochs": finetune, "budget": args.budget}
    cdd = role("cdd", role="cdd", **common)
    no_reset = role("cdd-no-reset", role="cdd", reset=False, **common)
    static = role("static-kd", role="static", student_like=str(root / "cdd" / "model.pt"), **common)
    rows = [teacher, cdd, static, no_reset]
    for r in rows:
        r["params_reduction"] = 1 - r["params"] / teacher["params"]
        r["flops_reduction"] = 1 - r["flops"] / teacher["flops"]
        r["map_minus_teacher_points"] = (r["map"] - teacher["map"]) * 100
    goals = {
        "cdd_60pct_fewer_params": cdd["params_reduction"] >= 0.60,
        "cdd_60pct_fewer_flops": cdd["flops_reduction"] >= 0.60,
        "cdd_map_within_1_point_of_teacher": cdd["map_minus_teacher_points"] >= -1.0,
        "cdd_map_at_least_static_kd": cdd["map"] >= static["map"],
    }
    result = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "cdd",
        "config": {
            **cfg,
            "budget": args.budget,
            "budget_metric": "both",
            "teacher_epochs": teacher_epochs,
            "student_epochs": epochs,
            "finetune_epochs": finetune,
            "static_kd_epochs": epochs + finetune,
            "latency": "onnxruntime CPU, batch 1, 1 thread, median of 200 runs after 20 warm-up",
            "flops_convention": "torch.utils.flop_counter, multiply-add = 2 FLOPs",
            "metric": "cosine similarity; mAP over the whole gallery; recall@k = CMC rank-k",
            "torch": torch.__version__,
            "machine": platform.machine(),
            "threads": torch.get_num_threads(),
            "quick": args.quick,
        },
        "rows": rows,
        "goals": goals,
    }
    name = "cdd-quick.json" if args.quick else "cdd.json"
    atomic_write_json(OUT / name, result)
    print(f"{'model':<14}{'mAP %':>8}{'R@1 %':>8}{'R@5 %':>8}{'params':>10}{'MFLOPs':>9}", end="")
    print(f"{'lat ms':>8}{'-params':>9}{'-FLOPs':>8}")
    for r in rows:
        print(
            f"{r['model']:<14}{r['map'] * 100:>8.2f}{r['recall@1'] * 100:>8.2f}{r['recall@5'] * 100:>8.2f}"
            f"{r['params']:>10}{r['flops'] / 1e6:>9.2f}{r['latency_median_ms']:>8.3f}"
            f"{r['params_reduction'] * 100:>8.1f}%{r['flops_reduction'] * 100:>7.1f}%"
        )
    print("goals:", json.dumps(goals))


if __name__ == "__main__":
    main()
