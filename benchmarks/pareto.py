"""DNAD's Pareto set against random search and AZ screening at the same total compute.

Usage:  .venv/bin/python benchmarks/pareto.py [--teacher MODEL_FILE] [--truth FILE] [--az-pool 500]
        [--arms edgenas paper paper-scaled] [--seeds 0 1 2] [--out results/pareto_seeds.json]

1. Per arm and search seed, one DNAD search (Fashion-MNIST 10k subset, the ground-truth shape
   C=8 N=1) distilling from `--teacher` (trained here with `edgenas teacher` defaults at
   3 epochs when not given). Arms: `edgenas` and `paper` (the variants of issue 17), and
   `paper-scaled`: the paper variant with its γ/μ controller's time constants compressed to
   this run's 520 steps (`scaled_controller`; at the authors' per-step rates γ needs ~690
   steps to reach γ_max, so a CPU-length search deletes nothing). Its harvested Pareto set is
   trained with the ground-truth protocol (`<truth>.protocol.json`, `edgenas.bench.truth`).
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

Writes `--out` (JSON: per arm and seed, and across seeds mean ± std with paired t intervals of
DNAD − random median and DNAD − AZ) and a plot beside it (+ the run folders under
benchmarks/results/pareto/). A finished search is reused when rerun, an interrupted one resumed.
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
TRAINED_FILE = RESULTS / "truth_pareto_archs.jsonl"


def train_rows(out: Path, protocol: TruthProtocol, archs: list[str]) -> dict[str, dict]:
    """Train the archs not yet in `out` with the ground-truth protocol (`build_truth`: one worker
    process on one thread, as the ground truth itself was trained); rows by arch."""
    from edgenas.bench.truth import build_truth

    rows = build_truth(out, protocol, archs=list(dict.fromkeys(archs)), workers=1, threads=1, quiet=True)
    return {r["arch"]: r for r in rows}


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
    train_arch(
        TEACHER_ARCH,
        dataset=protocol.dataset,
        width=16,
        subset=protocol.subset,
        resume=resume,
        train=TrainConfig(epochs=3),
        device="cpu",
        run_dir=out,
        quiet=True,
        command="teacher",
    )
    return out / "model.pt"


# The authors' controller (methods.md §3) is written per step of a 120-epoch CIFAR search:
# 50,000 images / batch 128 = 391 steps an epoch (an assumption: the split is not stated),
# over a supernet of 8 cells × 14 edges × 3 ops each with its own α.
AUTHORS_STEPS = 120 * 391
AUTHORS_OPS = 8 * 14 * 3


def scaled_controller(steps: int, ops: int) -> dict[str, float | int]:
    """The authors' γ/μ controller with its time constants compressed to a run of `steps` steps
    over `ops` live ops: per-step factors raised to r = AUTHORS_STEPS / steps (γ reaches γ_max
    and falls back at the same share of training), the deletion-rate EMA's τ likewise, stalls
    r times shorter (at least 1 step), and the wanted deletions per step scaled by r and by the
    share of ops (the same fraction of the supernet deleted per fraction of training)."""
    r = AUTHORS_STEPS / steps
    return {
        "gamma_up": round(1.01**r, 4),
        "gamma_down": round(0.99**r, 4),
        "deletion_ema": round(0.9**r, 6),
        "stall_steps": max(1, round(50 / r)),
        "deletion_rate": round(0.005 * r * ops / AUTHORS_OPS, 5),
    }


ARMS = {
    "edgenas": {"variant": "edgenas"},
    "paper": {"variant": "paper"},
    "paper-scaled": {"variant": "paper"},  # + scaled_controller(...) for this run's length
}


def arm_options(arm: str, protocol: TruthProtocol, seed: int) -> dict:
    opts = dict(ARMS[arm], seed=seed)
    if arm == "paper-scaled":
        from edgenas.search.methods.dnad import SNPSConfig

        cfg = SNPSConfig(**opts)
        w_images = int(protocol.subset * (1 - 0.5))  # the search's w split (val_fraction 0.5)
        steps = (cfg.epochs - (cfg.warmup_epochs or 0)) * (w_images // cfg.batch_size)
        opts |= scaled_controller(steps, ops=24)  # NB201: 6 edges × 4 ops ("none" is dead from the start)
    return opts


def run_dnad(teacher: Path, protocol: TruthProtocol, arm: str, seed: int) -> dict:
    from edgenas.search.run import resume_search, search

    folder = FOLDER / f"dnad-{arm}-seed{seed}"
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text()) | {"run_dir": str(folder)}
    if folder.exists():
        return resume_search(folder, compute="cpu", quiet=True)
    return search(
        method="dnad",
        teacher=teacher,
        dataset=protocol.dataset,
        subset=protocol.subset,
        width=protocol.width,
        cells=protocol.cells,
        options=arm_options(arm, protocol, seed),
        compute="cpu",
        run_dir=folder,
        quiet=True,
    )


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


def az_screen(truth: list[dict], protocol: TruthProtocol, az_pool: int | None, seed: int) -> tuple[dict, float]:
    """AZ scores of the ground-truth archs (or `az_pool` fresh ones) for this seed, and its CPU seconds (reused)."""
    import shutil

    from edgenas.core.rundir import RunDir
    from edgenas.core.space import NetShape
    from edgenas.data import dataset_info
    from edgenas.proxies.pool import expand_proxy_names
    from edgenas.search.screen import run_screen

    screen_dir = FOLDER / f"az-screen-seed{seed}"
    if (screen_dir / "results.json").is_file():
        screen = json.loads((screen_dir / "results.json").read_text())
        return screen, json.loads((screen_dir / "cpu_seconds.json").read_text())["cpu_seconds"]
    shutil.rmtree(screen_dir, ignore_errors=True)
    shape = NetShape.for_data(dataset_info(protocol.dataset, protocol.data_dir), protocol.width, protocol.cells)
    cpu0 = time.process_time()
    pool = None if az_pool else [r["arch"] for r in truth]
    screen = run_screen(
        profile=None,
        shape=shape,
        names=expand_proxy_names("az"),
        n=az_pool or len(truth),
        archs=pool,
        top=1,
        seed=seed,
        compute="cpu",
        run=RunDir.create("screen", screen_dir),
        quiet=True,
    )
    screen_cpu = time.process_time() - cpu0
    (screen_dir / "cpu_seconds.json").write_text(json.dumps({"cpu_seconds": screen_cpu}))
    return screen, screen_cpu


def one_seed(arm: str, seed: int, args, protocol: TruthProtocol, truth: list[dict], teacher: Path, cost) -> dict:
    """DNAD (this arm, this search seed), AZ and random search at its compute: the trained rows of each."""
    by_arch = {r["arch"]: r for r in truth}
    res = run_dnad(teacher, protocol, arm, seed)
    rows = train_rows(TRAINED_FILE, protocol, res["pareto_archs"])
    dnad_rows = [rows[a] for a in res["pareto_archs"]]
    budget = res["search_cpu_seconds"] + sum(cost(r) for r in dnad_rows)

    screen, screen_cpu = az_screen(truth, protocol, args.az_pool, seed)
    flops_of = {c["arch"]: c["flops"] for c in screen["candidates"]}
    az_rows: list[dict] = []
    spent, az_new = screen_cpu, 0
    for arch in az_order(screen["candidates"]):
        if spent + cost({"arch": arch, "flops": flops_of[arch]}) > budget:
            break  # the next training would not fit: stop before starting it
        row = by_arch.get(arch)
        if row is None:
            known = {r["arch"] for r in read_truth(TRAINED_FILE)} if TRAINED_FILE.is_file() else set()
            az_new += arch not in known
            row = train_rows(TRAINED_FILE, protocol, [arch])[arch]
        spent += cost(row)
        az_rows.append(row)

    draws_budget, draws_count = [], []
    for d in range(RANDOM_DRAWS):
        order = numpy_rng(seed, "random-draw", d).permutation(len(truth))
        perm = [truth[i] for i in order]
        draws_budget.append(within_budget(perm, budget, cost))
        draws_count.append(perm[: len(dnad_rows)])
    return {
        "res": res,
        "dnad": dnad_rows,
        "az": az_rows,
        "az_new": az_new,
        "screen": screen,
        "screen_cpu": screen_cpu,
        "budget": budget,
        "draws_budget": draws_budget,
        "draws_count": draws_count,
    }


def summary(rows: list[dict], ref_flops: float, cost) -> dict:
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


def spread(draws: list[list[dict]], dnad_rows: list[dict], ref_flops: float) -> dict:
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
    }


def seed_report(r: dict, ref_flops: float, cost, truth_len: int, az_pool: int | None) -> dict:
    res, dnad_rows = r["res"], r["dnad"]
    run_dir = Path(res["run_dir"])
    root = Path(__file__).parent.parent
    dnad = summary(dnad_rows, ref_flops, cost) | {
        "run_dir": str(run_dir.relative_to(root)) if run_dir.is_absolute() else str(run_dir),
        "search_seconds_wall": res["search_seconds"],
        "search_cpu_seconds": res["search_cpu_seconds"],
        "snapshots": len(res["snapshots"]),
        "search_pareto_count": res["pareto_count"],
        "search_pareto_flops_span": res["pareto_flops_span"],
        "search_pareto_archs": res["pareto_archs"],
        "search_pareto_archs_flops_span": res["pareto_archs_flops_span"],
        "final_live_ops": res["final_live_ops"],
        "deletions": len(res["deletions"]),
    }
    random_budget = spread(r["draws_budget"], dnad_rows, ref_flops)
    az = summary(r["az"], ref_flops, cost) | {
        "pool": az_pool or f"the {truth_len} ground-truth archs",
        "screen_cpu_seconds": round(r["screen_cpu"], 2),
        "newly_trained": r["az_new"],
        "total_cost_seconds": round(r["screen_cpu"] + sum(cost(x) for x in r["az"]), 2),
    }
    return {
        "compute_budget_seconds": round(r["budget"], 2),
        "dnad": dnad,
        "random_same_compute": random_budget,
        "random_same_count": spread(r["draws_count"], dnad_rows, ref_flops),
        "az_same_compute": az,
        "dnad_hv_at_least_random_median": dnad["hypervolume"] >= random_budget["hypervolume"]["median"],
        "dnad_hv_at_least_az": dnad["hypervolume"] >= az["hypervolume"],
    }


def arm_report(seeds: dict[int, dict]) -> dict:
    """Across search seeds: mean ± std and paired intervals (DNAD − random median, DNAD − AZ)."""
    from edgenas.bench.stats import mean_std, paired_difference

    ss = list(seeds.values())
    dn = [s["dnad"]["hypervolume"] for s in ss]
    rm = [s["random_same_compute"]["hypervolume"]["median"] for s in ss]
    az = [s["az_same_compute"]["hypervolume"] for s in ss]
    dnf = [s["dnad"]["hypervolume_floor"] for s in ss]
    rmf = [s["random_same_compute"]["hypervolume_floor"]["median"] for s in ss]
    return {
        "seeds": list(seeds),
        "pareto_archs": mean_std([s["dnad"]["search_pareto_count"] for s in ss]),
        "trained_front": mean_std([s["dnad"]["front_count"] for s in ss]),
        "flops_span": mean_std([s["dnad"]["search_pareto_archs_flops_span"] or 1.0 for s in ss]),
        "search_cpu_seconds": mean_std([s["dnad"]["search_cpu_seconds"] for s in ss]),
        "compute_budget_seconds": mean_std([s["compute_budget_seconds"] for s in ss]),
        "hypervolume": {"dnad": mean_std(dn), "random_median": mean_std(rm), "az": mean_std(az)},
        "hv_ratio_to_random_median": [d / m for d, m in zip(dn, rm, strict=True)],
        "dnad_minus_random_median": paired_difference(dn, rm).as_dict(),
        "dnad_minus_az": paired_difference(dn, az).as_dict(),
        "dnad_minus_random_median_floor": paired_difference(dnf, rmf).as_dict(),
        "goal_hv_at_least_random_median_every_seed": all(s["dnad_hv_at_least_random_median"] for s in ss),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", type=Path, help="teacher model.pt (default: train one into results/pareto/teacher)")
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--az-pool", type=int, help="score N fresh uniform archs (default: the ground-truth archs)")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (AZ and random draws too)")
    p.add_argument("--out", type=Path, default=RESULTS / "pareto_seeds.json")
    args = p.parse_args()
    protocol = TruthProtocol(
        **json.loads(args.truth.with_name(args.truth.name + ".protocol.json").read_text())["protocol"]
    )
    truth = read_truth(args.truth)
    t_start = time.perf_counter()
    teacher = get_teacher(args.teacher, protocol)
    cost = train_cost_model(truth)
    runs = {
        (arm, seed): one_seed(arm, seed, args, protocol, truth, teacher, cost)
        for arm in args.arms
        for seed in args.seeds
    }
    every = list(truth) + [x for r in runs.values() for x in r["dnad"] + r["az"]]
    ref_flops = 1.1 * max(r["flops"] for r in every)
    arms: dict[str, dict] = {}
    for arm in args.arms:
        seeds = {s: seed_report(runs[arm, s], ref_flops, cost, len(truth), args.az_pool) for s in args.seeds}
        arms[arm] = {
            "options": arm_options(arm, protocol, 0) | {"seed": "per run"},
            "per_seed": seeds,
            "summary": arm_report(seeds),
        }
    out = {
        "schema_version": 2,
        "benchmark": "pareto",
        "protocol": protocol.model_dump(),
        "teacher": str(teacher),
        "truth_file": args.truth.name,
        "compute_rule": (
            "Per search seed: T = DNAD search CPU seconds (epochs incl. snapshot evaluations + end snapshot; "
            "process time, since the machine was shared) + the cost of training its Pareto set. Cost of training "
            "an arch: its ground-truth row's 'seconds' (training + evaluation, timed on a quiet machine, 1 thread) "
            "or, for archs not in the ground truth, the linear fit seconds ~ FLOPs on it. Random: uniform archs "
            f"from the ground truth added while their summed cost <= T, {RANDOM_DRAWS} draws per seed (median "
            "reported; also the same count as DNAD). AZ: screening CPU seconds + training cost <= T, screened "
            "with the search seed. Every trained arch uses the ground-truth protocol (its training seed fixed)."
        ),
        "train_cost_fit": cost.fit,  # type: ignore[attr-defined]
        "reference_point": {"flops": ref_flops, "accuracy": 0.0, "floor_accuracy": FLOOR},
        "arms": arms,
        "benchmark_wall_seconds_this_run": round(time.perf_counter() - t_start, 1),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    from edgenas.report.plots import pareto_plot

    s0 = args.seeds[0]
    pts = {"random pool (truth)": [(r["flops"], r["test_accuracy"]) for r in truth]}
    fronts = {
        f"DNAD {arm}": [(r["flops"], r["test_accuracy"]) for r in front_of(runs[arm, s0]["dnad"])] for arm in args.arms
    }
    fronts["AZ"] = [(r["flops"], r["test_accuracy"]) for r in front_of(runs[args.arms[0], s0]["az"])]
    pareto_plot(
        args.out.with_suffix(".png"),
        pts,
        fronts,
        f"Pareto fronts, search seed {s0}",
        ylabel="test accuracy (ground-truth protocol)",
    )
    rows = []
    for arm, a in arms.items():
        sm = a["summary"]
        for s, r in a["per_seed"].items():
            rows.append(
                (
                    arm,
                    s,
                    r["dnad"]["search_pareto_count"],
                    f"{r['dnad']['search_pareto_archs_flops_span'] or 1:.2f}",
                    f"{r['compute_budget_seconds']:.0f}",
                    f"{r['dnad']['hypervolume']:.4g}",
                    f"{r['random_same_compute']['hypervolume']['median']:.4g}",
                    f"{r['az_same_compute']['hypervolume']:.4g}",
                )
            )
        d = sm["dnad_minus_random_median"]
        rows.append(
            (arm, "Δ vs random", "", "", "", f"{d['estimate']:+.4g} [{d['low']:+.4g}, {d['high']:+.4g}]", "", "")
        )
    stdout.print(
        rows_table(
            f"hypervolume, ref ({ref_flops / 1e6:.1f} MFLOPs, acc 0)",
            ("arm", "seed", "Pareto", "span", "T (s)", "HV DNAD", "HV random median", "HV AZ"),
            rows,
        )
    )


if __name__ == "__main__":
    main()
