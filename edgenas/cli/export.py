"""`edgenas export MODEL|RUN_DIR --onnx` (or `--arch ARCH`): ONNX file, output check, latency;
`--int8` adds the INT8 file and its accuracy, size, memory and latency next to float32.

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
    p.add_argument("--int8", action="store_true", help="also write the INT8 model (onnxruntime static, QDQ)")
    p.add_argument(
        "--calibration", choices=("minmax", "entropy", "percentile"), default="minmax", help="--int8 ranges (minmax)"
    )
    p.add_argument("--calibration-images", type=positive_int, help="--int8: seeded training images to calibrate (256)")
    p.add_argument("--qat", type=positive_int, metavar="EPOCHS", help="--int8: quantization-aware fine-tuning epochs")
    p.add_argument(
        "--qat-threshold", type=float, help="--int8 --qat: fine-tune when INT8 loses more points than this (1.0)"
    )
    p.add_argument("--seed", type=int, default=0, help="--int8: calibration sample and fine-tuning seed (0)")
    p.add_argument(
        "--no-compact",
        dest="compact",
        action="store_false",
        help="keep the exporter's tensor names and shape annotations (default: short names, none)",
    )
    net_args(p)
    data_args(p)


def handle(args: argparse.Namespace) -> int:
    from edgenas.export.export_model import export_model

    res = export_model(
        args.model,
        arch=args.arch,
        out=args.out,
        threads=args.threads,
        repeats=args.repeats,
        int8=args.int8,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
        qat=args.qat,
        qat_threshold=args.qat_threshold,
        seed=args.seed,
        compact=args.compact,
        **data_kwargs(args),
    )
    print_export(res)
    if "int8" in res:
        print_int8(res["int8"])
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


def print_int8(res: dict[str, Any]) -> None:
    """float32 and INT8 (and the QAT INT8 when made) side by side."""
    from edgenas.report.tables import rows_table, stdout
    from edgenas.report.units import binary_bytes, ms

    arms = [("float32", res["fp32"]), ("INT8", res["int8"])]
    if "qat" in res:
        arms.append((f"INT8 after {res['qat']['epochs']} QAT epochs", res["qat"]["int8"]))
    rows = [
        (
            name,
            f"{100 * arm['test_accuracy']:.2f} %",
            binary_bytes(arm["model_bytes"]),
            binary_bytes(arm["peak_memory_bytes"]),
            ms(arm["latency_ms"]) if arm["latency_ms"] is not None else "-",
        )
        for name, arm in arms
    ]
    q = res["quantization"]
    stdout.print(
        rows_table(
            f"INT8 ({q['format']}, {q['calibration']} calibration on {q['calibration_images']} images) "
            f"vs float32, {res['test_images']} test images",
            ("model", "test accuracy", "file", "peak activations", "latency"),
            rows,
        )
    )
    lat = f", latency x{res['latency_ratio']:.2f}" if res["latency_ratio"] is not None else ""
    stdout.print(f"INT8: {res['accuracy_drop_points']:+.2f} points lost, {res['size_ratio']:.2f}x smaller{lat}")
    if "advice" in res:
        stdout.print(f"[yellow]{res['advice']}[/]")


COMMANDS.register("export", Command("export to ONNX, verify it, measure latency", arguments, handle))
