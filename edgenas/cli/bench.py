"""`edgenas bench truth | e2e | proxies`: ground truth (trained accuracies), a run's pick against
the alternatives trained the same way, and proxy correlations.

The library functions are `edgenas.bench.truth.bench_truth`, `edgenas.bench.e2e.bench_e2e` and
`edgenas.bench.proxy_bench.bench_proxies`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import call, data_args, net_args, positive_int, precision_args, train_args
from edgenas.core.compute import COMPUTE_CHOICES


def truth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, help="number of archs to sample uniformly from the space")
    p.add_argument("--archs", type=Path, help="file of arch strings, one a line (instead of --n)")
    p.add_argument("--out", type=Path, help="JSON-lines file to append to (rerun to resume)")
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="training seeds per arch (1); raising it on a built file trains only the new seeds",
    )
    p.add_argument(
        "--reliability",
        type=Path,
        metavar="FILE",
        help="instead of building: print how well FILE's seeds agree (split-half τ, per-arch std)",
    )
    p.add_argument("--workers", type=positive_int, default=2, help="parallel training jobs (2)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    net_args(p, cells=1)
    p.set_defaults(width=8)
    data_args(p)
    p.set_defaults(subset=10000)
    train_args(p)
    p.set_defaults(epochs=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def handle_truth(args: argparse.Namespace) -> int:
    from edgenas.bench.truth import bench_truth, truth_reliability
    from edgenas.core.errors import ConfigError

    if args.reliability is not None:
        if args.out is not None or args.n is not None or args.archs is not None:
            raise ConfigError("--reliability FILE reads a built truth; give it without --out, --n or --archs")
        print_reliability(truth_reliability(args.reliability))
        return 0
    if args.out is None:
        raise ConfigError("edgenas bench truth needs --out FILE (or --reliability FILE to read one)")
    protocol = ("space", "dataset", "data_dir", "width", "cells", "subset", "val_fraction")
    protocol += ("epochs", "batch_size", "lr", "weight_decay", "schedule", "seed", "seeds")
    rows = call(bench_truth, args, **{k: getattr(args, k) for k in protocol})  # **protocol: named here
    print_truth(rows, args.out)
    return 0


def print_truth(rows: list[dict[str, Any]], out: Path) -> None:
    from edgenas.report.tables import stdout

    accs = sorted(r["test_accuracy"] for r in rows)
    seeds = rows[0]["seeds"] if rows else 1
    mean = f"mean of {seeds} seeds, " if seeds > 1 else ""
    stdout.print(
        f"{len(rows)} archs in {out}; test accuracy ({mean}full test set) min {accs[0] * 100:.2f}% "
        f"median {accs[len(accs) // 2] * 100:.2f}% max {accs[-1] * 100:.2f}%"
    )


def print_reliability(rel: dict[str, Any]) -> None:
    """The truth's self-agreement and seed noise, then its protocol."""
    from edgenas.report.tables import stdout

    iv = rel["split_half_interval"]
    halves = "seed 0 vs seed 1" if rel["seeds"] == 2 else f"means of two halves of {rel['seeds'] // 2} seeds"
    p = rel["protocol"]
    stdout.print(f"{rel['archs']} archs × {rel['seeds']} seeds in {rel['truth']}")
    stdout.print(
        f"split-half Kendall τ ({halves}): {rel['split_half_tau']:.3f} "
        f"[{iv['low']:.3f}, {iv['high']:.3f}] ({iv['confidence']:.0%} interval, {iv['method']})"
    )
    stdout.print(
        f"per-arch std over seeds: mean {rel['std_points_mean']:.2f} points, "
        f"max {rel['std_points_max']:.2f} points ({rel['std_points_max_arch']})"
    )
    stdout.print(
        f"spread of the seed means across archs: std {rel['between_arch_std_points']:.2f} points; "
        f"a perfect score would reach τ ≈ {rel['tau_ceiling']:.3f} against the mean of the {rel['seeds']} seeds"
    )
    need = rel["seeds_for_target"]
    reach = (
        "no arch signal above seed noise"
        if need is None
        else f"two truths agree at τ {rel['target_tau']} with ≈ {math.ceil(need)} seeds per arch each"
    )
    stdout.print(
        f"rank ICC (single-seed reliability): {rel['rank_icc']:.3f}; predicted split-half τ "
        f"{rel['predicted_split_half_tau']:.3f}; {reach}"
    )
    stdout.print("protocol: " + ", ".join(f"{k}={v}" for k, v in p.items()))


def proxies_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truth", type=Path, required=True, help="ground-truth JSON-lines file (bench truth)")
    p.add_argument("--proxies", help="comma-separated proxies (default: all)")
    p.add_argument("--batch", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES)
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--quiet", action="store_true")


def handle_proxies(args: argparse.Namespace) -> int:
    from edgenas.bench.proxy_bench import bench_proxies

    print_proxies(call(bench_proxies, args, names=args.proxies))
    return 0


def print_proxies(res: dict[str, Any]) -> None:
    """Kendall τ with its interval and Spearman ρ of every proxy, best first; the truth's self-agreement."""
    from edgenas.report.tables import rows_table, stdout

    order = sorted(res["kendall_tau"], key=lambda n: -res["kendall_tau"][n])
    ivs = res["kendall_tau_interval"]
    rows = [
        (
            n,
            f"{res['kendall_tau'][n]:.3f}",
            f"[{ivs[n]['low']:.3f}, {ivs[n]['high']:.3f}]",
            f"{res['spearman_rho'][n]:.3f}",
            f"{res['seconds_per_arch'][n]:.3f}" if n in res["seconds_per_arch"] else "-",
        )
        for n in order
    ]
    stdout.print(
        rows_table(
            f"proxies vs trained accuracy on {res['archs']} archs ({res['truth']})",
            ("proxy", "Kendall τ", "95% interval", "Spearman ρ", "s / arch"),
            rows,
        )
    )
    rel = res.get("truth_reliability")
    if rel:
        iv = rel["split_half_interval"]
        stdout.print(
            f"truth self-agreement: split-half τ {rel['split_half_tau']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] "
            f"over {rel['seeds']} seeds (per-arch std {rel['std_points_mean']:.2f} points); a noiseless score "
            "judged against the mean of all seeds can exceed it"
        )
        stdout.print(
            f"ceiling: a perfect score would reach τ ≈ {rel['tau_ceiling']:.3f} against this truth "
            f"(rank ICC {rel['rank_icc']:.3f}; edgenas bench truth --reliability explains)"
        )
    else:
        stdout.print("truth self-agreement: unknown (1 seed per arch; build the truth with --seeds 2 to measure it)")
    stdout.print(f"run directory: {res['run_dir']}  (results.json, proxies.csv, correlations.png)")


def e2e_arguments(p: argparse.ArgumentParser) -> None:
    from edgenas.bench.e2e import STOCK

    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished `edgenas run` folder")
    p.add_argument("--seeds", type=positive_int, default=3, help="training seeds per arm (3); more adds seeds")
    p.add_argument("--sample", type=positive_int, help="cost a seeded sample of N archs, not the whole space")
    p.add_argument(
        "--stock",
        nargs="+",
        choices=(*STOCK, "none"),
        default=list(STOCK),
        metavar="FAMILY",
        help=f"stock MobileNets fitted to each device as extra arms ({' '.join(STOCK)}); none: skip them",
    )
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel jobs (2)")
    p.add_argument("--threads", type=positive_int, help="torch threads per job (default: cores / jobs)")
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help="torch device for training (auto)")
    p.add_argument("--gpus-per-job", type=float, help="--executor ray: GPUs per job (default: 1 with CUDA compute)")
    precision_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def handle_e2e(args: argparse.Namespace) -> int:
    from edgenas.bench.e2e import bench_e2e
    from edgenas.report.run_report import e2e_rows
    from edgenas.report.tables import rows_table, stdout

    res = call(bench_e2e, args)
    head, rows = e2e_rows(res)
    stdout.print(rows_table(f"bench e2e {res['name']}: {res['seeds']} seed(s) per arm", head, rows))
    stdout.print(f"{Path(res['run']) / 'e2e.json'}, e2e.png; report: {Path(res['run']) / 'report.html'}")
    return 0


E2E_HELP = (
    "train a run's pick, the largest and a random arch inside every budget and stock MobileNets fitted to it "
    "over seeds (resumable)"
)
TRUTH_HELP = "train N archs × S seeds with one fixed protocol (resumable); --reliability: its seed agreement"
COMMANDS.register(
    "bench",
    Command(
        "ground truth and figures",
        actions={
            "truth": Command(TRUTH_HELP, truth_arguments, handle_truth),
            "e2e": Command(E2E_HELP, e2e_arguments, handle_e2e),
            "proxies": Command(
                "Kendall tau with its bootstrap interval / Spearman rho of every proxy against a ground truth",
                proxies_arguments,
                handle_proxies,
            ),
        },
    ),
)
