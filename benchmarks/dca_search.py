"""DCA-NAS under a tight, medium and loose params budget, and under a latency budget.

Usage:  .venv/bin/python benchmarks/dca_search.py [--truth FILE] [--budgets 25000 40000 60000]
        [--latency-ms 0.6] [--seeds 0 1 2] [--runs-dir DIR] [--threads 1] [--extra-train-seeds 1 2]
        [--search-option KEY=VALUE ...] [--only tight medium loose] [--no-latency] [--out FILE]

For each params budget: one DCA search (default options, Fashion-MNIST 10k subset, the
ground-truth shape C=8 N=1), then the derived arch is trained under the *same protocol* as
the ground-truth file (its `.protocol.json`) and compared with the best arch of that file
inside the same budget. Then one search under a latency budget at C=16 N=1 whose derived
arch is measured with onnxruntime. Writes benchmarks/results/dca_search.json (+ the run
folders under benchmarks/results/dca/, or --runs-dir). Finished searches are reused when rerun.

The issue's figure is the gap to the best arch of the ground-truth file, every arch trained
once with the protocol's seed. That best is the maximum of ~100-150 noisy 2-epoch numbers,
so it is biased upwards (winner's curse). With --extra-train-seeds the derived arch *and*
that best arch are also trained with other protocol seeds (other data subset, init and
batch order), and the gap averaged over all training seeds is reported beside the issue's.

Per budget, over the search seeds (issue 15): the gap averaged over training seeds as mean ±
std over search seeds, and derived − truth-best in points with a 95% interval from
`edgenas.bench.stats`: a percentile bootstrap over (search seeds × training seeds), both
resampled, and a t interval over the per-search-seed means; plus the share of derived archs
inside the budget.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from edgenas.bench.stats import bootstrap_difference, mean_std, t_interval
from edgenas.bench.truth import TruthProtocol, build_truth, read_truth
from edgenas.core.device import Budgets, DeviceProfile, LatencySpec
from edgenas.report.tables import rows_table, stdout
from edgenas.search.bilevel import flat_options
from edgenas.search.run import search

RESULTS = Path(__file__).parent / "results"


def run_search(
    name: str,
    profile: DeviceProfile,
    width: int,
    seed: int = 0,
    runs: Path = RESULTS / "dca",
    options: dict | None = None,
    calibrate: bool = False,
) -> dict:
    """One search (`calibrate`: a lookup-graph calibration) into RUNS/NAME (default search options +
    `options`), reused when it already finished."""
    folder = runs / name
    done = folder / "results.json"
    if done.is_file():
        return json.loads(done.read_text()) | {"run_dir": str(folder)}
    if folder.exists():  # an interrupted search: continue it
        from edgenas.search.run import resume_search

        return resume_search(folder, compute="cpu", quiet=True)
    return search(
        profile=profile,
        width=width,
        cells=1,
        options=(options or {}) | {"seed": seed},
        compute="cpu",
        run_dir=folder,
        quiet=True,
        calibrate=calibrate,
    )


def other_derivations(res: dict, profile: DeviceProfile) -> dict[str, dict]:
    """The greedy and the map derivation of one finished search's final op probabilities (same α)."""
    import numpy as np

    from edgenas.core.space import NetShape
    from edgenas.cost.params import count_params
    from edgenas.search.derive import derive
    from edgenas.spaces.nb201 import NB201Network
    from edgenas.spaces.nb201.cost_terms import terms_for_budgets

    shape = NetShape(**res["target_shape"])
    terms = terms_for_budgets(profile.budgets, shape)
    probs = np.asarray(res["final_probs"])
    out = {}
    for method in ("greedy", "map"):
        d = derive(
            probs,
            profile.budgets,
            terms,
            lambda a: {"params": count_params(NB201Network(a, shape))},
            lower=res["config"]["lower"],
            method=method,
        )
        out[method] = {"arch": str(d.arch), "params": d.costs["params"], "fits": d.fits, "steps": len(d.repairs)}
    return out


def _rounded(d: dict) -> dict:
    """An Interval's dict with floats to 3 decimals; NaN (no interval from one value) as null."""
    return {k: ((None if v != v else round(v, 3)) if isinstance(v, float) else v) for k, v in d.items()}


def over_search_seeds(rows: list[dict], label: str) -> dict:
    """One budget's rows (one per search seed): the gap over search seeds and derived − truth-best
    with intervals, in accuracy points. Accuracies by training seed where there are several."""
    mine = [r for r in rows if r["budget"] == label]
    train_seeds = list(mine[0].get("accuracy_by_train_seed", {"0": mine[0]["accuracy"]}))
    derived = np.array([[r.get("accuracy_by_train_seed", {"0": r["accuracy"]})[k] for k in train_seeds] for r in mine])
    best = np.array(
        [
            [r.get("truth_best_accuracy_by_train_seed", {"0": r["truth_best_accuracy"]})[k] for k in train_seeds]
            for r in mine
        ]
    )
    derived, best = derived * 100, best * 100
    gaps = (best - derived).mean(axis=1)  # per search seed, averaged over training seeds
    gap_mean, gap_std = mean_std(gaps)
    return {
        "search_seeds": [r["seed"] for r in mine],
        "train_seeds": [int(k) for k in train_seeds],
        "gap_points_by_search_seed": [round(float(g), 3) for g in gaps],
        "gap_points_mean": round(gap_mean, 3),
        "gap_points_std": None if gap_std is None else round(gap_std, 3),
        "derived_minus_best_points_bootstrap": _rounded(bootstrap_difference(derived, best).as_dict()),
        "derived_minus_best_points_t_over_search_seeds": _rounded(t_interval(-gaps).as_dict()),
        "inside_budget_share": round(sum(r["params"] <= r["max_params"] for r in mine) / len(mine), 3),
        "fits_share": round(sum(bool(r["fits"]) for r in mine) / len(mine), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--budgets", type=int, nargs=3, default=[25000, 40000, 60000])
    p.add_argument("--latency-ms", type=float, default=0.6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds per params budget")
    p.add_argument("--runs-dir", type=Path, default=RESULTS / "dca", help="search run folders (reused when finished)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per training job (default: all cores)")
    p.add_argument(
        "--extra-train-seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train the derived and the truth-best archs with these protocol seeds (noise check)",
    )
    p.add_argument(
        "--search-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a DCA option other than its default for every search, VALUE as JSON (e.g. entropy_weight=0.3)",
    )
    p.add_argument(
        "--calibrate-at",
        type=int,
        default=None,
        metavar="PARAMS",
        help="first make a lookup graph (edgenas search --method dca --calibrate) for a PARAMS budget with the same "
        "options, then run every search through it (the with-lookup-graph arm)",
    )
    p.add_argument("--calibrate-seed", type=int, default=100, help="search seed of the calibration (100)")
    p.add_argument("--only", nargs="+", choices=("tight", "medium", "loose"), help="run these params budgets only")
    p.add_argument("--no-latency", action="store_true", help="skip the latency-budget search")
    p.add_argument("--out", type=Path, default=RESULTS / "dca_search.json")
    p.add_argument(
        "--compare-derivations",
        action="store_true",
        help="also derive greedy and map archs from each search's final α and train them (derivation ablation)",
    )
    args = p.parse_args()
    options = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.search_option)}
    labels = [lb for lb in ("tight", "medium", "loose") if args.only is None or lb in args.only]
    protocol = TruthProtocol(
        **json.loads(args.truth.with_name(args.truth.name + ".protocol.json").read_text())["protocol"]
    )
    truth = read_truth(args.truth)
    calibration = None
    if args.calibrate_at is not None:
        calibration = calibrate(args, protocol.width, options)
        options = options | {"lookup_graph": calibration["lookup_graph"]}
    rows = []
    for (label, budget), seed in itertools.product(
        zip(("tight", "medium", "loose"), args.budgets, strict=True), args.seeds
    ):
        if label not in labels:
            continue
        prof = DeviceProfile(name=f"params-{label}", budgets=Budgets(max_params=budget))
        t0 = time.perf_counter()
        res = run_search(f"params-{label}-seed{seed}", prof, protocol.width, seed, args.runs_dir, options)
        inside = [r for r in truth if r["params"] <= budget]
        best = max(inside, key=lambda r: r["test_accuracy"])
        rows.append(
            {
                "budget": label,
                "max_params": budget,
                "seed": seed,
                "arch": res["arch"],
                "params": res["costs"]["params"],
                "flops": res["costs"]["flops"],
                "fits": res["fits"],
                "repairs": res["repairs"],
                "argmax_arch": res["argmax_arch"],
                # landing without repair: the top-weighted (paper) / argmax (edgenas) arch before any repair
                "unrepaired_params": unrepaired_params(res["argmax_arch"], res["target_shape"]),
                "search_budget": res.get("search_budgets", {}).get("max_params", budget),
                "op_histogram": res["op_histogram"],
                "search_seconds": res["search_seconds"],
                "search_wall_seconds_this_run": round(time.perf_counter() - t0, 1),
                "truth_archs_inside_budget": len(inside),
                "truth_best_arch": best["arch"],
                "truth_best_accuracy": best["test_accuracy"],
                "truth_best_params": best["params"],
                "derivation": res.get("derivation", flat_options(res["config"]).get("derive", "greedy")),
            }
        )
        if args.compare_derivations:
            rows[-1]["other_derivations"] = other_derivations(res, prof)
    # Train the derived archs exactly as the ground truth was trained.
    trained = {
        r["arch"]: r
        for r in build_truth(
            RESULTS / "truth_dca_archs.jsonl",
            protocol,
            archs=sorted(
                {r["arch"] for r in rows} | {d["arch"] for r in rows for d in r.get("other_derivations", {}).values()}
            ),
            workers=1,
            threads=args.threads,
        )
    }
    for r in rows:
        t = trained[r["arch"]]
        r["accuracy"] = t["test_accuracy"]
        r["train_seconds"] = t["train_seconds"]
        r["gap_points"] = round((r["truth_best_accuracy"] - r["accuracy"]) * 100, 2)
        for d in r.get("other_derivations", {}).values():
            d["accuracy"] = trained[d["arch"]]["test_accuracy"]
            d["gap_points"] = round((r["truth_best_accuracy"] - d["accuracy"]) * 100, 2)
        r["within_1_5_points"] = r["gap_points"] <= 1.5
        # The best of ~100 noisy 2-epoch trainings is biased upwards; where the arch ranks is the fuller picture.
        inside = [t["test_accuracy"] for t in truth if t["params"] <= r["max_params"]]
        r["beats_share_of_truth_inside_budget"] = round(sum(a < r["accuracy"] for a in inside) / len(inside), 3)
        r["truth_median_inside_budget"] = sorted(inside)[len(inside) // 2]
    # Noise check: the same archs (derived and truth-best) under other training seeds.
    for ts in args.extra_train_seeds:
        proto_s = protocol.model_copy(update={"seed": ts})
        wanted = sorted({r["arch"] for r in rows} | {r["truth_best_arch"] for r in rows})
        got = {
            t["arch"]: t["test_accuracy"]
            for t in build_truth(
                RESULTS / f"truth_dca_archs_seed{ts}.jsonl", proto_s, archs=wanted, workers=1, threads=args.threads
            )
        }
        for r in rows:
            r.setdefault("accuracy_by_train_seed", {str(protocol.seed): r["accuracy"]})[str(ts)] = got[r["arch"]]
            r.setdefault("truth_best_accuracy_by_train_seed", {str(protocol.seed): r["truth_best_accuracy"]})[
                str(ts)
            ] = got[r["truth_best_arch"]]
    gap_over_seeds: dict[int, float] = {}  # row index -> unrounded mean gap over the training seeds (points)
    for i, r in enumerate(rows):
        if "accuracy_by_train_seed" in r:
            mine, best = r["accuracy_by_train_seed"], r["truth_best_accuracy_by_train_seed"]
            gap_over_seeds[i] = sum(best[k] - mine[k] for k in mine) / len(mine) * 100
            r["gap_points_by_train_seed"] = {k: round((best[k] - mine[k]) * 100, 3) for k in mine}
            r["gap_points_mean_over_train_seeds"] = round(gap_over_seeds[i], 2)
            r["gap_points_mean_over_train_seeds_3dp"] = round(gap_over_seeds[i], 3)
    # Latency budget, C=16: the derived arch's latency is measured with onnxruntime (1 thread).
    lat_prof = DeviceProfile(
        name="latency", budgets=Budgets(max_latency_ms=args.latency_ms), latency=LatencySpec(threads=1, repeats=200)
    )
    lat = None if args.no_latency else run_search("latency-seed0", lat_prof, 16, runs=args.runs_dir, options=options)
    latency = None
    if lat is not None:
        latency = {
            "max_latency_ms": args.latency_ms,
            "arch": lat["arch"],
            "measured_latency_ms": lat["costs"]["latency_ms"],
            "table_estimate_ms": lat["cost_model"]["max_latency_ms"]["estimate_of_arch"],
            "expected_latency_ms_at_end": lat["expected_costs"]["max_latency_ms"],
            "fits": lat["fits"],
            "repairs": lat["repairs"],
            "search_seconds": lat["search_seconds"],
            "op_histogram": lat["op_histogram"],
            "argmax_arch": lat["argmax_arch"],
        }
    standalone = sorted(r["train_seconds"] for r in truth)
    out = {
        "schema_version": 2,
        "truth_file": str(args.truth.name),
        "protocol": protocol.model_dump(),
        "params_budgets": rows,
        "mean_gap_points": {
            label: round(sum(r["gap_points"] for r in rows if r["budget"] == label) / len(args.seeds), 2)
            for label in labels
        },
        "mean_gap_points_over_train_seeds": {
            label: round(
                sum(r["gap_points_mean_over_train_seeds"] for r in rows if r["budget"] == label) / len(args.seeds), 2
            )
            for label in labels
        }
        if args.extra_train_seeds
        else None,
        # The same means from the unrounded per-row gaps, 3 decimals (tells 1.50 from 1.504).
        "mean_gap_points_over_train_seeds_3dp": {
            label: round(sum(g for i, g in gap_over_seeds.items() if rows[i]["budget"] == label) / len(args.seeds), 3)
            for label in labels
        }
        if args.extra_train_seeds
        else None,
        "train_seeds": [protocol.seed, *args.extra_train_seeds],
        "search_seeds": args.seeds,
        # Over the search seeds, accuracy points: gap mean ± std, derived − truth-best with 95% intervals.
        "over_search_seeds": {label: over_search_seeds(rows, label) for label in labels},
        "search_options": {k: v for k, v in flat_options(res["config"]).items() if k != "seed"},
        "search_options_changed": options,
        "derivation_ablation_mean_gap_points": {
            m: {
                label: round(
                    sum(r["other_derivations"][m]["gap_points"] for r in rows if r["budget"] == label)
                    / len(args.seeds),
                    2,
                )
                for label in labels
            }
            for m in ("greedy", "map")
        }
        if args.compare_derivations
        else None,
        "latency_budget": latency,
        "lookup_graph_calibration": calibration,
        "landing_without_repair": landing(rows, labels),
        "standalone_train_seconds_median": standalone[len(standalone) // 2],
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    stdout.print(
        rows_table(
            "DCA-NAS vs best ground-truth arch under the same params budget",
            ("budget", "seed", "params", "DCA acc", "best in truth", "gap (pts)", "beats", "search s", "steps"),
            [
                (
                    f"{r['budget']} {r['max_params']}",
                    r["seed"],
                    r["params"],
                    f"{r['accuracy'] * 100:.2f}",
                    f"{r['truth_best_accuracy'] * 100:.2f} ({r['truth_best_params']})",
                    f"{r['gap_points']:+.2f}",
                    f"{r['beats_share_of_truth_inside_budget'] * 100:.0f}%",
                    f"{r['search_seconds']:.0f}",
                    len(r["repairs"]),
                )
                for r in rows
            ],
        )
    )
    stdout.print(
        json.dumps(
            {"mean_gap_points": out["mean_gap_points"]}
            | {"mean_gap_points_over_train_seeds": out["mean_gap_points_over_train_seeds"]}
            | {"mean_gap_points_over_train_seeds_3dp": out["mean_gap_points_over_train_seeds_3dp"]}
        )
    )
    stdout.print(
        rows_table(
            f"over search seeds {args.seeds} and training seeds {out['train_seeds']} (accuracy points, 95%)",
            ("budget", "gap mean ± std", "derived − best, bootstrap", "t over search seeds", "inside budget"),
            [
                (
                    label,
                    f"{o['gap_points_mean']:.3f} ± {o['gap_points_std']}",
                    _iv(o["derived_minus_best_points_bootstrap"]),
                    _iv(o["derived_minus_best_points_t_over_search_seeds"]),
                    f"{o['inside_budget_share'] * 100:.0f}%",
                )
                for label, o in out["over_search_seeds"].items()
            ],
        )
    )
    stdout.print(json.dumps(latency, indent=1))
    stdout.print(json.dumps({"landing_without_repair": out["landing_without_repair"]}, indent=1))


def calibrate(args: argparse.Namespace, width: int, options: dict) -> dict:
    """The lookup graph for a `--calibrate-at` params budget (search seed `--calibrate-seed`), reused when made."""
    prof = DeviceProfile(name=f"params-{args.calibrate_at}", budgets=Budgets(max_params=args.calibrate_at))
    name = f"calibration-{args.calibrate_at}-seed{args.calibrate_seed}"
    res = run_search(name, prof, width, args.calibrate_seed, args.runs_dir, options, calibrate=True)
    return {
        "budget": args.calibrate_at,
        "seed": args.calibrate_seed,
        "lookup_graph": res["lookup_graph"],
        "points": [(r["search_budgets"]["max_params"], r["costs"]["params"]) for r in res["searches"]],
        "search_seconds": res["search_seconds"],
    }


def unrepaired_params(arch: str, target_shape: dict) -> int:
    """Exact params of an NB201 arch string at the searched target shape."""
    from edgenas.core.space import NetShape
    from edgenas.cost.params import count_params
    from edgenas.spaces.nb201 import NB201Arch, NB201Network

    return count_params(NB201Network(NB201Arch.parse(arch), NetShape(**target_shape)))


def landing(rows: list[dict], labels: list[str]) -> dict:
    """How often the arch before any repair lands inside [0.85, 1.0] of the params budget, per budget and in all."""
    out: dict = {}
    for label in [*labels, "all"]:
        mine = [r for r in rows if label in ("all", r["budget"])]
        ratios = [r["unrepaired_params"] / r["max_params"] for r in mine]
        out[label] = {
            "inside": sum(0.85 <= x <= 1.0 for x in ratios),
            "of": len(ratios),
            "ratios": [round(x, 3) for x in ratios],
        }
    return out


def _iv(d: dict) -> str:
    if d["low"] is None:
        return f"{d['estimate']:+.3f}"
    return f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


if __name__ == "__main__":
    main()
