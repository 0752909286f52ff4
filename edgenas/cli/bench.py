"""`edgenas bench truth | proxies`: ground truth (trained accuracies) and proxy correlations.

The library functions are `edgenas.bench.truth.bench_truth` and
`edgenas.bench.proxy_bench.bench_proxies`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import call, data_args, net_args, positive_int, train_args
from edgenas.core.compute import COMPUTE_CHOICES


def truth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=positive_int, help="number of archs to sample uniformly from the space")
    p.add_argument("--archs", type=Path, help="file of arch strings, one a line (instead of --n)")
    p.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to (rerun to resume)")
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
    from edgenas.bench.truth import bench_truth

    protocol = ("space", "dataset", "data_dir", "width", "cells", "subset", "val_fraction")
    protocol += ("epochs", "batch_size", "lr", "weight_decay", "schedule", "seed")
    rows = call(bench_truth, args, **{k: getattr(args, k) for k in protocol})  # **protocol: named here
    print_truth(rows, args.out)
    return 0


def print_truth(rows: list[dict[str, Any]], out: Path) -> None:
    from edgenas.report.tables import stdout

    accs = sorted(r["test_accuracy"] for r in rows)
    stdout.print(
        f"{len(rows)} archs in {out}; test accuracy min {accs[0] * 100:.2f}% "
        f"median {accs[len(accs) // 2] * 100:.2f}% max {accs[-1] * 100:.2f}%"
    )


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
    """Kendall τ and Spearman ρ of every proxy, best first."""
    from edgenas.report.tables import rows_table, stdout

    order = sorted(res["kendall_tau"], key=lambda n: -res["kendall_tau"][n])
    rows = [
        (
            n,
            f"{res['kendall_tau'][n]:.3f}",
            f"{res['spearman_rho'][n]:.3f}",
            f"{res['seconds_per_arch'][n]:.3f}" if n in res["seconds_per_arch"] else "-",
        )
        for n in order
    ]
    stdout.print(
        rows_table(
            f"proxies vs trained accuracy on {res['archs']} archs ({res['truth']})",
            ("proxy", "Kendall τ", "Spearman ρ", "s / arch"),
            rows,
        )
    )
    stdout.print(f"run directory: {res['run_dir']}  (results.json, proxies.csv, correlations.png)")


def e2e_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished `edgenas run` folder")
    p.add_argument("--seeds", type=positive_int, default=3, help="training seeds per arm (3); more adds seeds")
    p.add_argument("--sample", type=positive_int, help="cost a seeded sample of N archs, not the whole space")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=positive_int, default=2, help="parallel jobs (2)")
    p.add_argument("--threads", type=positive_int, help="torch threads per job (default: cores / jobs)")
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help="torch device for training (auto)")
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


E2E_HELP = "train a run's pick, the largest and a random arch inside every budget over seeds (resumable)"
TRUTH_HELP = "train N archs with one fixed protocol; one JSON line per arch (resumable)"
COMMANDS.register(
    "bench",
    Command(
        "ground truth and figures",
        actions={
            "truth": Command(TRUTH_HELP, truth_arguments, handle_truth),
            "e2e": Command(E2E_HELP, e2e_arguments, handle_e2e),
            "proxies": Command(
                "Kendall tau / Spearman rho of every proxy against a ground truth", proxies_arguments, handle_proxies
            ),
        },
    ),
)
