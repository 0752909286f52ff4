"""`edgenas report RUN_DIR`: rebuild a finished run's report and print its table.

The library function is `edgenas.report.run_report.write_report`; `run_table` is also
what `edgenas run` prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, metavar="RUN_DIR")


def handle(args: argparse.Namespace) -> int:
    from edgenas.report.run_report import load_run_results, write_report
    from edgenas.report.tables import stdout

    paths = write_report(args.run)
    stdout.print(run_table(load_run_results(args.run)))
    stdout.print(f"report: {paths['html']} (and {paths['md'].name}, {paths['pareto'].name}, {paths['stages'].name})")
    return 0


def run_table(res: dict[str, Any]) -> Any:
    """One row per device of a pipeline run: method, arch, accuracy, costs, budgets verdict."""
    from edgenas.report.tables import rows_table, verdict
    from edgenas.report.units import binary_bytes, ms, si

    rows = [
        (
            d["device"],
            d["selected_by"],
            d["arch"],
            f"{d['test_accuracy'] * 100:.2f}%",
            si(d["cost"]["params"]),
            si(d["cost"]["flops"]),
            binary_bytes(d["cost"]["peak_memory_bytes"]),
            ms(d["cost"]["latency_ms"]),
            verdict(d["all_pass"]),
        )
        for d in res["devices"]
    ]
    return rows_table(
        f"edgenas run {res['name']}: {res['total_seconds'] / 60:.1f} min",
        ("device", "method", "arch", "test acc", "params", "FLOPs", "peak mem", "latency", "budgets"),
        rows,
    )


COMMANDS.register(
    "report", Command("rebuild the report (markdown, HTML, plots) of a finished `edgenas run`", arguments, handle)
)
