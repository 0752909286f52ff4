"""`edgenas devices check --arch ARCH --device FILE ...`: an arch's cost against device budgets.

The library function is `edgenas.cost.budget_check.check_devices`. Exit status 1 when a
budget is missed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import data_args, data_kwargs, net_args


def check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True)
    p.add_argument(
        "--device",
        dest="device_files",
        type=Path,
        action="append",
        required=True,
        help="device profile YAML (repeat for several)",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    net_args(p)
    data_args(p)


def handle_check(args: argparse.Namespace) -> int:
    from edgenas.cost.budget_check import check_devices

    res = check_devices(args.arch, args.device_files, latency=not args.no_latency, **data_kwargs(args))
    print_check(res)
    return 0 if res["all_pass"] else 1


def print_check(res: dict[str, Any]) -> None:
    """One budget table per device, then the arch and its shape."""
    from edgenas.report.tables import budget_table, stdout

    for d in res["devices"]:
        note = ""
        if d["profile"].precision != "fp32":  # estimates until `edgenas export --int8` measures the file
            note = f", {d['profile'].precision}: bytes per weight and activation; model size = params x bytes"
        stdout.print(budget_table(f"{d['profile'].name}  ({d['file']}{note})", d["checks"]))
    shape = res["shape"]
    stdout.print(f"arch {res['arch']}  C={shape.width} N={shape.cells} input {shape.input_shape}")


COMMANDS.register(
    "devices",
    Command(
        "device profiles",
        actions={
            "check": Command(
                "measure an arch's cost and check it against device budgets", check_arguments, handle_check
            )
        },
    ),
)
