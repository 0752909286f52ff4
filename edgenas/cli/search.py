"""`edgenas search`: differentiable search under a device's budgets (DCA-NAS) or for a Pareto set (DNAD).

The library functions are `edgenas.search.run.search` and `resume_search`. Flags name the
common options; `--option KEY=VALUE` reaches any other by its name in the run's config.yaml.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import (
    compute_run_args,
    data_args,
    fraction,
    levels,
    net_args,
    network_flags,
    option,
    positive_int,
    print_hint,
    shell_command,
)
from edgenas.core.errors import UserError

# the options both methods take from their own flags, and those only DCA-NAS takes
_SHARED = ("epochs", "warmup_epochs", "batch_size", "search_width", "k", "alpha_lr", "w_lr")
_DCA_ONLY = ("penalty", "lower", "eta_lambda", "entropy_weight", "derive")


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method", choices=("dca", "dnad"), default="dca", help="dca: DCA-NAS (default); dnad: shrinking+distillation"
    )
    p.add_argument("--teacher", type=Path, help="dnad: teacher model.pt (edgenas teacher)")
    p.add_argument("--levels", type=levels, help="dnad: live-FLOPs levels to snapshot at, e.g. 4M,8M,12M (auto)")
    p.add_argument("--device", dest="device_file", type=Path, help="device profile YAML (budgets to search under)")
    p.add_argument("--search-width", type=positive_int, help="proxy width of the supernet (8)")
    p.add_argument("--k", type=positive_int, help="partial channels: 1/K of each edge's channels searched (2; paper 1)")
    p.add_argument("--epochs", type=positive_int, help="search epochs, warm-up included (10)")
    p.add_argument("--warmup-epochs", type=int, help="weights-only epochs first (dca 3; dnad 2, paper 0)")
    p.add_argument("--batch-size", type=positive_int, help="(96)")
    p.add_argument("--alpha-lr", type=float, help="step on α/θ (dca 0.05; dnad 0.1, variant=paper 0.2)")
    p.add_argument("--w-lr", type=float, help="step on the weights (0.05; dnad variant=paper: Adam 5e-4)")
    p.add_argument("--penalty", choices=("hinge", "signed"), help="budget penalty form (hinge; variant=paper: signed)")
    p.add_argument("--lower", type=fraction, help="hold the expected cost above this share of budget (0.85; paper 0)")
    p.add_argument("--eta-lambda", type=float, help="gradient-ascent step of the multipliers (0.05)")
    p.add_argument(
        "--entropy-weight", type=float, help="final weight of the α-entropy term, ramped over the α epochs (0 = off)"
    )
    p.add_argument(
        "--derive",
        choices=("greedy", "map", "top"),
        help="map: most probable arch inside the budget band (default); greedy: argmax, then repair/fill; "
        "top: the top-weighted arch as it is (variant=paper)",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="dca: search at several search budgets and write the lookup graph (lookup_graph.json) that later "
        "searches name with --option lookup_graph=FILE or the profile's lookup_graph",
    )
    p.add_argument(
        "--option",
        type=option,
        action="append",
        metavar="KEY=VALUE",
        help="any other search option by its name in the run's config.yaml, repeatable "
        "(e.g. --option variant=paper; --option cost_weight=0 --option snapshot_arch=strongest for dnad)",
    )
    compute_run_args(p, compute_help="torch device (auto)", resume_help="continue an interrupted search")
    net_args(p)
    data_args(p)
    p.set_defaults(subset=10000, val_fraction=0.5)


def handle(args: argparse.Namespace) -> int:
    from edgenas.search.run import resume_search, search

    if args.resume is not None:
        res = resume_search(args.resume, compute=args.compute, quiet=args.quiet)
    elif args.method == "dnad":
        if args.teacher is None:
            raise UserError(
                "edgenas search --method dnad needs --teacher MODEL_FILE (train one with `edgenas teacher`)"
            )
        options = _options(args, (*_SHARED, "levels"))
        dca_only = [f"--{k.replace('_', '-')}" for k in _DCA_ONLY if getattr(args, k) is not None]
        dca_only += ["--calibrate"] if args.calibrate else []
        if dca_only:
            raise UserError(f"{', '.join(dca_only)}: DCA-NAS options; --method dnad does not take them")
        res = search(method="dnad", teacher=args.teacher, **_search_kwargs(args, options))
    else:
        if args.device_file is None:
            raise UserError("edgenas search needs --device FILE (or --resume RUN_DIR)")
        options = _options(args, (*_SHARED, *_DCA_ONLY))
        res = search(
            method=args.method, device_file=args.device_file, calibrate=args.calibrate, **_search_kwargs(args, options)
        )
    if res.get("calibrate"):
        print_calibration(res)
    elif res["method"] == "dnad":
        print_dnad(res)
    else:
        print_dca(res)
    return 0


def _options(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options given by their flags plus `--option KEY=VALUE` ones; one key given both ways is refused."""
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    extra = dict(args.option or [])
    both = sorted(set(extra) & set(options))
    if both:
        raise UserError(f"--option {', '.join(both)}: already given by its own flag; give it once")
    return options | extra


def _search_kwargs(args: argparse.Namespace, options: dict[str, Any]) -> dict[str, Any]:
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


def print_dca(res: dict[str, Any]) -> None:
    """The derived arch, its repairs, the budget table and how to train it."""
    from edgenas.core.device import BudgetCheck
    from edgenas.report.tables import budget_table, stdout

    stdout.print(f"[bold]{res['arch']}[/]  ({res['method']} for {res['device']}, {res['search_seconds']:.0f}s search)")
    if res["repairs"]:
        stdout.print(f"repaired in {len(res['repairs'])} step(s) from the argmax {res['argmax_arch']}")
    checks = [BudgetCheck(c["budget"], c["limit"], c["value"]) for c in res["checks"]]
    stdout.print(budget_table(res["device"], checks))
    hist = ", ".join(f"{op} {n}" for op, n in res["op_histogram"].items())
    stdout.print(f"ops: {hist}")
    stdout.print(f"run directory: {res['run_dir']}  (results.json, alpha.png, ops.png)")
    print_hint("train it", shell_command("edgenas", "train", arch=res["arch"], **_run_flags(res)))


def _run_flags(res: dict[str, Any]) -> dict[str, Any]:
    """The network and data flags of the search run that produced `res` (from its config.yaml)."""
    from edgenas.core.rundir import RunDir

    return network_flags(RunDir.open_existing(res["run_dir"], "search").read_config()["options"])


def print_calibration(res: dict[str, Any]) -> None:
    """The lookup graph's points and the search budgets it gives this device."""
    from edgenas.report.tables import rows_table, stdout

    rows = [
        (f"{r['share']:.2f}", r["arch"], ", ".join(f"{n}: {r['costs'][n[4:]]:.4g}" for n in r["search_budgets"]))
        for r in res["searches"]
    ]
    stdout.print(rows_table("DCA-NAS lookup graph", ("search budget share", "top-weighted arch", "exact cost"), rows))
    picked = ", ".join(
        f"{n} {v:.4g} (device {res['budgets'][n]:.4g})" for n, v in res["search_budgets_for_device"].items()
    )
    stdout.print(f"search budgets for {res['device']}: {picked}; {res['search_seconds']:.0f}s of searches")
    stdout.print(f"lookup graph: {res['lookup_graph']}  (--option lookup_graph=FILE, or a profile's lookup_graph)")


def print_dnad(res: dict[str, Any]) -> None:
    """The Pareto set of the snapshots."""
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
    if res["pareto"]:
        distill = shell_command(
            "edgenas", "distill", student=res["pareto"][0]["arch"], teacher=res["teacher"], **_run_flags(res)
        )
        print_hint("distill one", distill)


COMMANDS.register(
    "search",
    Command("differentiable search: under a device's budgets (DCA-NAS), or a Pareto set (DNAD)", arguments, handle),
)
