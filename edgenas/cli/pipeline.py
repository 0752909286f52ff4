"""`edgenas run CONFIG | --example NAME`: the whole pipeline; `edgenas quickstart`: the quick example.

The library function is `edgenas.pipeline.run.run_pipeline`; the printed table is the
report's (`edgenas.cli.report.run_table`). Exit status 1 when a device misses a budget.
(The module is not `run.py`: importing it would replace the function `edgenas.cli.run`.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import call, positive_int, precision_args
from edgenas.core.compute import COMPUTE_CHOICES


def _run_options(p: argparse.ArgumentParser) -> None:
    """Where and how the pipeline runs (everything but what it runs)."""
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run of this config")
    p.add_argument("--run-dir", type=Path, help="folder for the run (default: runs/run-<time>)")
    p.add_argument("--executor", choices=("local", "ray"), help="where independent jobs run (config's, else local)")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=positive_int, help="parallel jobs (config's, else 2)")
    p.add_argument("--threads", type=positive_int, help="torch threads per job (config's, else cores / jobs)")
    p.add_argument(
        "--gpus-per-job", type=float, help="--executor ray: GPUs per job (config's, else 1 with CUDA compute, else 0)"
    )
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help="torch device for training (auto)")
    precision_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, nargs="?", help="run config YAML (see examples/fashion_three_devices.yaml)")
    p.add_argument("--example", metavar="NAME", help="run a config shipped with edgenas instead (quick: a short demo)")
    _run_options(p)


def handle(args: argparse.Namespace) -> int:
    from edgenas.pipeline.run import run_pipeline

    res = call(run_pipeline, args, config_file=args.config)
    print_run(res)
    return 0 if res["all_pass"] else 1


def print_run(res: dict) -> None:
    from edgenas.cli.report import run_table
    from edgenas.report.tables import stdout

    stdout.print(run_table(res))
    stdout.print(f"report: {Path(res['run_dir']) / 'report.html'} (and report.md)")


def handle_quickstart(args: argparse.Namespace) -> int:
    """The old demo command, now the packaged `quick` run config."""
    from edgenas.report.tables import stdout

    stdout.print("edgenas quickstart runs `edgenas run --example quick`")
    return handle(argparse.Namespace(**{**vars(args), "config": None, "example": "quick"}))


COMMANDS.register(
    "run", Command("the whole pipeline from a config: one trained, verified model per device", arguments, handle)
)
COMMANDS.register(
    "quickstart", Command("short demo: the same as `edgenas run --example quick`", _run_options, handle_quickstart)
)
