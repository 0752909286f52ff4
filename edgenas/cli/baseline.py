"""`edgenas baseline --family mbv3-small|mbv2 --device PROFILE`: the stock MobileNet scaled to fit, trained.

The library function is `edgenas.pipeline.baseline.run_baseline` (multiplier choice:
`largest_fitting`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import data_args, run_dir_args, train_args, train_config


def arguments(p: argparse.ArgumentParser) -> None:
    from edgenas.spaces.mobile.stock import FAMILIES

    p.add_argument("--family", required=True, choices=FAMILIES, help="MobileNetV3-Small or MobileNetV2")
    p.add_argument("--device", dest="profile", type=Path, required=True, help="device profile YAML (its budgets)")
    p.add_argument("--teacher", type=Path, help="plain teacher model file: distil as the run's students are")
    p.add_argument("--kd-weight", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--compute", default="auto", choices=("auto", "cpu", "cuda"), help="torch device (auto)")
    data_args(p)
    train_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    run_dir_args(p, "baseline")


def handle(args: argparse.Namespace) -> int:
    from edgenas.pipeline.baseline import run_baseline
    from edgenas.report.tables import rows_table, stdout

    res = run_baseline(
        args.family,
        args.profile,
        dataset=args.dataset,
        data_dir=args.data_dir,
        subset=args.subset,
        val_fraction=args.val_fraction,
        resize=args.resize,
        train=train_config(args),
        teacher=args.teacher,
        kd={"kd_weight": args.kd_weight, "temperature": args.temperature} if args.teacher else None,
        compute=args.compute,
        run_dir=args.run_dir,
        quiet=args.quiet,
    )
    cost = res["cost"]
    latency = f"{cost['latency_ms']:.3f} ms" if cost["latency_ms"] is not None else "-"
    rows = [
        ("model", f"{res['arch']} (largest multiplier on a 0.05 grid that fits {res['device_profile']})"),
        ("params", f"{cost['params']:,}"),
        ("FLOPs", f"{cost['flops']:,}"),
        ("peak memory", f"{cost['peak_memory_bytes']:,} bytes"),
        ("latency", latency),
        ("test accuracy", f"{res['test_accuracy'] * 100:.2f}% on {res['test_images']} images"),
    ]
    stdout.print(rows_table(f"edgenas baseline {args.family} on {res['device_profile']}", ("", ""), rows))
    stdout.print(f"run directory: {res['run_dir']}  (results.json, model.pt)")
    return 0


COMMANDS.register(
    "baseline", Command("a stock MobileNet (V2 / V3-Small) scaled to fit a device, trained", arguments, handle)
)
