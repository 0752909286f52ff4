"""`edgenas profile-device`: per-op latency table of this machine, or `--check TABLE` against measured networks;
`--kit DIR` writes a profiling kit for a device without edgenas, `--import FILE [--check]` reads its timings back.

The library functions are `edgenas.cost.profile.profile_device`, `check_latency_table`,
`edgenas.cost.lut.kit.write_kit`, `import_timings` and `check_kit`.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import call, cells_list, positive_int, widths_list
from edgenas.core.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="device name; the table goes to NAME.lut.json unless --out")
    p.add_argument("--space", default="nb201", help="search space (nb201, darts, mobile)")
    p.add_argument("--resolution", type=positive_int, help="input side in pixels")
    p.add_argument("--in-channels", type=positive_int, default=1, help="input channels (1)")
    p.add_argument("--classes", type=positive_int, default=10, help="output classes (10)")
    p.add_argument("--widths", type=widths_list, default=[8, 16, 32], help="first-stage widths C to cover (8,16,32)")
    p.add_argument("--threads", type=positive_int, help="inference threads (1; --check: the table's)")
    p.add_argument("--warmup", type=positive_int, help="untimed runs per graph (20; --check: the table's)")
    p.add_argument("--repeats", type=positive_int, help="timed runs per graph (1000; --check: the table's)")
    p.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        help="time the ops float32 or quantized as `export --int8` does (fp32; --check / --import: the table's)",
    )
    p.add_argument(
        "--check",
        nargs="?",
        const=True,
        metavar="TABLE",
        help="measure random networks and compare with TABLE; with --import: compare with the kit's own timings",
    )
    p.add_argument("--kit", type=Path, metavar="DIR", help="write a profiling kit (ONNX graphs + runner.py) into DIR")
    p.add_argument("--import", dest="import_file", type=Path, metavar="FILE", help="make a table from a kit's timings")
    p.add_argument("--n", type=positive_int, default=30, help="--check / --kit: networks to measure (30)")
    p.add_argument("--width", type=positive_int, default=16, help="--check: width C (16)")
    p.add_argument(
        "--cells",
        type=cells_list,
        help="darts: the cell counts N to cover (5,8); --check: one N (nb201 cells per stage: 1; darts: 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="--check / --kit: which networks (0)")
    p.add_argument(
        "--out", type=Path, help="table file (NAME.lut.json); --check: rows JSON (TABLE.check.json); --import: table"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def handle(args: argparse.Namespace) -> int:
    from edgenas.cost.profile import check_latency_table, profile_device

    if args.kit is not None or args.import_file is not None:
        return handle_kit(args)
    if args.check is True:
        raise UserError("profile-device --check needs a TABLE file (or --import FILE, to check with a kit's timings)")
    if args.check is not None:
        args.check = Path(args.check)
        if args.cells is not None and len(args.cells) != 1:
            raise UserError(f"profile-device --check measures networks of one depth; got --cells {args.cells}")
        cells = args.cells[0] if args.cells else None
        res = call(check_latency_table, args, table=args.check, cells=cells)
        print_check(res)
        int8_note(json.loads(args.check.read_text()).get("space", ""), res.get("precision", "fp32"))
        return 0
    if args.name is None or args.resolution is None:
        raise UserError("edgenas profile-device needs --name NAME and --resolution R (or --check TABLE)")
    table = call(profile_device, args, threads=args.threads or 1, precision=args.precision or "fp32")
    print_table(table)
    int8_note(table.space, table.precision)
    return 0


def handle_kit(args: argparse.Namespace) -> int:
    """`--kit DIR`: write a kit; `--import FILE [--check]`: make (and check) a table from its timings."""
    from edgenas.cost import lut
    from edgenas.cost.lut import kit

    if args.kit is not None and args.import_file is not None:
        raise UserError("profile-device: give --kit DIR (write a kit) or --import FILE (read its timings), not both")
    if args.kit is not None:
        if args.resolution is None:
            raise UserError("edgenas profile-device --kit DIR needs --resolution R (and --space, --widths)")
        if args.check is not None:
            raise UserError("profile-device --kit: the check networks are in the kit; check with --import FILE --check")
        manifest = kit.write_kit(
            args.kit,
            space=args.space,
            resolution=args.resolution,
            in_channels=args.in_channels,
            classes=args.classes,
            widths=args.widths,
            cells=args.cells,
            threads=args.threads or 1,
            warmup=args.warmup,
            repeats=args.repeats,
            n=args.n,
            seed=args.seed,
            precision=args.precision or "fp32",
            name=args.name or "device",
            quiet=args.quiet,
        )
        from edgenas.report.tables import stdout

        stdout.print(
            f"kit written to {args.kit}: {len(manifest['graphs'])} {manifest['spec']['precision']} op graphs, "
            f"{len(manifest['nets'])} whole networks. "
            f"Copy the folder to the device and run `python runner.py` there (needs only numpy and onnxruntime); "
            f"then `edgenas profile-device --import {manifest['name']}.timings.json --check`"
        )
        return 0
    if args.check not in (None, True):
        raise UserError("profile-device --import FILE --check takes no TABLE: it checks with the kit's own timings")
    table, data = kit.import_timings(args.import_file, out=args.out, precision=args.precision)
    print_table(table)
    if args.check is True:
        from edgenas.core.atomic import atomic_write_json

        for res in kit.check_kit(table, data):
            shape = res["shape"]
            rows = Path(str(table.path).removesuffix(".json") + f".check-C{shape['width']}N{shape['cells']}.json")
            atomic_write_json(rows, res)
            png = lut.check_plot(rows.with_suffix(".png"), res)
            print_check({**res, "rows_file": str(rows), "plot": str(png), "same_machine": True, "made_on": {}})
    int8_note(table.space, table.precision)
    return 0


def int8_note(space: str, precision: str) -> None:
    """One line warning that DARTS INT8 tables are not reliable yet (docs/methods/lut.md, "INT8 DARTS tables")."""
    from edgenas.report.tables import stdout

    if space == "darts" and precision == "int8":
        stdout.print(
            "[yellow]warning: DARTS INT8 tables are not reliable yet: they under-predict networks whose max pools "
            "onnxruntime runs in NCHW (docs/methods/lut.md, INT8 DARTS tables)[/]"
        )


def print_table(table: Any) -> None:
    """The main entries per width and stage, and where the table went."""
    from edgenas.cost import lut
    from edgenas.report.tables import rows_table, stdout

    stdout.print(
        rows_table(
            f"{table.name}: {table.space} {table.precision} op latencies, {table.threads} thread(s)",
            table.kernels.SUMMARY_COLUMNS,
            lut.summary_rows(table),
        )
    )
    stdout.print(
        f"{len(table.entries)} entries, run overhead {table.overhead_ms * 1e3:.1f} µs, {table.seconds:.0f}s; "
        f"written to {table.path}  (check it: edgenas profile-device --check {shlex.quote(str(table.path))})"
    )


def print_check(res: dict[str, Any]) -> None:
    """MAPE, rank correlations and drift of a table against networks measured here."""
    from edgenas.report.tables import rows_table, stdout

    ref, shape = res["reference"], res["shape"]
    rows = [
        ("networks", f"{res['n']} (C={shape['width']}, N={shape['cells']}, seed {res['seed']})"),
        ("MAPE", f"{res['mape_pct']:.2f} %  (max {res['max_error_pct']:.1f} %, bias {res['bias_pct']:+.2f} %)"),
        ("within ±10 %", f"{res['within_10pct'] * 100:.0f} % of networks"),
        ("Kendall τ", f"{res['kendall_tau']:.3f}"),
        ("Spearman ρ", f"{res['spearman_rho']:.3f}"),
        ("machine drift", f"{ref['drift_pct']:+.1f} % (identity-cell network now vs at profiling)"),
    ]
    stdout.print(rows_table(f"latency table {res['table']} vs measured networks", ("", ""), rows))
    stdout.print(f"rows: {res['rows_file']}  plot: {res['plot']}  ({res['seconds']:.0f}s)")
    if not res["same_machine"]:
        made = res["made_on"]
        stdout.print(
            f"[yellow]note: the table was made on {made['processor']}, onnxruntime {made['onnxruntime']}; "
            f"this is {res['here']['processor']}, onnxruntime {res['here']['onnxruntime']}[/]"
        )


COMMANDS.register("profile-device", Command("per-op latency table of this machine (or --check one)", arguments, handle))
