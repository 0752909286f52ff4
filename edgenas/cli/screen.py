"""`edgenas screen`: rank archs without training (AZ-NAS) inside a device's budgets.

The library function is `edgenas.search.screen.screen`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import call, compute_run_args, data_args, net_args, positive_int


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", dest="device_file", type=Path, help="device profile YAML (budgets to respect)")
    p.add_argument("--n", type=positive_int, default=1000, help="candidates to sample / evaluate (1000)")
    p.add_argument("--top", type=positive_int, default=20, help="how many to choose (20)")
    p.add_argument("--archs", type=Path, help="score the arch strings in this file (one a line) instead")
    p.add_argument("--proxies", default="az", help="comma-separated proxies; 'az' = the four AZ-NAS ones (az)")
    p.add_argument("--strategy", choices=("random", "evolution"), default="random")
    p.add_argument("--population", type=positive_int, default=64, help="evolution: parents from the top P-1 (64)")
    p.add_argument("--batch", type=positive_int, default=64, help="noise batch for the proxies (64)")
    compute_run_args(p, compute_help="torch device (auto)")
    net_args(p)
    data_args(p)


def handle(args: argparse.Namespace) -> int:
    from edgenas.search.screen import screen

    print_screen(call(screen, args))
    return 0


def print_screen(res: dict[str, Any]) -> None:
    """The chosen archs, best first, with their costs."""
    from edgenas.report.tables import rows_table, stdout
    from edgenas.report.units import binary_bytes, ms, si

    rows = [
        (
            r["rank"],
            r["arch"],
            f"{r['az_score']:.3f}",
            si(r["params"]),
            si(r["flops"]),
            binary_bytes(r["peak_memory_bytes"]),
            ms(r["latency_ms"]),
        )
        for r in res["chosen"]
    ]
    stdout.print(
        rows_table(
            f"top {len(rows)} of {res['candidates_in_budget']} in budget "
            f"({res['rejected_over_budget']} over budget dropped), {res['search_seconds']:.0f}s",
            ("rank", "arch", "score", "params", "FLOPs", "peak mem", "latency"),
            rows,
        )
    )
    stdout.print(f"run directory: {res['run_dir']}  (results.json, screen.csv, screen.png)")


COMMANDS.register("screen", Command("rank archs without training (AZ-NAS) inside a device budget", arguments, handle))
