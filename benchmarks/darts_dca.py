"""DCA-NAS on the DARTS cell space, both variants, against the best of random genotypes inside each budget.

Usage:  .venv/bin/python benchmarks/darts_dca.py [--variants edgenas paper] [--budgets 38000 47000 58000]
        [--search-seeds 0 1 2] [--lookup-graph] [--randoms 10] [--train-seeds 2]
        [--search-subset 2000] [--search-epochs 3] [--warmup-epochs 1] [--search-width 8] [--k K]
        [--width 8] [--cells 5] [--subset 10000] [--epochs 3] [--compute auto|cpu|cuda]
        [--workers 2] [--threads 1] [--searches-only] [--runs-dir DIR] [--out FILE]

Issue 17 asks for DCA-NAS (`edgenas` and `paper` variants) on DARTS under a tight, medium and
loose params budget (default 38k / 47k / 58k at C=8, 5 cells: the 10th, 50th and 90th percentile
of a random genotype's params), 3 search seeds each, scored as the gap of the derived genotype
to the best of `--randoms` genotypes drawn uniformly inside the budget (exact params in
[0.7, 1] × budget), plus search seconds and how often the arch before any repair lands in
[0.85, 1.0] of the budget, without and with the lookup graph (`--lookup-graph`: one
`edgenas search --calibrate` per variant at the loose budget, search seed 100, then every
search of that variant again through the graph).

1. Every search is one job of `edgenas.exec` (`--workers` processes; finished searches are
   reused, interrupted ones resumed), the lookup-graph searches after their calibration.
2. The derived genotypes and the randoms are trained with the same protocol (`edgenas bench
   truth --space darts`, `--train-seeds` seeds each; the truth file resumes).
3. Per variant, arm and budget, over the search seeds: gap = best random's mean − derived
   mean (points, training seeds averaged), mean ± std and a 95% t interval of derived − best
   random; share of the randoms beaten; landing; search seconds (mean, median). Paired over
   search seeds, gap differences with their 95% t intervals: paper − edgenas (with and without
   the graph) and graph − no graph per variant.

`--searches-only` stops after step 1 (landing and search seconds need no training). Writes
benchmarks/results/darts_dca_variants.json (runs under benchmarks/results/darts_dca_variants/).
The issue-16 result `darts_dca.json` (one edgenas search at 45k) came from this script's
earlier form (git history).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.bench.stats import mean_std, paired_difference, t_interval
from edgenas.bench.truth import TruthProtocol, build_truth, read_truth
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.data import load_dataset
from edgenas.exec.executor import Job, make_executor, run_all
from edgenas.report.tables import rows_table, stdout
from edgenas.spaces import get_space

RESULTS = Path(__file__).parent / "results"
LABELS = ("tight", "medium", "loose")
LOW_SHARE = 0.7  # random genotypes are kept with params in [LOW_SHARE, 1] × budget
LANDING = (0.85, 1.0)
CALIBRATION_BUDGETS = [0.4, 0.6, 0.8, 1.0, 1.2]  # search budgets of a calibration, × its device budget


def exact_cost(arch: str, shape: NetShape) -> dict[str, int]:
    """Params and FLOPs of the built network of `arch` at `shape`."""
    space = get_space("darts")
    net = space.build(space.parse(arch), shape)
    return {"params": count_params(net), "flops": count_flops(net, shape.input_shape)}


def random_in_budget(n: int, budget: int, shape: NetShape, seed: int, exclude: set[str]) -> list[str]:
    """`n` distinct genotypes sampled uniformly, kept when their exact params are in [0.7, 1] × budget."""
    from edgenas.cost.terms import additive_terms

    space = get_space("darts")
    terms = additive_terms(space, "params", shape)  # exact for DARTS genotypes (every point is live)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        arch = space.sample(rng)
        text = str(arch)
        if text not in exclude and text not in out and LOW_SHARE * budget <= terms.of_arch(arch) <= budget:
            out.append(text)
    return out


class Searches:
    """The search run folders under RUNS: which are finished, and the jobs that run or resume the rest."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results: dict[str, dict] = {}

    def options(self, variant: str, seed: int, graph: dict | None = None) -> dict[str, Any]:
        a = self.args
        opts = {
            "variant": variant,
            "seed": seed,
            "search_width": a.search_width,
            "epochs": a.search_epochs,
            "warmup_epochs": a.warmup_epochs,
        }
        opts |= {"k": a.k} if a.k is not None else {}  # else the variant's (edgenas 2, paper 1 + bottleneck)
        return opts | ({"lookup_graph": graph} if graph is not None else {})

    def job(self, name: str, budget: int, options: dict, calibrate: bool = False) -> Job | None:
        """The job of search NAME (None when it already finished: its results are loaded)."""
        folder = self.args.runs_dir / name
        done = folder / "results.json"
        if done.is_file():
            self.results[name] = json.loads(done.read_text())
            return None
        if folder.exists():
            kwargs = {"run_dir": str(folder), "compute": self.args.compute, "quiet": True}
            return Job(name, "edgenas.search.run:resume_search", kwargs, threads=self.args.threads)
        if calibrate:
            options = options | {"calibration_budgets": CALIBRATION_BUDGETS}
        kwargs = {
            "method": "dca",
            "profile": DeviceProfile(name=f"params-{budget}", budgets=Budgets(max_params=budget)),
            "dataset": "fashion-mnist",
            "subset": self.args.search_subset,
            "space": "darts",
            "width": self.args.width,
            "cells": self.args.cells,
            "options": options,
            "compute": self.args.compute,
            "run_dir": str(folder),
            "quiet": True,
            "calibrate": calibrate,
        }
        return Job(name, "edgenas.search.run:search", kwargs, threads=self.args.threads)

    def run(self, jobs: list[Job | None]) -> None:
        todo = [j for j in jobs if j is not None]
        if not todo:
            return
        print(f"{len(todo)} search(es) to run: {', '.join(j.key for j in todo)}", flush=True)
        ex = make_executor("local", workers=self.args.workers)

        def done(key: str, result: Any) -> None:
            self.results[key] = result
            print(f"  done {key}: {result.get('search_seconds', 0):.0f} s", flush=True)

        try:
            run_all(ex, todo, done)
        finally:
            ex.close()


def search_rows(args: argparse.Namespace, shape: NetShape) -> tuple[list[dict], dict[str, dict]]:
    """Run every search (lookup-graph ones after their calibration); one row per (variant, arm, budget, seed)."""
    s = Searches(args)
    budgets = list(zip(LABELS, args.budgets, strict=True))
    # seed-major order: an interrupted run leaves whole search seeds of both variants
    plain = {
        (v, "plain", lb, seed): (f"{v}-{lb}-seed{seed}", b, s.options(v, seed))
        for seed, (lb, b), v in itertools.product(args.search_seeds, budgets, args.variants)
    }
    calib_budget = args.budgets[-1]
    calibrations = (
        {
            v: (f"{v}-calibration-{calib_budget}-seed{args.calibrate_seed}", s.options(v, args.calibrate_seed))
            for v in args.variants
        }
        if args.lookup_graph
        else {}
    )
    s.run(
        [s.job(name, b, o) for name, b, o in plain.values()]
        + [s.job(name, calib_budget, o, calibrate=True) for name, o in calibrations.values()]
    )
    graphs = {v: s.results[name]["lookup_graph"] for v, (name, _) in calibrations.items()}
    lug = {
        (v, "lookup_graph", lb, seed): (f"{v}-lug-{lb}-seed{seed}", b, s.options(v, seed, graphs[v]))
        for seed, (lb, b), v in itertools.product(args.search_seeds, budgets, graphs)
    }
    s.run([s.job(name, b, o) for name, b, o in lug.values()])
    rows = []
    for (variant, arm, label, seed), (name, budget, _) in (plain | lug).items():
        res = s.results[name]
        unrepaired = exact_cost(res["argmax_arch"], shape)["params"]
        rows.append(
            {
                "variant": variant,
                "arm": arm,
                "budget": label,
                "max_params": budget,
                "seed": seed,
                "arch": res["arch"],
                "params": res["costs"]["params"],
                "flops": res["costs"]["flops"],
                "fits": res["fits"],
                "repairs": len(res["repairs"]),
                "unrepaired_params": unrepaired,
                "unrepaired_share": round(unrepaired / budget, 4),
                "search_budget": res.get("search_budgets", {}).get("max_params", budget),
                "search_seconds": res["search_seconds"],
            }
        )
    calib = {
        v: {
            "budget": calib_budget,
            "seed": args.calibrate_seed,
            "lookup_graph": s.results[name]["lookup_graph"],
            "points": [(r["search_budgets"]["max_params"], r["costs"]["params"]) for r in s.results[name]["searches"]],
            "search_seconds": s.results[name]["search_seconds"],
        }
        for v, (name, _) in calibrations.items()
    }
    return rows, calib


def summarise(rows: list[dict], accs: dict[str, np.ndarray] | None, randoms: dict[str, list[str]]) -> list[dict]:
    """Per (variant, arm, budget) over the search seeds: landing, search seconds and, once its genotypes
    and the budget's randoms are trained (`accs`), the gap."""
    out = []
    for variant, arm, label in dict.fromkeys((r["variant"], r["arm"], r["budget"]) for r in rows):
        mine = [r for r in rows if (r["variant"], r["arm"], r["budget"]) == (variant, arm, label)]
        shares = [r["unrepaired_share"] for r in mine]
        s = {
            "variant": variant,
            "arm": arm,
            "budget": label,
            "max_params": mine[0]["max_params"],
            "search_seeds": [r["seed"] for r in mine],
            "landing_inside": sum(LANDING[0] <= x <= LANDING[1] for x in shares),
            "landing_of": len(shares),
            "inside_budget": sum(r["params"] <= r["max_params"] for r in mine),
            "search_seconds_mean": round(float(np.mean([r["search_seconds"] for r in mine])), 1),
            "search_seconds_median": round(float(np.median([r["search_seconds"] for r in mine])), 1),
        }
        if accs is not None and all(a in accs for a in [*randoms[label], *(r["arch"] for r in mine)]):
            rand = np.stack([accs[a] for a in randoms[label]])  # (randoms, train seeds)
            best = rand[np.argmax(rand.mean(axis=1))]
            derived = np.stack([accs[r["arch"]] for r in mine])  # (search seeds, train seeds)
            gaps = best.mean() - derived.mean(axis=1)
            gm, gs = mean_std(gaps)
            s |= {
                "best_random_mean": round(float(best.mean()), 3),
                "random_mean": round(float(rand.mean()), 3),
                "derived_means": [round(float(x), 3) for x in derived.mean(axis=1)],
                "gap_points_by_search_seed": [round(float(g), 3) for g in gaps],
                "gap_points_mean": round(gm, 3),
                "gap_points_std": None if gs is None else round(gs, 3),
                "derived_minus_best_random_t": t_interval(-gaps).as_dict(),
                "derived_minus_random_mean_t": t_interval(derived.mean(axis=1) - rand.mean()).as_dict(),
                "randoms_beaten_share": round(
                    float(np.mean([(d.mean() > rand.mean(axis=1)).mean() for d in derived])), 3
                ),
            }
        out.append(s)
    return out


def paired_gaps(summary: list[dict], a: tuple[str, str], b: tuple[str, str]) -> list[dict]:
    """Gap difference (a) − (b) per budget, paired over the search seeds (95% t); a and b are
    (variant, arm) pairs, e.g. ("paper", "plain") − ("edgenas", "plain")."""
    by = {(s["variant"], s["arm"], s["budget"]): s for s in summary}
    out = []
    for label in dict.fromkeys(s["budget"] for s in summary):
        mine, theirs = by.get((*a, label)), by.get((*b, label))
        if mine is None or theirs is None or not all("gap_points_by_search_seed" in x for x in (mine, theirs)):
            continue
        diff = paired_difference(
            np.asarray(mine["gap_points_by_search_seed"]), np.asarray(theirs["gap_points_by_search_seed"])
        )
        out.append({"a": list(a), "b": list(b), "budget": label, "gap_difference_points": diff.as_dict()})
    return out


def comparisons(summary: list[dict]) -> dict[str, list[dict]]:
    """paper − edgenas per arm, and the lookup graph − plain per variant (positive: a larger gap)."""
    return {
        f"{x} − {y}": paired_gaps(summary, a, b)
        for x, y, a, b in [
            ("paper", "edgenas", ("paper", "plain"), ("edgenas", "plain")),
            ("paper + graph", "edgenas + graph", ("paper", "lookup_graph"), ("edgenas", "lookup_graph")),
            ("edgenas + graph", "edgenas", ("edgenas", "lookup_graph"), ("edgenas", "plain")),
            ("paper + graph", "paper", ("paper", "lookup_graph"), ("paper", "plain")),
        ]
    }


def _iv(d: dict) -> str:
    if d["low"] is None or d["low"] != d["low"]:
        return f"{d['estimate']:+.2f}"
    return f"{d['estimate']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", choices=("edgenas", "paper"), default=["edgenas", "paper"])
    p.add_argument("--budgets", type=int, nargs=3, default=[38000, 47000, 58000], help="tight medium loose max params")
    p.add_argument("--search-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lookup-graph", action="store_true", help="also every search through a calibrated lookup graph")
    p.add_argument("--calibrate-seed", type=int, default=100)
    p.add_argument("--randoms", type=int, default=10, help="random genotypes per budget (the reference: their best)")
    p.add_argument("--random-seed", type=int, default=0)
    p.add_argument("--train-seeds", type=int, default=2, help="training seeds per genotype")
    p.add_argument("--search-width", type=int, default=8)
    p.add_argument("--k", type=int, default=None, help="partial channels (default: the variant's)")
    p.add_argument("--search-subset", type=int, default=2000)
    p.add_argument("--search-epochs", type=int, default=3)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--width", type=int, default=8, help="deployed / training width")
    p.add_argument("--cells", type=int, default=5, help="deployed / training cells")
    p.add_argument("--subset", type=int, default=10000, help="training images of the protocol")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the protocol")
    p.add_argument("--compute", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=int, default=2, help="searches / training runs in parallel")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--searches-only", action="store_true", help="stop after the searches (landing, search seconds)")
    p.add_argument("--runs-dir", type=Path, default=RESULTS / "darts_dca_variants")
    p.add_argument("--out", type=Path, default=RESULTS / "darts_dca_variants.json")
    args = p.parse_args()
    if sorted(args.budgets) != args.budgets:
        p.error("--budgets: give tight, medium, loose in increasing order")
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    info = load_dataset("fashion-mnist", None, seed=0, val_fraction=0.1, subset=args.subset).info
    shape = NetShape.for_data(info, width=args.width, cells=args.cells)

    rows, calib = search_rows(args, shape)
    derived = {r["arch"] for r in rows}
    randoms = {
        lb: random_in_budget(args.randoms, b, shape, args.random_seed + i, derived)
        for i, (lb, b) in enumerate(zip(LABELS, args.budgets, strict=True))
    }
    base = {
        "space": "darts",
        "shape": {"width": args.width, "cells": args.cells},
        "budgets": dict(zip(LABELS, args.budgets, strict=True)),
        "search": {
            k: getattr(args, k)
            for k in ("search_subset", "search_epochs", "warmup_epochs", "search_width", "k", "search_seeds", "compute")
        },
        "randoms": {
            lb: {"archs": randoms[lb], "params_range": [LOW_SHARE * b, b]}
            for lb, b in zip(LABELS, args.budgets, strict=True)
        },
        "landing_band": LANDING,
        "rows": rows,
        "lookup_graph_calibration": calib,
    }
    write_report(args, base | {"train_seeds_done": 0}, summarise(rows, None, randoms), t0)
    if args.searches_only:
        return
    # seed by seed (an interruption leaves whole seeds; a report after each), the plain arms'
    # genotypes and the randoms before the lookup-graph arms'
    plain = [r["arch"] for r in rows if r["arm"] == "plain"]
    first_part = list(dict.fromkeys(plain + [a for lb in LABELS for a in randoms[lb]]))
    wanted = list(dict.fromkeys(first_part + [r["arch"] for r in rows]))
    truth_file = args.runs_dir / "truth.jsonl"
    recorded = truth_file.with_name(truth_file.name + ".protocol.json")
    first = json.loads(recorded.read_text())["protocol"]["seeds"] if recorded.is_file() else 1
    for seeds in range(min(first, args.train_seeds), args.train_seeds + 1):
        protocol = TruthProtocol(
            space="darts",
            dataset="fashion-mnist",
            width=args.width,
            cells=args.cells,
            subset=args.subset,
            epochs=args.epochs,
            seeds=seeds,
        )
        for archs in (first_part, wanted):  # a report once the plain arms can be scored, then with all
            build_truth(truth_file, protocol, archs=archs, workers=args.workers, threads=args.threads, quiet=True)
            accs = {r["arch"]: np.asarray(r["test_accuracies"]) * 100 for r in read_truth(truth_file, seeds)}
            extra = {"train_seeds_done": seeds, "protocol": protocol.model_dump(), "truth": str(truth_file)}
            write_report(args, base | extra, summarise(rows, accs, randoms), t0)


def write_report(args: argparse.Namespace, base: dict, summary: list[dict], t0: float) -> None:
    """Write the JSON (what is done so far) and print the table."""
    out = base | {
        "summary": summary,
        "gap_differences": comparisons(summary),
        "total_seconds": round(time.time() - t0, 1),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    stdout.print(
        rows_table(
            f"DCA-NAS on DARTS: derived genotype vs the best random inside the budget "
            f"(accuracy points, {base['train_seeds_done']} training seed(s))",
            ("variant", "arm", "budget", "landing", "inside", "search s", "gap mean ± std", "derived − best random"),
            [
                (
                    s["variant"],
                    s["arm"],
                    f"{s['budget']} {s['max_params']}",
                    f"{s['landing_inside']}/{s['landing_of']}",
                    f"{s['inside_budget']}/{s['landing_of']}",
                    f"{s['search_seconds_mean']:.0f}",
                    f"{s['gap_points_mean']:.2f} ± {s['gap_points_std']}" if "gap_points_mean" in s else "-",
                    _iv(s["derived_minus_best_random_t"]) if "gap_points_mean" in s else "-",
                )
                for s in summary
            ],
        )
    )
    for name, diffs in out["gap_differences"].items():
        for d in diffs:
            print(f"gap, {name}, {d['budget']}: {_iv(d['gap_difference_points'])}")
    print(f"written {args.out}", flush=True)


if __name__ == "__main__":
    main()
