"""DNAD's Pareto set against random search and AZ screening at the same total compute.

Usage:  .venv/bin/python benchmarks/pareto.py [--teacher MODEL_FILE] [--truth FILE] [--az-pool 500]

1. One DNAD search (default SNPS options, Fashion-MNIST 10k subset, the ground-truth shape
   C=8 N=1) distilling from `--teacher` (trained here with `edgenas teacher` defaults at
   3 epochs when not given). Its harvested Pareto set is trained with the ground-truth
   protocol (`<truth>.protocol.json`, `edgenas.bench.truth`).
2. The compute of DNAD is T = search CPU seconds (epochs + snapshot evaluations) + the
   cost of training its Pareto set (see `train_cost_model`: recorded ground-truth seconds,
   or a seconds-vs-FLOPs fit, because this machine may be shared while the benchmark runs).
   The teacher is not counted: it is shared by every distillation of the project and
   exists before the search.
3. Random search at the same compute: archs drawn uniformly without replacement from the
   ground-truth file (160 uniform samples trained with the same protocol, so drawing from
   it *is* random search with its recorded costs), added while the summed training
   cost stays within T. Repeated over many draws (the spread is the point).
   A second rule is reported too: the same *number* of trained archs as DNAD, no credit
   for the search time.
4. AZ screening at the same compute: the ground-truth archs (the same uniform candidates
   random search draws from; or `--az-pool N` fresh uniform archs, trained here) scored
   with the AZ proxies (`edgenas.search.screen.run_screen`); ordered as the AZ-score-vs-FLOPs non-dominated
   archs (cheapest first) followed by the rest in AZ rank; trained in that order while
   screening CPU seconds + training cost stay within T. An arch already in the ground-truth
   file reuses its row (same protocol, same seed, deterministic on CPU) at its recorded cost.
5. Hypervolume (test accuracy ↑ vs FLOPs ↓) of each trained set with one reference point:
   FLOPs = 1.1 × the largest FLOPs of any arch in any set; accuracy 0 (and a second,
   fixed floor of 0.75, where differences are easier to see).

Writes benchmarks/results/pareto.json and pareto.png (+ the run folders under
benchmarks/results/pareto/). A finished search is reused when rerun.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgenas.bench.truth import TruthProtocol, read_truth
from edgenas.core.seeding import numpy_rng
from edgenas.report.tables import rows_table, stdout
from edgenas.search.pareto import hypervolume_2d, pareto_front

RESULTS = Path(__file__).parent / "results"
FOLDER = RESULTS / "pareto"
FLOOR = 0.75
RANDOM_DRAWS = 200


def train_rows(out: Path, protocol: TruthProtocol, archs: list[str]) -> dict[str, dict]:
    """Train the archs not yet in `out` with the ground-truth protocol, in this process, 1 thread.

    `build_truth` would start a worker pool with cpu_count // workers threads; the
    benchmark shares its machine, so it trains in-process on one thread (as the ground
    truth itself was) and appends the same rows to the same kind of file.
    """
    from edgenas.bench import truth as truth_mod
    from edgenas.core.jsonl import append_jsonl

    truth_mod._check_protocol(out, protocol)
    done = {r["arch"]: r for r in read_truth(out)} if out.is_file() else {}
    todo = [a for a in archs if a not in done]
    if todo:
        import torch

        torch.set_num_threads(1)
        for arch in todo:
            row = truth_mod.train_one(arch, protocol.model_dump())
            append_jsonl(out, row)
            done[arch] = row
    return done


def get_teacher(path: Path | None, protocol: TruthProtocol) -> Path:
    """The teacher model file: given, or one trained here once (kept in results/pareto/teacher)."""
    if path is not None:
        return path
    out = FOLDER / "teacher"
    if (out / "model.pt").is_file():
        return out / "model.pt"
    from edgenas.distill.teacher_net import TEACHER_ARCH
    from edgenas.train.train_arch import train_arch
    from edgenas.train.trainer import TrainConfig

    resume = out if out.exists() else None
    train_arch(TEACHER_ARCH, dataset=protocol.dataset, width=16, subset=protocol.subset, resume=resume,
               train=TrainConfig(epochs=3), device="cpu", run_dir=out, quiet=True, command="teacher")  # fmt: skip
    return out / "model.pt"


def run_dnad(teacher: Path, protocol: TruthProtocol, seed: int) -> dict:
    from edgenas.search.run import resume_search, search

    folder = FOLDER / f"dnad-seed{seed}"
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text()) | {"run_dir": str(folder)}
    if folder.exists():
        return resume_search(folder, compute="cpu", quiet=True)
    return search(method="dnad", teacher=teacher, dataset=protocol.dataset, subset=protocol.subset,
                  width=protocol.width, cells=protocol.cells, options={"seed": seed}, compute="cpu",
                  run_dir=folder, quiet=True)  # fmt: skip


def front_of(rows: list[dict]) -> list[dict]:
    idx = pareto_front([r["flops"] for r in rows], [r["test_accuracy"] for r in rows])
    return [rows[i] for i in idx]


def hv(rows: list[dict], ref_flops: float, floor: float) -> float:
    return hypervolume_2d([r["flops"] for r in rows], [r["test_accuracy"] for r in rows], ref_flops, floor)


def train_cost_model(truth: list[dict]):
    """Seconds to train an arch: its ground-truth row's if it has one, else a + b·FLOPs fitted on the truth.

    The ground truth was timed on a quiet machine (1 thread); archs trained here may share
    the CPU with other jobs, so their wall time is not comparable and the fit stands in.
    """
    recorded = {r["arch"]: r["seconds"] for r in truth}
    b, a = np.polyfit([r["flops"] for r in truth], [r["seconds"] for r in truth], 1)

    def cost(row: dict) -> float:
        return float(recorded.get(row["arch"], a + b * row["flops"]))

    cost.fit = {"intercept_s": float(a), "s_per_mflop": float(b * 1e6)}  # type: ignore[attr-defined]
    return cost


def within_budget(rows: list[dict], budget: float, cost, spent: float = 0.0) -> list[dict]:
    """Rows in order while the summed cost (after `spent`) stays within `budget`."""
    out = []
    for r in rows:
        if spent + cost(r) > budget:
            break
        spent += cost(r)
        out.append(r)
    return out


def az_order(candidates: list[dict]) -> list[str]:
    """AZ-score-vs-FLOPs non-dominated archs (cheapest first), then the rest by AZ rank."""
    idx = pareto_front([c["flops"] for c in candidates], [c["az_score"] for c in candidates])
    first = [candidates[i]["arch"] for i in idx]
    rest = [c["arch"] for c in sorted(candidates, key=lambda c: c["rank"]) if c["arch"] not in set(first)]
    return first + rest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, help="teacher model.pt (default: train one into results/pareto/teacher)")
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--az-pool", type=int, help="score N fresh uniform archs (default: the ground-truth archs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    protocol = TruthProtocol(
        **json.loads(args.truth.with_name(args.truth.name + ".protocol.json").read_text())["protocol"]
    )
    truth = read_truth(args.truth)
    by_arch = {r["arch"]: r for r in truth}
    trained_file = RESULTS / "truth_pareto_archs.jsonl"
    t_start = time.perf_counter()

    # 1-2. DNAD: search, then train its Pareto set with the ground-truth protocol.
    teacher = get_teacher(args.teacher, protocol)
    res = run_dnad(teacher, protocol, args.seed)
    dnad_archs = res["pareto_archs"]
    rows = train_rows(trained_file, protocol, dnad_archs)
    dnad_rows = [rows[a] for a in dnad_archs]
    cost = train_cost_model(truth)
    search_cost = res["search_cpu_seconds"]
    budget = search_cost + sum(cost(r) for r in dnad_rows)

    # 4. AZ screening (done before random: its trained archs share the JSONL file).
    from edgenas.core.rundir import RunDir
    from edgenas.core.space import NetShape
    from edgenas.data import dataset_info
    from edgenas.proxies.pool import expand_proxy_names
    from edgenas.search.screen import run_screen

    shape = NetShape.for_data(dataset_info(protocol.dataset, protocol.data_dir), protocol.width, protocol.cells)
    screen_dir = FOLDER / f"az-screen-seed{args.seed}"
    if (screen_dir / "results.json").is_file():
        screen = json.loads((screen_dir / "results.json").read_text())
        screen_cpu = json.loads((screen_dir / "cpu_seconds.json").read_text())["cpu_seconds"]
    else:
        import shutil

        shutil.rmtree(screen_dir, ignore_errors=True)
        cpu0 = time.process_time()
        pool = None if args.az_pool else [r["arch"] for r in truth]
        screen = run_screen(profile=None, shape=shape, names=expand_proxy_names("az"), n=args.az_pool or len(truth),
                            archs=pool, top=1, seed=args.seed, compute="cpu", run=RunDir.create("screen", screen_dir),
                            quiet=True)  # fmt: skip
        screen_cpu = time.process_time() - cpu0
        (screen_dir / "cpu_seconds.json").write_text(json.dumps({"cpu_seconds": screen_cpu}))
    flops_of = {c["arch"]: c["flops"] for c in screen["candidates"]}
    az_rows: list[dict] = []
    spent = screen_cpu
    az_new = 0
    for arch in az_order(screen["candidates"]):
        if spent + cost({"arch": arch, "flops": flops_of[arch]}) > budget:
            break  # the next training would not fit: stop before starting it
        row = by_arch.get(arch)
        if row is None:
            known = {r["arch"] for r in read_truth(trained_file)} if trained_file.is_file() else set()
            az_new += arch not in known
            row = train_rows(trained_file, protocol, [arch])[arch]
        spent += cost(row)
        az_rows.append(row)

    # 3. Random search from the uniform ground-truth pool, many draws.
    equal_count = len(dnad_rows)
    draws_budget, draws_count = [], []
    for d in range(RANDOM_DRAWS):
        order = numpy_rng(args.seed, "random-draw", d).permutation(len(truth))
        perm = [truth[i] for i in order]
        draws_budget.append(within_budget(perm, budget, cost))
        draws_count.append(perm[:equal_count])

    every = dnad_rows + az_rows + truth
    ref_flops = 1.1 * max(r["flops"] for r in every)

    def summary(rows: list[dict]) -> dict:
        front = front_of(rows)
        flops = [r["flops"] for r in front]
        return {
            "trained": len(rows),
            "hypervolume": hv(rows, ref_flops, 0.0),
            "hypervolume_floor": hv(rows, ref_flops, FLOOR),
            "front": [{k: r[k] for k in ("arch", "flops", "params", "test_accuracy", "seconds")} for r in front],
            "front_count": len(front),
            "front_flops_span": max(flops) / min(flops) if flops else None,
            "best_accuracy": max(r["test_accuracy"] for r in rows) if rows else None,
            "train_cost_seconds": round(sum(cost(r) for r in rows), 2),
        }

    def spread(draws: list[list[dict]]) -> dict:
        vals = np.asarray([hv(d, ref_flops, 0.0) for d in draws])
        floor = np.asarray([hv(d, ref_flops, FLOOR) for d in draws])
        dnad_hv, dnad_floor = hv(dnad_rows, ref_flops, 0.0), hv(dnad_rows, ref_flops, FLOOR)
        return {
            "draws": len(draws),
            "trained_mean": float(np.mean([len(d) for d in draws])),
            "hypervolume": {
                "mean": float(vals.mean()),
                "median": float(np.median(vals)),
                "std": float(vals.std()),
                "p10": float(np.percentile(vals, 10)),
                "p90": float(np.percentile(vals, 90)),
            },
            "hypervolume_floor": {
                "mean": float(floor.mean()),
                "median": float(np.median(floor)),
                "std": float(floor.std()),
            },
            "share_of_draws_dnad_at_least_as_good": float(np.mean(dnad_hv >= vals)),
            "share_of_draws_dnad_at_least_as_good_floor": float(np.mean(dnad_floor >= floor)),
            "first_draw": summary(draws[0]),
        }

    dnad = summary(dnad_rows) | {
        "run_dir": str(Path(res["run_dir"]).relative_to(Path(__file__).parent.parent))
        if Path(res["run_dir"]).is_absolute()
        else res["run_dir"],
        "search_seconds_wall": res["search_seconds"],
        "search_cpu_seconds": res["search_cpu_seconds"],
        "snapshots": len(res["snapshots"]),
        "search_pareto_count": res["pareto_count"],
        "search_pareto_flops_span": res["pareto_flops_span"],
        "search_pareto_on": res["pareto_on"],
        "search_pareto_archs_flops_span": res["pareto_archs_flops_span"],
        "search_pareto_tolerance": res.get("pareto_tolerance", 0.0),
        "search_pareto_strict_archs": res.get("pareto_strict_archs", res["pareto_archs"]),
        "search_pareto": [
            {
                k: s[k]
                for k in ("arch", "flops", "val_accuracy", "live_flops", "live_val_accuracy", "live_op_count", "epoch")
            }
            for s in res["pareto"]
        ],
        "final_live_ops": res["final_live_ops"],
        "deletions": len(res["deletions"]),
    }
    random_budget, random_count = spread(draws_budget), spread(draws_count)
    az = summary(az_rows) | {
        "pool": args.az_pool or f"the {len(truth)} ground-truth archs",
        "screen_seconds_wall": screen["search_seconds"],
        "screen_cpu_seconds": round(screen_cpu, 2),
        "newly_trained": az_new,
        "reused_from_truth": len(az_rows) - az_new,
        "total_cost_seconds": round(screen_cpu + sum(cost(r) for r in az_rows), 2),
    }
    out = {
        "schema_version": 1,
        "benchmark": "pareto",
        "protocol": protocol.model_dump(),
        "teacher": str(teacher),
        "truth_file": args.truth.name,
        "compute_rule": (
            "T = DNAD search CPU seconds (epochs incl. snapshot evaluations + end snapshot; process time, since the "
            "machine was shared) + the cost of training its Pareto set. Cost of training an arch: its ground-truth "
            "row's 'seconds' (training + evaluation, timed on a quiet machine, 1 thread) or, for archs not in the "
            "ground truth, the linear fit seconds ~ FLOPs on it. Random: uniform archs added while their summed "
            "cost <= T (also reported: the same count as DNAD). AZ: screening CPU seconds + training cost <= T."
        ),
        "train_cost_fit": cost.fit,  # type: ignore[attr-defined]
        "compute_budget_seconds": round(budget, 2),
        "reference_point": {"flops": ref_flops, "accuracy": 0.0, "floor_accuracy": FLOOR},
        "dnad": dnad,
        "random_same_compute": random_budget,
        "random_same_count": random_count,
        "az_same_compute": az,
        "goals": {
            "search_pareto_at_least_4": res["pareto_count"] >= 4,
            "search_pareto_span_at_least_3x": (res["pareto_flops_span"] or 0) >= 3,
            "search_pareto_strict_at_least_4": len(res.get("pareto_strict_archs", res["pareto_archs"])) >= 4,
            "trained_front_at_least_4": dnad["front_count"] >= 4,
            "dnad_hv_at_least_random_median_same_compute": dnad["hypervolume"]
            >= random_budget["hypervolume"]["median"],
            "dnad_hv_at_least_az_same_compute": dnad["hypervolume"] >= az["hypervolume"],
        },
        "benchmark_wall_seconds_this_run": round(time.perf_counter() - t_start, 1),
    }
    (RESULTS / "pareto.json").write_text(json.dumps(out, indent=2) + "\n")
    from edgenas.report.plots import pareto_plot

    pts = {"random pool (truth)": [(r["flops"], r["test_accuracy"]) for r in truth]}
    fronts = {
        "DNAD": [(r["flops"], r["test_accuracy"]) for r in dnad_rows],
        f"random, draw 0 ({len(draws_budget[0])} trained)": [
            (r["flops"], r["test_accuracy"]) for r in front_of(draws_budget[0])
        ],
        f"AZ ({len(az_rows)} trained)": [(r["flops"], r["test_accuracy"]) for r in front_of(az_rows)],
    }
    pareto_plot(RESULTS / "pareto.png", pts, fronts, f"Pareto fronts at the same compute ({budget:.0f}s)",
                ylabel="test accuracy (ground-truth protocol)")  # fmt: skip
    stdout.print(
        rows_table(
            f"hypervolume, ref ({ref_flops / 1e6:.1f} MFLOPs, acc 0 | {FLOOR})",
            ("set", "trained", "front", "HV (acc 0)", f"HV (floor {FLOOR})"),
            [
                (
                    "DNAD",
                    dnad["trained"],
                    dnad["front_count"],
                    f"{dnad['hypervolume']:.4g}",
                    f"{dnad['hypervolume_floor']:.4g}",
                ),
                (
                    "random (median of draws)",
                    f"{random_budget['trained_mean']:.1f}",
                    "",
                    f"{random_budget['hypervolume']['median']:.4g}",
                    f"{random_budget['hypervolume_floor']['median']:.4g}",
                ),
                (
                    "random, same count",
                    equal_count,
                    "",
                    f"{random_count['hypervolume']['median']:.4g}",
                    f"{random_count['hypervolume_floor']['median']:.4g}",
                ),
                ("AZ", az["trained"], az["front_count"], f"{az['hypervolume']:.4g}", f"{az['hypervolume_floor']:.4g}"),
            ],
        )
    )
    stdout.print(json.dumps(out["goals"]))


if __name__ == "__main__":
    main()
