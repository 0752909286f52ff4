"""Kendall tau of every proxy and of the AZ aggregate against the ground truth, over proxy seeds.

Usage:  .venv/bin/python benchmarks/proxy_correlation.py [--truth FILE] [--seeds 0 1 2] [--name NAME]
Writes benchmarks/results/NAME.json (default proxy_correlation; + one `edgenas bench proxies`
run folder per seed under benchmarks/results/proxies_<truth>-seedN/). Proxy values depend on
the seed (re-initialisation, noise batch); FLOPs and params do not, so a win is only claimed
where it holds for every seed. Each τ comes with its 95% bootstrap interval over archs, AZ −
every other score with a paired one, and a multi-seed truth's split-half τ (its self-agreement).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from edgenas.bench.proxy_bench import bench_proxies
from edgenas.core.rundir import RunDir
from edgenas.proxies import available

RESULTS = Path(__file__).parent / "results"
AZ = "AZ (log-rank sum)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, default=RESULTS / "truth_nb201_fashion.jsonl")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--name", default="proxy_correlation", help="results/NAME.json")
    args = p.parse_args()
    per_seed = {}
    for seed in args.seeds:
        stem = args.truth.name.removesuffix(".jsonl").removeprefix("truth_")
        folder = RESULTS / f"proxies_{stem}-seed{seed}"
        shutil.rmtree(folder, ignore_errors=True)
        res = bench_proxies(
            args.truth,
            available(),
            run=RunDir.create("bench-proxies", folder),
            batch=args.batch,
            seed=seed,
            compute="cpu",
            quiet=True,
        )
        per_seed[seed] = res
        print(f"seed {seed}: AZ tau {res['kendall_tau'][AZ]:.3f}")
    names = list(per_seed[args.seeds[0]]["kendall_tau"])
    taus = {n: [per_seed[s]["kendall_tau"][n] for s in args.seeds] for n in names}
    singles = [n for n in names if n in available()]
    best_single = {s: max(singles, key=lambda n: per_seed[s]["kendall_tau"][n]) for s in args.seeds}
    summary = {
        "schema_version": 2,
        "benchmark": "proxy_correlation",
        "truth": str(args.truth),
        "archs": per_seed[args.seeds[0]]["archs"],
        "protocol": per_seed[args.seeds[0]]["protocol"],
        "proxy_batch": args.batch,
        "seeds": args.seeds,
        "kendall_tau": {
            n: {"per_seed": [round(t, 4) for t in v], "mean": round(float(np.mean(v)), 4)}
            for n, v in sorted(taus.items(), key=lambda kv: -np.mean(kv[1]))
        },
        "spearman_rho_mean": {
            n: round(float(np.mean([per_seed[s]["spearman_rho"][n] for s in args.seeds])), 4) for n in names
        },
        "kendall_tau_interval_per_seed": {
            n: [per_seed[s]["kendall_tau_interval"][n] for s in args.seeds] for n in names
        },
        "az_minus_kendall_tau_per_seed": {
            n: [per_seed[s]["az_minus_kendall_tau"][n] for s in args.seeds] for n in names if n != AZ
        },
        "az_above_every_score_every_seed_resolved": [
            n for n in names if n != AZ and all(per_seed[s]["az_minus_kendall_tau"][n]["low"] > 0 for s in args.seeds)
        ],
        "truth_reliability": per_seed[args.seeds[0]]["truth_reliability"],
        "best_single_proxy_per_seed": {str(s): best_single[s] for s in args.seeds},
        "az_beats_every_single_proxy_every_seed": all(
            per_seed[s]["kendall_tau"][AZ] > per_seed[s]["kendall_tau"][best_single[s]] for s in args.seeds
        ),
        "seconds_per_arch_seed0": per_seed[args.seeds[0]]["seconds_per_arch"],
        "threads": per_seed[args.seeds[0]]["threads"],
    }
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    for n, v in summary["kendall_tau"].items():
        iv = summary["kendall_tau_interval_per_seed"][n][0]
        vs = summary["az_minus_kendall_tau_per_seed"].get(n, [None])[0]
        vs_text = f"  AZ − it {vs['estimate']:+.3f} [{vs['low']:+.3f}, {vs['high']:+.3f}]" if vs else ""
        print(
            f"{n:22s} tau {' '.join(f'{t:.3f}' for t in v['per_seed'])}  mean {v['mean']:.3f}"
            f"  seed {args.seeds[0]}: [{iv['low']:.3f}, {iv['high']:.3f}]{vs_text}"
        )
    rel = summary["truth_reliability"]
    if rel:
        print(f"truth self-agreement (split-half τ over {rel['seeds']} seeds): {rel['split_half_tau']:.3f}")
    print(f"AZ beats every single proxy on every seed: {summary['az_beats_every_single_proxy_every_seed']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
