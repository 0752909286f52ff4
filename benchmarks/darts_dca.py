"""DCA-NAS on the DARTS cell space against random genotypes inside the same params budget (issue 16).

Usage:  .venv/bin/python benchmarks/darts_dca.py [--budget 45000] [--randoms 10] [--seeds 3]
        [--search-width 8] [--k 2] [--search-subset 2000] [--search-epochs 3]
        [--warmup-epochs 1] [--width 8] [--cells 5] [--subset 2000] [--epochs 2]
        [--runs-dir DIR] [--truth FILE] [--threads 1] [--workers 1] [--out FILE]

1. One DCA-NAS search (default `edgenas` variant) on a Fashion-MNIST subset under a params
   budget; the search network has the deployed `--cells` at `--search-width` (partial
   channels `--k`), the budget is costed at the deployed shape (`--width`, `--cells`). The
   derived genotype's exact params and FLOPs are those of the built network.
2. `--randoms` genotypes drawn uniformly (seeded) from the DARTS space, kept when their exact
   params lie in [0.7, 1.0] × budget.
3. The derived genotype and the randoms trained identically, `--seeds` training seeds each
   (`edgenas.bench.truth`, the same protocol as `edgenas bench truth --space darts`; the
   truth file resumes, so a rerun continues where an interruption left it).
4. Mean ± std per genotype; derived − each random paired over the training seeds; the share
   of the randoms whose mean the derived beats; derived − mean of the randoms per seed with
   a 95% t interval over the seeds, and a bootstrap over seeds × randoms.

Writes benchmarks/results/darts_dca.json (+ the search under benchmarks/results/darts_dca/).
A finished search is reused when rerun.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edgenas.bench.stats import bootstrap_difference, mean_std, paired_difference, t_interval
from edgenas.bench.truth import TruthProtocol, build_truth, read_truth
from edgenas.core.device import Budgets, DeviceProfile
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.data import load_dataset
from edgenas.spaces import get_space

RESULTS = Path(__file__).parent / "results"
LOW_SHARE = 0.7  # random genotypes are kept with params in [LOW_SHARE, 1] × budget


def run_search(args: argparse.Namespace, profile: DeviceProfile) -> dict:
    """The DCA-NAS search into RUNS/search (reused when finished, resumed when interrupted)."""
    from edgenas.search.run import resume_search, search

    folder = args.runs_dir / "search"
    if (folder / "results.json").is_file():
        return json.loads((folder / "results.json").read_text())
    if folder.exists():
        return resume_search(folder, compute="cpu", quiet=True)
    options = {
        "seed": args.search_seed,
        "search_width": args.search_width,
        "k": args.k,
        "epochs": args.search_epochs,
        "warmup_epochs": args.warmup_epochs,
    }
    return search(
        method="dca",
        profile=profile,
        dataset="fashion-mnist",
        subset=args.search_subset,
        space="darts",
        width=args.width,
        cells=args.cells,
        options=options,
        compute="cpu",
        run_dir=folder,
        quiet=True,
    )


def exact_cost(arch: str, shape: NetShape) -> dict[str, int]:
    """Params and FLOPs of the built network of `arch` at `shape`."""
    space = get_space("darts")
    net = space.build(space.parse(arch), shape)
    return {"params": count_params(net), "flops": count_flops(net, shape.input_shape)}


def random_in_budget(n: int, budget: int, shape: NetShape, seed: int, exclude: str) -> list[str]:
    """`n` distinct genotypes sampled uniformly, kept when their exact params are in [0.7, 1] × budget."""
    from edgenas.cost.terms import additive_terms

    space = get_space("darts")
    terms = additive_terms(space, "params", shape)  # exact for DARTS genotypes (every point is live)
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        arch = space.sample(rng)
        text = str(arch)
        if text != exclude and text not in out and LOW_SHARE * budget <= terms.of_arch(arch) <= budget:
            out.append(text)
    return out


def report(rows: dict[str, dict], derived: str, randoms: list[str]) -> dict:
    """Per-genotype mean ± std, derived − each random (paired over seeds), share beaten, derived − mean of randoms."""
    d = np.asarray(rows[derived]["test_accuracies"]) * 100
    r = np.asarray([rows[a]["test_accuracies"] for a in randoms]) * 100  # (randoms, seeds)
    per_random = []
    for a, acc in zip(randoms, r, strict=True):
        m, s = mean_std(acc)
        per_random.append(
            {
                "arch": a,
                "params": rows[a]["params"],
                "mean": m,
                "std": s,
                "derived_minus": paired_difference(d, acc).as_dict(),
            }
        )
    beaten = sum(d.mean() > acc.mean() for acc in r)
    dm, ds = mean_std(d)
    return {
        "derived": {"arch": derived, "params": rows[derived]["params"], "mean": dm, "std": ds, "accs": d.tolist()},
        "randoms": per_random,
        "share_beaten": beaten / len(randoms),
        "beaten": int(beaten),
        "derived_minus_random_mean": paired_difference(d, r.mean(axis=0)).as_dict(),
        "derived_minus_random_bootstrap": bootstrap_difference(
            np.repeat(d[:, None], len(randoms), axis=1), r.T
        ).as_dict(),
        "random_mean": t_interval(r.mean(axis=1)).as_dict(),
    }


def print_report(rep: dict, seeds: int, n: int) -> None:
    d = rep["derived"]
    std = f"{d['std']:.2f}" if d["std"] is not None else "-"
    print(f"== {seeds} seed(s) ==")
    print(f"derived: {d['mean']:.2f} ± {std} %, {d['params']} params")
    for i, r in enumerate(rep["randoms"]):
        iv = r["derived_minus"]
        rstd = f"{r['std']:.2f}" if r["std"] is not None else "-"
        print(
            f"random {i}: {r['mean']:.2f} ± {rstd} %, {r['params']} params; "
            f"derived − it {iv['estimate']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}]"
        )
    iv, bs = rep["derived_minus_random_mean"], rep["derived_minus_random_bootstrap"]
    print(f"derived beats {rep['beaten']}/{n} randoms ({rep['share_beaten']:.0%})")
    print(
        f"derived − mean of randoms: {iv['estimate']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}] (t over seeds); "
        f"bootstrap seeds×randoms [{bs['low']:+.2f}, {bs['high']:+.2f}]",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=int, default=45000, help="max params at the deployed shape")
    p.add_argument("--randoms", type=int, default=10)
    p.add_argument("--random-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3, help="training seeds per genotype")
    p.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--search-width", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--search-subset", type=int, default=2000)
    p.add_argument("--search-epochs", type=int, default=3)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--width", type=int, default=8, help="deployed / training width")
    p.add_argument("--cells", type=int, default=5, help="deployed / training cells")
    p.add_argument("--subset", type=int, default=2000, help="training images of the protocol")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of the protocol")
    p.add_argument("--runs-dir", type=Path, default=RESULTS / "darts_dca")
    p.add_argument("--truth", type=Path, help="truth file (default RUNS/truth.jsonl)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="training runs in parallel (each with --threads)")
    p.add_argument("--out", type=Path, default=RESULTS / "darts_dca.json")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    truth = args.truth or args.runs_dir / "truth.jsonl"
    profile = DeviceProfile(name=f"params-{args.budget}", budgets=Budgets(max_params=args.budget))

    t0 = time.time()
    res = run_search(args, profile)
    derived = res["arch"]
    info = load_dataset("fashion-mnist", None, seed=0, val_fraction=0.1, subset=args.subset).info
    shape = NetShape.for_data(info, width=args.width, cells=args.cells)
    cost = exact_cost(derived, shape)
    print(f"search: {res['search_seconds']:.0f}s; derived {derived}")
    print(
        f"exact cost: {cost['params']} params ({cost['params'] / args.budget:.3f} of {args.budget}), "
        f"{cost['flops'] / 1e6:.2f} MFLOPs; fits={res['fits']} repaired={res['repaired']}"
    )

    randoms = random_in_budget(args.randoms, args.budget, shape, args.random_seed, derived)
    summary = {
        "budget": {"max_params": args.budget},
        "search": {
            "space": "darts",
            "dataset": "fashion-mnist",
            "subset": args.search_subset,
            "cells": args.cells,
            "search_width": args.search_width,
            "k": args.k,
            "epochs": args.search_epochs,
            "warmup_epochs": args.warmup_epochs,
            "seed": args.search_seed,
            "search_seconds": res["search_seconds"],
            "arch": derived,
            "fits": res["fits"],
            "repaired": res["repaired"],
            "exact_cost": cost,
            "params_share_of_budget": cost["params"] / args.budget,
        },
        "random_seed": args.random_seed,
        "random_params_range": [LOW_SHARE * args.budget, args.budget],
        "threads": args.threads,
    }
    # seed by seed: every arch's seed 0, then seed 1, ... so an interrupted build leaves whole seeds
    # a rerun starts at the seeds the truth file already holds (its protocol refuses fewer)
    recorded = truth.with_name(truth.name + ".protocol.json")
    first = json.loads(recorded.read_text())["protocol"]["seeds"] if recorded.is_file() else 1
    for seeds in range(min(first, args.seeds), args.seeds + 1):
        protocol = TruthProtocol(
            space="darts",
            dataset="fashion-mnist",
            width=args.width,
            cells=args.cells,
            subset=args.subset,
            epochs=args.epochs,
            seeds=seeds,
        )
        build_truth(truth, protocol, archs=[derived, *randoms], workers=args.workers, quiet=True, threads=args.threads)
        rows = {r["arch"]: r for r in read_truth(truth, seeds)}
        rep = report(rows, derived, randoms)
        out = summary | {
            "protocol": protocol.model_dump(),
            "seeds_done": seeds,
            "truth": str(truth),
            "seconds_per_training_run": sum(r["seconds"] for r in rows.values()) / (len(rows) * seeds),
            "total_seconds": round(time.time() - t0, 1),
            **rep,
        }
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print_report(rep, seeds, len(randoms))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
