"""`edgenas export MODEL|RUN_DIR --onnx` (or `--arch ARCH`): ONNX file, output check, latency.

The library function is `edgenas.export.export_model.export_model`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import data_args, data_kwargs, net_args, positive_int


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", type=Path, help="model.pt or a train run directory")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far; default)")
    p.add_argument("--arch", help="export an untrained architecture instead of a model file")
    p.add_argument("--out", type=Path, help="ONNX file to write (default: next to the model)")
    p.add_argument("--threads", type=positive_int, default=1, help="inference threads (1)")
    p.add_argument("--repeats", type=positive_int, default=100, help="timed runs (100)")
    net_args(p)
    data_args(p)


def handle(args: argparse.Namespace) -> int:
    from edgenas.export.export_model import export_model

    res = export_model(
        args.model, arch=args.arch, out=args.out, threads=args.threads, repeats=args.repeats, **data_kwargs(args)
    )
    print_export(res)
    return 0


def print_export(res: dict[str, Any]) -> None:
    """Latency per backend, then where the ONNX file went and how close it is to PyTorch."""
    from edgenas.report.tables import rows_table, stdout
    from edgenas.report.units import ms

    rows = [
        (
            backend,
            ms(lat["median_ms"]),
            ms(lat["p10_ms"]),
            ms(lat["p90_ms"]),
            ms(lat["spread_ms"]),
            lat["repeats"],
            lat["threads"],
        )
        for backend, lat in res["latency"].items()
    ]
    stdout.print(
        rows_table(
            f"latency, batch 1, input {tuple(res['input_shape'])}",
            ("backend", "median", "p10", "p90", "spread p90-p10", "runs", "threads"),
            rows,
        )
    )
    stdout.print(
        f"ONNX written to {res['onnx_path']}; PyTorch vs ONNX max abs diff {res['max_abs_diff']:.2e} "
        f"(tolerance {res['atol']:.0e})"
    )


COMMANDS.register("export", Command("export to ONNX, verify it, measure latency", arguments, handle))
