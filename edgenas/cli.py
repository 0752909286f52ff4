"""The `edgenas` command: a thin argparse layer over the Python functions.

User mistakes (`UserError`) print one line and exit 2; Ctrl-C exits 130 with a hint on
how to resume. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edgenas import __version__
from edgenas.core.compute import COMPUTE_CHOICES
from edgenas.core.errors import Interrupted, UserError

TRAIN_DEFAULTS = {"epochs": 3, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "schedule": "onecycle"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1)")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=COMPUTE_CHOICES, help="compute device (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_args(
    p: argparse.ArgumentParser, dataset_help: str = "default: fashion-mnist", val_fraction: bool = True
) -> None:
    """Which images: dataset, folder, subset, held-out share (unless `val_fraction` is False), resize."""
    from edgenas.data import DATASETS

    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS, help=dataset_help)
    p.add_argument("--data-dir", type=Path, help="folder with the dataset files (default: the dataset's usual place)")
    p.add_argument("--subset", type=_positive_int, help="use this many training images (stratified, seeded)")
    if val_fraction:
        p.add_argument("--val-fraction", type=_fraction, default=0.1, help="share of training images held out (0.1)")
    p.add_argument("--resize", type=_positive_int, help="resize images to this square side")


def _net_args(p: argparse.ArgumentParser, cells: int = 1) -> None:
    from edgenas.spaces import SPACES

    p.add_argument("--space", default="nb201", choices=SPACES)
    p.add_argument("--width", type=_positive_int, default=16, help="channels of the first stage, C (16)")
    p.add_argument("--cells", type=_positive_int, default=cells, help=f"cells per stage, N ({cells})")


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, default=TRAIN_DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=_positive_int, default=TRAIN_DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"], help="peak learning rate (0.1)")
    p.add_argument("--weight-decay", type=float, default=TRAIN_DEFAULTS["weight_decay"])
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default=TRAIN_DEFAULTS["schedule"])
    p.add_argument("--label-smoothing", type=_fraction, default=0.0)
    p.add_argument("--augment", choices=("crop-flip",), help="training augmentation (none by default)")
    p.add_argument("--seed", type=int, default=0)


def _trainer_command_args(p: argparse.ArgumentParser, command: str) -> None:
    """What train, distill and teacher share: network, data, training, compute, run folder, resume."""
    _net_args(p)
    _data_args(p)
    _train_args(p)
    _common(p)
    _run_dir_args(p, command)


def _run_dir_args(p: argparse.ArgumentParser, command: str) -> None:
    """Where a command writes its run, and how to continue one that was interrupted."""
    p.add_argument("--run-dir", type=Path, help=f"output folder (default runs/{command}-TIMESTAMP)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")


def _compute_run_args(p: argparse.ArgumentParser, compute_help: str, resume_help: str | None = None) -> None:
    """Torch device, seed, run folder (`--resume` too where `resume_help` is given) and --quiet.

    For screen and search, whose `--device` names a device profile, so the torch device is `--compute`.
    """
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help=compute_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path)
    if resume_help is not None:
        p.add_argument("--resume", type=Path, metavar="RUN_DIR", help=resume_help)
    p.add_argument("--quiet", action="store_true")


def _train_config(args: argparse.Namespace):
    from pydantic import ValidationError

    from edgenas.train.trainer import TrainConfig

    try:
        return TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            label_smoothing=args.label_smoothing,
            augment=args.augment,
            seed=args.seed,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


# --------------------------------------------------------------------------- commands
TEACHER_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def cmd_train(args: argparse.Namespace) -> int:
    """`edgenas train`, `edgenas distill` and `edgenas teacher`: one trainer, three modes."""
    from edgenas.train.train_arch import train_arch

    command = args.command_name
    arch = getattr(args, "arch", None)
    extra: dict = {}
    if command == "distill":
        arch = args.student
        if args.resume is None and (args.student is None or args.teacher is None):
            raise UserError("edgenas distill needs --student ARCH and --teacher MODEL_FILE (or --resume RUN_DIR)")
        extra["teacher"] = args.teacher
        extra["kd"] = {
            "kd_weight": args.kd_weight,
            "temperature": args.temperature,
            "feature_weight": args.feature_weight,
            "relational_weight": args.relational_weight,
        }
    elif command == "teacher":
        arch = args.arch or TEACHER_ARCH
        if args.generic:
            extra["generic"] = {
                "student_width": args.student_width,
                "student_cells": args.student_cells,
                "mu": args.mu,
                "temperature": args.temperature,
            }
    elif args.resume is None and arch is None:
        raise UserError("edgenas train needs --arch ARCH_STRING (or --resume RUN_DIR)")
    res = train_arch(
        arch or "",
        space=args.space,
        dataset=args.dataset,
        data_dir=args.data_dir,
        width=args.width,
        cells=args.cells,
        train=None if args.resume else _train_config(args),
        subset=args.subset,
        val_fraction=args.val_fraction,
        resize=args.resize,
        device=args.device,
        run_dir=args.run_dir,
        resume=args.resume,
        quiet=args.quiet,
        command=command,
        **extra,
    )
    _print_training(res)
    return 0


def _print_training(res: dict) -> None:
    from edgenas.report.tables import rows_table, stdout

    rows = [
        (
            h["epoch"],
            f"{h['train_loss']:.4f}",
            f"{(h['val_accuracy'] or 0) * 100:.2f}%",
            f"{h['seconds']:.1f}",
            f"{h['images_per_s']:.0f}",
        )
        for h in res["history"]
    ]
    title = f"edgenas {res['command']}  {res['arch']}"
    stdout.print(rows_table(title, ("epoch", "train loss", "val acc", "seconds", "img/s"), rows))
    stdout.print(
        f"test accuracy {res['test_accuracy'] * 100:.2f}% on {res['test_images']} images; "
        f"training {res['train_seconds']:.1f}s on {res['device']} ({res['threads']} threads)"
    )
    stdout.print(f"run directory: {res['run_dir']}  (model.pt)")


def _shape_from_args(args: argparse.Namespace):
    from edgenas.core.space import NetShape
    from edgenas.data import dataset_info

    info = dataset_info(args.dataset, args.data_dir, resize=args.resize)
    return NetShape.for_data(info, args.width, args.cells)


def cmd_devices_check(args: argparse.Namespace) -> int:
    from edgenas.core.device import load_device
    from edgenas.cost.budget_check import check_arch_on_device
    from edgenas.report.tables import budget_table, stdout
    from edgenas.spaces import get_space

    space = get_space(args.space)
    arch = str(space.parse(args.arch))
    shape = _shape_from_args(args)
    failed = False
    for path in args.device_files:
        profile = load_device(path)
        _cost, checks = check_arch_on_device(space, arch, shape, profile, latency=not args.no_latency)
        stdout.print(budget_table(f"{profile.name}  ({path})", checks))
        failed |= any(c.passed is False for c in checks)
    stdout.print(f"arch {arch}  C={shape.width} N={shape.cells} input {shape.input_shape}")
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from edgenas.export.export_model import export_and_measure
    from edgenas.report.tables import rows_table, stdout
    from edgenas.report.units import ms

    if args.model is not None:
        from edgenas.core.space import NetShape
        from edgenas.train.model_file import load_model_file

        model, blob = load_model_file(args.model)
        shape = NetShape(**blob["shape"])
        src = Path(args.model)
        default_out = (src if src.is_dir() else src.parent) / "model.onnx"
    elif args.arch is not None:
        from edgenas.spaces import get_space

        space = get_space(args.space)
        shape = _shape_from_args(args)
        model = space.build(space.parse(args.arch), shape)
        default_out = Path("model.onnx")
    else:
        raise UserError("edgenas export needs a MODEL file / run directory, or --arch ARCH_STRING")
    res = export_and_measure(
        model, shape.input_shape, args.out or default_out, threads=args.threads, repeats=args.repeats
    )
    rows = []
    for backend, lat in res["latency"].items():
        rows.append(
            (
                backend,
                ms(lat["median_ms"]),
                ms(lat["p10_ms"]),
                ms(lat["p90_ms"]),
                ms(lat["spread_ms"]),
                lat["repeats"],
                lat["threads"],
            )
        )
    stdout.print(
        rows_table(
            f"latency, batch 1, input {tuple(shape.input_shape)}",
            ("backend", "median", "p10", "p90", "spread p90-p10", "runs", "threads"),
            rows,
        )
    )
    stdout.print(
        f"ONNX written to {res['onnx_path']}; PyTorch vs ONNX max abs diff {res['max_abs_diff']:.2e} "
        f"(tolerance {res['atol']:.0e})"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edgenas.pipeline.run import run_pipeline
    from edgenas.report.tables import stdout

    res = run_pipeline(
        args.config,
        resume=args.resume,
        run_dir=args.run_dir,
        executor=args.executor,
        address=args.address,
        workers=args.workers,
        threads=args.threads,
        compute=args.compute,
        quiet=args.quiet,
    )
    stdout.print(_run_table(res))
    stdout.print(f"report: {Path(res['run_dir']) / 'report.html'} (and report.md)")
    return 0 if res["all_pass"] else 1


def cmd_report(args: argparse.Namespace) -> int:
    from edgenas.report.run_report import load_run_results, write_report
    from edgenas.report.tables import stdout

    paths = write_report(args.run)
    stdout.print(_run_table(load_run_results(args.run)))
    stdout.print(f"report: {paths['html']} (and {paths['md'].name}, {paths['pareto'].name}, {paths['stages'].name})")
    return 0


def _run_table(res: dict):
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


def cmd_quickstart(args: argparse.Namespace) -> int:
    from edgenas.quickstart import quickstart

    quickstart(
        device_files=args.device_files,
        dataset=args.dataset,
        data_dir=args.data_dir,
        n=args.n,
        epochs=args.epochs,
        subset=args.subset,
        width=args.width,
        cells=args.cells,
        seed=args.seed,
        device=args.device,
        run_dir=args.run_dir,
        quiet=args.quiet,
    )
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    from edgenas.bench.truth import read_arch_list
    from edgenas.core.device import load_device
    from edgenas.core.rundir import RunDir
    from edgenas.data import dataset_info
    from edgenas.proxies.pool import LABELLED_PROXIES, expand_proxy_names
    from edgenas.report.tables import rows_table, stdout
    from edgenas.report.units import binary_bytes, ms, si
    from edgenas.search.screen import run_screen

    names = expand_proxy_names(args.proxies)
    profile = load_device(args.device_file) if args.device_file else None
    archs = read_arch_list(args.archs, args.space) if args.archs else None
    if archs is not None and args.strategy == "evolution":
        raise UserError("--archs scores a given list; it cannot be combined with --strategy evolution")
    info = dataset_info(args.dataset, args.data_dir, resize=args.resize)
    from edgenas.core.space import NetShape

    shape = NetShape.for_data(info, args.width, args.cells)
    run = RunDir.create("screen", args.run_dir)
    run.write_config(
        {
            "command": "screen",
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "func"},
        }
    )
    real = None
    if any(n in LABELLED_PROXIES for n in names):
        from edgenas.data.sample_batch import sample_batch

        real = sample_batch(
            args.dataset,
            args.data_dir,
            batch=args.batch,
            seed=args.seed,
            subset=args.subset,
            val_fraction=args.val_fraction,
            resize=args.resize,
        )
    res = run_screen(
        profile=profile,
        shape=shape,
        names=names,
        real_batch=real,
        space_name=args.space,
        strategy=args.strategy,
        n=args.n,
        archs=archs,
        top=args.top,
        population=args.population,
        batch=args.batch,
        seed=args.seed,
        compute=args.compute,
        run=run,
        quiet=args.quiet,
    )
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
    stdout.print(f"run directory: {run.path}  (results.json, screen.csv, screen.png)")
    return 0


def cmd_bench_truth(args: argparse.Namespace) -> int:
    from edgenas.bench.truth import TruthProtocol, build_truth, read_arch_list
    from edgenas.report.tables import stdout

    if (args.n is None) == (args.archs is None):
        raise UserError("edgenas bench truth needs exactly one of --n N (sample) or --archs FILE (listed)")
    protocol = TruthProtocol(
        space=args.space,
        dataset=args.dataset,
        data_dir=str(args.data_dir) if args.data_dir else None,
        width=args.width,
        cells=args.cells,
        subset=args.subset,
        val_fraction=args.val_fraction,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        seed=args.seed,
    )
    archs = read_arch_list(args.archs, args.space) if args.archs else None
    rows = build_truth(
        args.out,
        protocol,
        n=args.n,
        archs=archs,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        quiet=args.quiet,
    )
    accs = sorted(r["test_accuracy"] for r in rows)
    stdout.print(
        f"{len(rows)} archs in {args.out}; test accuracy min {accs[0] * 100:.2f}% "
        f"median {accs[len(accs) // 2] * 100:.2f}% max {accs[-1] * 100:.2f}%"
    )
    return 0


def cmd_bench_proxies(args: argparse.Namespace) -> int:
    from edgenas.bench.proxy_bench import bench_proxies
    from edgenas.core.rundir import RunDir
    from edgenas.proxies import available
    from edgenas.proxies.pool import expand_proxy_names
    from edgenas.report.tables import rows_table, stdout

    names = expand_proxy_names(args.proxies) if args.proxies else available()
    run = RunDir.create("bench-proxies", args.run_dir)
    run.write_config(
        {
            "command": "bench proxies",
            "options": {"truth": str(args.truth), "proxies": names, "batch": args.batch, "seed": args.seed},
        }
    )
    res = bench_proxies(
        args.truth, names, run=run, batch=args.batch, seed=args.seed, compute=args.compute, quiet=args.quiet
    )
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
            f"proxies vs trained accuracy on {res['archs']} archs ({args.truth})",
            ("proxy", "Kendall τ", "Spearman ρ", "s / arch"),
            rows,
        )
    )
    stdout.print(f"run directory: {run.path}  (results.json, proxies.csv, correlations.png)")
    return 0


def _positive_ints(text: str, *, skip_empty: bool, not_ints: str, not_positive: str) -> list[int]:
    """A comma list of integers >= 1, for argparse types; the messages name what the option wants."""
    try:
        values = [int(v) for v in text.split(",") if v.strip() or not skip_empty]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}{not_ints}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}{not_positive}")
    return values


def _widths(text: str) -> list[int]:
    """`--widths 8,16,32` of profile-device (empty items are skipped)."""
    return _positive_ints(
        text,
        skip_empty=True,
        not_ints=" is not a comma-separated list of ints like 8,16,32",
        not_positive=" must list positive widths, like 8,16,32",
    )


def cmd_search(args: argparse.Namespace) -> int:
    from edgenas.core.device import BudgetCheck
    from edgenas.report.tables import budget_table, stdout
    from edgenas.search.run import resume_search, search

    if args.resume is not None:
        res = resume_search(args.resume, compute=args.compute, quiet=args.quiet)
    elif args.method == "dnad":
        res = _search_dnad(args, search)
    else:
        if args.device_file is None:
            raise UserError("edgenas search needs --device FILE (or --resume RUN_DIR)")
        names = (
            *("epochs", "warmup_epochs", "batch_size", "search_width", "k"),
            *("alpha_lr", "w_lr", "penalty", "lower", "eta_lambda", "entropy_weight", "derive"),
        )
        options = _with_options(args, {k: getattr(args, k) for k in names if getattr(args, k) is not None})
        res = search(method=args.method, device_file=args.device_file, **_search_kwargs(args, options))
    if res["method"] == "dnad":
        return _print_dnad(res)
    stdout.print(f"[bold]{res['arch']}[/]  ({res['method']} for {res['device']}, {res['search_seconds']:.0f}s search)")
    if res["repairs"]:
        stdout.print(f"repaired in {len(res['repairs'])} step(s) from the argmax {res['argmax_arch']}")
    checks = [BudgetCheck(c["budget"], c["limit"], c["value"]) for c in res["checks"]]
    stdout.print(budget_table(res["device"], checks))
    hist = ", ".join(f"{op} {n}" for op, n in res["op_histogram"].items())
    stdout.print(f"ops: {hist}")
    stdout.print(f"run directory: {res['run_dir']}  (results.json, alpha.png, ops.png)")
    stdout.print(f"train it: edgenas train --arch '{res['arch']}' --width {res['target_shape']['width']}")
    return 0


def _option(text: str) -> tuple[str, object]:
    """`KEY=VALUE` for `--option`: the value read as YAML (0.5, true, [4M, 8M], strongest)."""
    import yaml

    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: give KEY=VALUE, e.g. cost_weight=0")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not a YAML scalar or list") from None


def _with_options(args: argparse.Namespace, options: dict) -> dict:
    """The flags' options plus `--option KEY=VALUE` ones; one key given both ways is refused."""
    extra = dict(args.option or [])
    both = sorted(set(extra) & set(options))
    if both:
        raise UserError(f"--option {', '.join(both)}: already given by its own flag; give it once")
    return options | extra


def _levels(text: str) -> list[float] | None:
    """`auto` or a comma list of FLOPs values (suffixes k/M/G allowed, e.g. 4M,8M,12M)."""
    from edgenas.core.yamlio import parse_quantity

    if text.strip().lower() == "auto":
        return None
    try:
        levels = [float(parse_quantity(v.strip())) for v in text.split(",") if v.strip()]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto' or FLOPs values like 4M,8M,12M") from None
    if not levels or min(levels) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: levels must be positive FLOPs values like 4M,8M,12M")
    return levels


def _search_dnad(args: argparse.Namespace, search) -> dict:
    """`edgenas search --method dnad`: the teacher instead of a device, SNPS options."""
    if args.teacher is None:
        raise UserError("edgenas search --method dnad needs --teacher MODEL_FILE (train one with `edgenas teacher`)")
    names = ("epochs", "warmup_epochs", "batch_size", "search_width", "k", "alpha_lr", "w_lr", "levels")
    options = _with_options(args, {k: getattr(args, k) for k in names if getattr(args, k) is not None})
    dca_only = [
        f"--{k.replace('_', '-')}"
        for k in ("penalty", "lower", "eta_lambda", "entropy_weight", "derive")
        if getattr(args, k) is not None
    ]
    if dca_only:
        raise UserError(f"{', '.join(dca_only)}: DCA-NAS options; --method dnad does not take them")
    return search(method="dnad", teacher=args.teacher, **_search_kwargs(args, options))


def _search_kwargs(args: argparse.Namespace, options: dict) -> dict:
    """The keywords of `search` that DCA-NAS and DNAD take alike: data, network, options, compute, run."""
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "subset": args.subset,
        "val_fraction": args.val_fraction,
        "resize": args.resize,
        "space": args.space,
        "width": args.width,
        "cells": args.cells,
        "options": options | {"seed": args.seed},
        "compute": args.compute,
        "run_dir": args.run_dir,
        "quiet": args.quiet,
    }


def _print_dnad(res: dict) -> int:
    from edgenas.report.tables import rows_table, stdout

    rows = [
        (s["arch"], f"{s['flops'] / 1e6:.2f}", s["params"], f"{s['val_accuracy'] * 100:.2f}%", s["epoch"])
        for s in res["pareto"]
    ]
    title = f"DNAD Pareto set: {res['pareto_count']} of {len(res['snapshots'])} snapshots"
    stdout.print(rows_table(title, ("arch", "MFLOPs", "params", "val acc (supernet)", "epoch"), rows))
    span = res["pareto_flops_span"]
    stdout.print(f"FLOPs span {span:.2f}x; {res['search_seconds']:.0f}s search; {res['final_live_ops']} ops left live")
    stdout.print(f"run directory: {res['run_dir']}  (results.json, pareto.png, shrink.png)")
    return 0


def cmd_profile_device(args: argparse.Namespace) -> int:
    from edgenas.core.atomic import atomic_write_json
    from edgenas.core.space import NetShape
    from edgenas.cost import lut
    from edgenas.report.tables import rows_table, stdout

    if args.check is not None:
        table = lut.LatencyTable.load(args.check)
        shape = NetShape(args.width, args.cells, table.in_channels, table.resolution, table.num_classes)
        protocol = {"threads": args.threads, "warmup": args.warmup, "repeats": args.repeats}
        res = lut.check_table(table, shape, args.n, args.seed, **protocol, quiet=args.quiet)
        out = args.out or args.check.with_name(args.check.name.removesuffix(".json") + ".check.json")
        atomic_write_json(out, res)
        png = lut.check_plot(out.with_suffix(".png"), res)
        ref = res["reference"]
        rows = [
            ("networks", f"{res['n']} (C={shape.width}, N={shape.cells}, seed {args.seed})"),
            ("MAPE", f"{res['mape_pct']:.2f} %  (max {res['max_error_pct']:.1f} %, bias {res['bias_pct']:+.2f} %)"),
            ("within ±10 %", f"{res['within_10pct'] * 100:.0f} % of networks"),
            ("Kendall τ", f"{res['kendall_tau']:.3f}"),
            ("Spearman ρ", f"{res['spearman_rho']:.3f}"),
            ("machine drift", f"{ref['drift_pct']:+.1f} % (identity-cell network now vs at profiling)"),
        ]
        stdout.print(rows_table(f"latency table {args.check} vs measured networks", ("", ""), rows))
        stdout.print(f"rows: {out}  plot: {png}  ({res['seconds']:.0f}s)")
        if not res["same_machine"]:
            stdout.print(
                f"[yellow]note: the table was made on {table.processor}, onnxruntime {table.onnxruntime}; "
                f"this is {res['here']['processor']}, onnxruntime {res['here']['onnxruntime']}[/]"
            )
        return 0
    if args.name is None or args.resolution is None:
        raise UserError("edgenas profile-device needs --name NAME and --resolution R (or --check TABLE)")
    if args.space not in lut.SPACES:
        raise UserError(f"--space {args.space!r}: latency tables exist for {', '.join(lut.SPACES)} only")
    table = lut.profile_nb201(
        args.resolution,
        in_channels=args.in_channels,
        num_classes=args.classes,
        widths=args.widths,
        threads=args.threads or 1,
        **{k: getattr(args, k) for k in ("warmup", "repeats") if getattr(args, k) is not None},
        quiet=args.quiet,
        name=args.name,
    )
    out = table.save(args.out or Path(f"{args.name}.lut.json"))
    stdout.print(
        rows_table(
            f"{args.name}: NB201 op latencies, {table.threads} thread(s)", lut.SUMMARY_COLUMNS, lut.summary_rows(table)
        )
    )
    stdout.print(
        f"{len(table.entries)} entries, run overhead {table.overhead_ms * 1e3:.1f} µs, {table.seconds:.0f}s; "
        f"written to {out}  (check it: edgenas profile-device --check {out})"
    )
    return 0


def _ints_tuple(text: str) -> tuple[int, ...]:
    """`--widths` / `--blocks` of retrieval (an empty item is an error)."""
    values = _positive_ints(
        text,
        skip_empty=False,
        not_ints=" is not a comma-separated list of integers",
        not_positive=": every value must be >= 1",
    )
    return tuple(values)


def cmd_retrieval(args: argparse.Namespace) -> int:
    """`edgenas retrieval`: embedding teacher, CDD student or static-KD student (see --role)."""
    from edgenas.report.tables import rows_table, stdout
    from edgenas.tasks.retrieval.stages import run_retrieval

    if args.resume is not None:
        res = run_retrieval(resume=args.resume, device=args.device, quiet=args.quiet)
    else:
        res = run_retrieval(
            role=args.role,
            teacher=str(args.teacher) if args.teacher else None,
            student_like=str(args.student_like) if args.student_like else None,
            budget=args.budget,
            metric=args.budget_metric,
            reset=not args.no_reset,
            dataset=args.dataset,
            data_dir=str(args.data_dir) if args.data_dir else None,
            subset=args.subset,
            test_subset=args.test_subset,
            query_fraction=args.query_fraction,
            resize=args.resize,
            widths=args.widths,
            blocks=args.blocks,
            embed_dim=args.embed_dim,
            epochs=args.epochs,
            finetune_epochs=args.finetune_epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            run_dir=args.run_dir,
            device=args.device,
            quiet=args.quiet,
        )
    m = res["metrics"]
    row = (
        res["role"],
        f"{m['map'] * 100:.2f}",
        f"{m['recall@1'] * 100:.2f}",
        f"{m['recall@5'] * 100:.2f}",
        f"{res['params']:,}",
        f"{res['flops'] / 1e6:.2f}M",
        f"{res['latency_ms']:.3f}",
    )
    cols = ("role", "mAP %", "R@1 %", "R@5 %", "params", "FLOPs", "latency ms")
    stdout.print(rows_table(f"edgenas retrieval  {res['queries']} queries / {res['gallery']} gallery", cols, [row]))
    if "params_reduction" in res:
        fewer = f"{res['params_reduction'] * 100:.1f}% fewer params, {res['flops_reduction'] * 100:.1f}% fewer FLOPs"
        stdout.print(f"vs teacher: {fewer}")
    stdout.print(f"run directory: {res['run_dir']}  (model.pt, model.onnx)")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgenas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edgenas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="the whole pipeline from a config: one trained, verified model per device")
    p.add_argument("config", type=Path, help="run config YAML (see examples/fashion_three_devices.yaml)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run of this config")
    p.add_argument("--run-dir", type=Path, help="folder for the run (default: runs/run-<time>)")
    p.add_argument("--executor", choices=("local", "ray"), help="where independent jobs run (config's, else local)")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    p.add_argument("--workers", type=_positive_int, help="parallel jobs (config's, else 2)")
    p.add_argument("--threads", type=_positive_int, help="torch threads per job (config's, else cores / jobs)")
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help="torch device for training (auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="rebuild the report (markdown, HTML, plots) of a finished `edgenas run`")
    p.add_argument("run", type=Path, metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("train", help="train one architecture")
    p.add_argument("--arch", help="architecture string, e.g. '|nor_conv_3x3~0|+|...|'")
    _trainer_command_args(p, "train")
    p.set_defaults(func=cmd_train, command_name="train")

    p = sub.add_parser("distill", help="train a student with knowledge distillation from a teacher model file")
    p.add_argument("--student", help="student architecture string")
    p.add_argument("--teacher", type=Path, help="teacher model.pt (edgenas teacher, or any edgenas train run)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of Hinton KD (1.0)")
    p.add_argument("--temperature", type=float, default=4.0, help="KD temperature T (4)")
    p.add_argument("--feature-weight", type=float, default=0.0, help="weight of last-stage feature KD (0)")
    p.add_argument("--relational-weight", type=float, default=0.0, help="weight of relational (RKD) KD (0)")
    _trainer_command_args(p, "distill")
    p.set_defaults(func=cmd_train, command_name="distill", width=8)

    p = sub.add_parser("teacher", help="train a teacher; --generic: one teacher aware of the whole student pool")
    p.add_argument("--arch", help="teacher architecture (default: every edge a 3x3 conv)")
    p.add_argument("--generic", action="store_true", help="generic teacher (GTN): trained with sampled students")
    p.add_argument("--student-width", type=_positive_int, default=8, help="--generic: students' width C (8)")
    p.add_argument("--student-cells", type=_positive_int, default=1, help="--generic: students' cells N (1)")
    p.add_argument("--mu", type=float, default=0.1, help="--generic: weight of the T²-scaled KD-awareness term (0.1)")
    p.add_argument("--temperature", type=float, default=4.0, help="--generic: KD temperature T (4)")
    _trainer_command_args(p, "teacher")
    p.set_defaults(func=cmd_train, command_name="teacher")

    p = sub.add_parser("devices", help="device profiles")
    dsub = p.add_subparsers(dest="devices_command", metavar="ACTION", required=True)
    p = dsub.add_parser("check", help="measure an arch's cost and check it against device budgets")
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
    _net_args(p)
    _data_args(p)
    p.set_defaults(func=cmd_devices_check)

    p = sub.add_parser("export", help="export to ONNX, verify it, measure latency")
    p.add_argument("model", nargs="?", type=Path, help="model.pt or a train run directory")
    p.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far; default)")
    p.add_argument("--arch", help="export an untrained architecture instead of a model file")
    p.add_argument("--out", type=Path, help="ONNX file to write (default: next to the model)")
    p.add_argument("--threads", type=_positive_int, default=1, help="inference threads (1)")
    p.add_argument("--repeats", type=_positive_int, default=100, help="timed runs (100)")
    _net_args(p)
    _data_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("quickstart", help="short demo: pick and train one model per example device")
    p.add_argument(
        "--devices",
        dest="device_files",
        type=Path,
        nargs="+",
        help="device profiles (default: examples/devices/*.yaml)",
    )
    p.add_argument("--n", type=_positive_int, default=300, help="candidates to sample (300)")
    p.add_argument("--epochs", type=_positive_int, default=2)
    p.add_argument("--subset", type=_positive_int, default=12000, help="training images (12000)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", type=Path)
    _net_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path)
    _common(p)
    p.set_defaults(func=cmd_quickstart)
    p = sub.add_parser("screen", help="rank archs without training (AZ-NAS) inside a device budget")
    p.add_argument("--device", dest="device_file", type=Path, help="device profile YAML (budgets to respect)")
    p.add_argument("--n", type=_positive_int, default=1000, help="candidates to sample / evaluate (1000)")
    p.add_argument("--top", type=_positive_int, default=20, help="how many to choose (20)")
    p.add_argument("--archs", type=Path, help="score the arch strings in this file (one a line) instead")
    p.add_argument("--proxies", default="az", help="comma-separated proxies; 'az' = the four AZ-NAS ones (az)")
    p.add_argument("--strategy", choices=("random", "evolution"), default="random")
    p.add_argument("--population", type=_positive_int, default=64, help="evolution: parents from the top P-1 (64)")
    p.add_argument("--batch", type=_positive_int, default=64, help="noise batch for the proxies (64)")
    _compute_run_args(p, compute_help="torch device (auto)")
    _net_args(p)
    _data_args(p)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("bench", help="ground truth and figures")
    bsub = p.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    p = bsub.add_parser("truth", help="train N archs with one fixed protocol; one JSON line per arch (resumable)")
    p.add_argument("--n", type=_positive_int, help="number of archs to sample uniformly from the space")
    p.add_argument("--archs", type=Path, help="file of arch strings, one a line (instead of --n)")
    p.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to (rerun to resume)")
    p.add_argument("--workers", type=_positive_int, default=2, help="parallel training jobs (2)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or a Ray cluster")
    p.add_argument("--address", help="--executor ray: address of a Ray cluster (default: start a local one)")
    _net_args(p, cells=1)
    p.set_defaults(width=8)
    _data_args(p)
    p.set_defaults(subset=10000)
    _train_args(p)
    p.set_defaults(epochs=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench_truth)

    p = bsub.add_parser("proxies", help="Kendall tau / Spearman rho of every proxy against a ground truth")
    p.add_argument("--truth", type=Path, required=True, help="ground-truth JSON-lines file (bench truth)")
    p.add_argument("--proxies", help="comma-separated proxies (default: all)")
    p.add_argument("--batch", type=_positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES)
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_bench_proxies)
    p = sub.add_parser(
        "search", help="differentiable search: under a device's budgets (DCA-NAS), or a Pareto set (DNAD)"
    )
    p.add_argument(
        "--method", choices=("dca", "dnad"), default="dca", help="dca: DCA-NAS (default); dnad: shrinking+distillation"
    )
    p.add_argument("--teacher", type=Path, help="dnad: teacher model.pt (edgenas teacher)")
    p.add_argument("--levels", type=_levels, help="dnad: live-FLOPs levels to snapshot at, e.g. 4M,8M,12M (auto)")
    p.add_argument("--device", dest="device_file", type=Path, help="device profile YAML (budgets to search under)")
    p.add_argument("--search-width", type=_positive_int, help="proxy width of the supernet (8)")
    p.add_argument("--k", type=_positive_int, help="partial channels: 1/K of each edge's channels are searched (2)")
    p.add_argument("--epochs", type=_positive_int, help="search epochs, warm-up included (10)")
    p.add_argument("--warmup-epochs", type=int, help="epochs training weights only, before α moves (3)")
    p.add_argument("--batch-size", type=_positive_int, help="(96)")
    p.add_argument("--alpha-lr", type=float, help="Adam step on α (0.05)")
    p.add_argument("--w-lr", type=float, help="SGD step on the weights (0.05)")
    p.add_argument("--penalty", choices=("hinge", "signed"), help="budget penalty form (hinge)")
    p.add_argument("--lower", type=_fraction, help="keep the expected cost above this share of the budget (0.85)")
    p.add_argument("--eta-lambda", type=float, help="dual-ascent step of the multipliers (0.05)")
    p.add_argument(
        "--entropy-weight", type=float, help="final weight of the α-entropy term, ramped over the α epochs (0 = off)"
    )
    p.add_argument(
        "--derive",
        choices=("greedy", "map"),
        help="map: most probable arch inside the budget band (default); greedy: argmax, then repair/fill",
    )
    p.add_argument(
        "--option",
        type=_option,
        action="append",
        metavar="KEY=VALUE",
        help="any other search option by its name in the run's config.yaml, repeatable "
        "(e.g. --option cost_weight=0 --option snapshot_arch=strongest for dnad)",
    )
    _compute_run_args(p, compute_help="torch device (auto)", resume_help="continue an interrupted search")
    _net_args(p)
    _data_args(p)
    p.set_defaults(subset=10000, val_fraction=0.5, func=cmd_search)
    p = sub.add_parser(
        "retrieval",
        help="embedding models for image retrieval; CDD: distil a wide gated student and prune it to --budget",
        description="--role teacher trains an embedding teacher (CE + batch-hard triplet); --role cdd (default) "
        "distils a student as wide as --teacher while shrinking it to --budget, prunes it physically, fine-tunes "
        "and exports it; --role static distils a fixed student the size of --student-like (the static-KD baseline).",
    )
    p.add_argument("--role", choices=("teacher", "cdd", "static"), default="cdd", help="what to train (cdd)")
    p.add_argument("--teacher", type=Path, help="cdd/static: teacher model.pt (from --role teacher)")
    p.add_argument("--student-like", type=Path, help="static: model.pt whose size the student takes (a CDD run)")
    p.add_argument("--budget", type=float, default=0.35, help="cdd: share of the teacher's params/FLOPs kept (0.35)")
    p.add_argument("--budget-metric", choices=("params", "flops", "both"), default="both", help="cdd: (both)")
    p.add_argument("--no-reset", action="store_true", help="cdd: no retrieval-guided gradient resetting (ablation)")
    p.add_argument("--widths", type=_ints_tuple, default=(16, 32, 64), help="teacher: stage widths (16,32,64)")
    p.add_argument("--blocks", type=_ints_tuple, default=(2, 2, 2), help="teacher: blocks per stage (2,2,2)")
    p.add_argument("--embed-dim", type=_positive_int, default=128, help="teacher: embedding size (128)")
    p.add_argument("--epochs", type=_positive_int, default=6, help="teacher/cdd training epochs (6)")
    p.add_argument("--finetune-epochs", type=int, default=2, help="cdd: after pruning; static: added (2)")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (0.1)")
    p.add_argument("--test-subset", type=_positive_int, help="use this many test images for query + gallery")
    p.add_argument("--query-fraction", type=float, default=0.1, help="share of each id's test images as queries")
    p.add_argument("--seed", type=int, default=0)
    _run_dir_args(p, "retrieval")
    _data_args(p, dataset_help="folder: one sub-folder per identity", val_fraction=False)
    _common(p)
    p.set_defaults(func=cmd_retrieval)

    p = sub.add_parser("profile-device", help="per-op latency table of this machine (or --check one)")
    p.add_argument("--name", help="device name; the table goes to NAME.lut.json unless --out")
    p.add_argument("--space", default="nb201", help="search space (nb201)")
    p.add_argument("--resolution", type=_positive_int, help="input side in pixels")
    p.add_argument("--in-channels", type=_positive_int, default=1, help="input channels (1)")
    p.add_argument("--classes", type=_positive_int, default=10, help="output classes (10)")
    p.add_argument("--widths", type=_widths, default=[8, 16, 32], help="first-stage widths C to cover (8,16,32)")
    p.add_argument("--threads", type=_positive_int, help="inference threads (1; --check: the table's)")
    p.add_argument("--warmup", type=_positive_int, help="untimed runs per graph (20; --check: the table's)")
    p.add_argument("--repeats", type=_positive_int, help="timed runs per graph (1000; --check: the table's)")
    p.add_argument("--check", type=Path, metavar="TABLE", help="measure random networks and compare with TABLE")
    p.add_argument("--n", type=_positive_int, default=30, help="--check: networks to measure (30)")
    p.add_argument("--width", type=_positive_int, default=16, help="--check: width C (16)")
    p.add_argument("--cells", type=_positive_int, default=1, help="--check: cells per stage (1)")
    p.add_argument("--seed", type=int, default=0, help="--check: which networks (0)")
    p.add_argument("--out", type=Path, help="table file (NAME.lut.json); --check: rows JSON (TABLE.check.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_profile_device)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"edgenas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        print(f"edgenas: interrupted; {exc.hint}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("edgenas: interrupted", file=sys.stderr)
        return 130


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
