"""What the command modules share: argument types (argparse `type=` callables) and argument groups.

Groups add the same flags, with the same defaults and help, wherever a command takes them
(data, network, training, compute, run folder), so one flag means one thing everywhere.
Heavy imports (datasets, spaces) happen inside the groups, when the parser is built.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgenas.core.compute import COMPUTE_CHOICES
from edgenas.core.errors import UserError

TRAIN_DEFAULTS = {"epochs": 3, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4, "schedule": "onecycle"}


# --------------------------------------------------------------------------- argument types
def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1)")
    return value


def _positive_ints(text: str, *, skip_empty: bool, not_ints: str, not_positive: str) -> list[int]:
    """A comma list of integers >= 1; the messages name what the option wants."""
    try:
        values = [int(v) for v in text.split(",") if v.strip() or not skip_empty]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}{not_ints}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}{not_positive}")
    return values


def widths_list(text: str) -> list[int]:
    """`--widths 8,16,32` of profile-device (empty items are skipped)."""
    return _positive_ints(
        text,
        skip_empty=True,
        not_ints=" is not a comma-separated list of ints like 8,16,32",
        not_positive=" must list positive widths, like 8,16,32",
    )


def cells_list(text: str) -> list[int]:
    """`--cells 5,8` of profile-device (empty items are skipped)."""
    return _positive_ints(
        text,
        skip_empty=True,
        not_ints=" is not a comma-separated list of ints like 5,8",
        not_positive=" must list positive cell counts, like 5,8",
    )


def ints_tuple(text: str) -> tuple[int, ...]:
    """`--widths` / `--blocks` of retrieval (an empty item is an error)."""
    values = _positive_ints(
        text,
        skip_empty=False,
        not_ints=" is not a comma-separated list of integers",
        not_positive=": every value must be >= 1",
    )
    return tuple(values)


def option(text: str) -> tuple[str, object]:
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


def levels(text: str) -> list[float] | None:
    """`auto` or a comma list of FLOPs values (suffixes k/M/G allowed, e.g. 4M,8M,12M)."""
    from edgenas.core.yamlio import parse_quantity

    if text.strip().lower() == "auto":
        return None
    try:
        values = [float(parse_quantity(v.strip())) for v in text.split(",") if v.strip()]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: give 'auto' or FLOPs values like 4M,8M,12M") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: levels must be positive FLOPs values like 4M,8M,12M")
    return values


# --------------------------------------------------------------------------- argument groups
def common_args(p: argparse.ArgumentParser) -> None:
    """`--device` (the torch device), its precision switches and `--quiet`."""
    p.add_argument("--device", default="auto", choices=COMPUTE_CHOICES, help="compute device (default: auto)")
    precision_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def data_args(
    p: argparse.ArgumentParser, dataset_help: str = "default: fashion-mnist", val_fraction: bool = True
) -> None:
    """Which images: dataset, folder, subset, held-out share (unless `val_fraction` is False), resize."""
    from edgenas.data import DATASETS

    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS, help=dataset_help)
    p.add_argument("--data-dir", type=Path, help="folder with the dataset files (default: the dataset's usual place)")
    p.add_argument("--subset", type=positive_int, help="use this many training images (stratified, seeded)")
    if val_fraction:
        p.add_argument("--val-fraction", type=fraction, default=0.1, help="share of training images held out (0.1)")
    p.add_argument(
        "--resize", "--resolution", dest="resize", type=positive_int, help="input size: resize images to this side"
    )


def stream_args(p: argparse.ArgumentParser) -> None:
    """How training reads its images: in memory or streamed (see `edgenas.data.stream`)."""
    p.add_argument(
        "--in-memory",
        choices=("auto", "true", "false"),
        default="auto",
        help="hold the data as float tensors (true), decode per batch (false), or auto: stream folders and "
        "datasets over 2 GiB (auto)",
    )
    p.add_argument("--data-workers", type=int, help="processes decoding streamed batches (default: cores - 1)")
    p.add_argument("--skip-bad", action="store_true", help="leave out unreadable images (counted) instead of stopping")


def precision_args(p: argparse.ArgumentParser) -> None:
    """Off-switches for the GPU speed-ups (no effect on CPU, where AMP is never used)."""
    p.add_argument(
        "--no-amp", dest="amp", action="store_const", const=False, help="CUDA: train in fp32 (default: bf16/fp16 AMP)"
    )
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_const",
        const=False,
        help="keep the NCHW memory format (default: channels_last)",
    )


def net_args(p: argparse.ArgumentParser, cells: int = 1) -> None:
    """The search space and the network's width C and cells per stage N."""
    from edgenas.spaces import SPACES

    p.add_argument("--space", default="nb201", choices=SPACES)
    p.add_argument("--width", type=positive_int, default=16, help="channels of the first stage, C (16)")
    p.add_argument(
        "--cells", type=positive_int, default=cells, help=f"cells per stage, N (nb201); all cells (darts) ({cells})"
    )


def train_args(p: argparse.ArgumentParser) -> None:
    """The training protocol (see `train_config`)."""
    p.add_argument("--epochs", type=positive_int, default=TRAIN_DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=positive_int, default=TRAIN_DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=TRAIN_DEFAULTS["lr"], help="peak learning rate (0.1)")
    p.add_argument("--weight-decay", type=float, default=TRAIN_DEFAULTS["weight_decay"])
    p.add_argument("--schedule", choices=("onecycle", "cosine"), default=TRAIN_DEFAULTS["schedule"])
    p.add_argument("--label-smoothing", type=fraction, default=0.0)
    p.add_argument("--augment", choices=("crop-flip", "rrc-flip"), help="training augmentation (none by default)")
    p.add_argument("--seed", type=int, default=0)


def run_dir_args(p: argparse.ArgumentParser, command: str) -> None:
    """Where a command writes its run, and how to continue one that was interrupted."""
    p.add_argument("--run-dir", type=Path, help=f"output folder (default runs/{command}-TIMESTAMP)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")


def non_negative(text: str) -> float:
    """A number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def trainer_command_args(p: argparse.ArgumentParser, command: str) -> None:
    """What train, distill and teacher share: network, data, training, compute, run folder, resume."""
    net_args(p)
    data_args(p)
    stream_args(p)
    train_args(p)
    p.add_argument(
        "--auxiliary-weight",
        type=non_negative,
        default=0.0,
        help="weight of an auxiliary head's loss (DARTS networks; 0.4 in DARTS; default off)",
    )
    p.add_argument(
        "--drop-path",
        type=fraction,
        default=0.0,
        help="drop-path probability, raised linearly over the epochs (DARTS networks; 0.2 in DARTS; default off)",
    )
    common_args(p)
    run_dir_args(p, command)


def compute_run_args(p: argparse.ArgumentParser, compute_help: str, resume_help: str | None = None) -> None:
    """Torch device, seed, run folder (`--resume` too where `resume_help` is given) and --quiet.

    For screen and search, whose `--device` names a device profile, so the torch device is `--compute`.
    """
    p.add_argument("--compute", default="auto", choices=COMPUTE_CHOICES, help=compute_help)
    precision_args(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", type=Path)
    if resume_help is not None:
        p.add_argument("--resume", type=Path, metavar="RUN_DIR", help=resume_help)
    p.add_argument("--quiet", action="store_true")


# --------------------------------------------------------------------------- from flags to options
def train_config(args: argparse.Namespace) -> Any:
    """The `TrainConfig` of the training flags; an invalid value is a `UserError` naming its flag."""
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


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The data and network flags as the library functions' keywords (devices check, export)."""
    return {
        "space": args.space,
        "width": args.width,
        "cells": args.cells,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "resize": args.resize,
    }


def call(fn: Callable[..., Any], args: argparse.Namespace, **overrides: Any) -> Any:
    """Call the library function `fn` with every parsed flag whose name is one of its parameters.

    Flags whose name or value differs from the parameter are passed in `overrides`. So a flag
    a command adds reaches its function by naming it alike, with no list to keep in step.
    """
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds]
    flags = vars(args)
    return fn(**{n: flags[n] for n in params if n in flags and n not in overrides}, **overrides)


# --------------------------------------------------------------------------- command hints
def shell_command(*words: Any, **flags: Any) -> str:
    """A command line a user can paste: `words`, then `--flag value` for every flag not None
    (underscores become dashes), each word quoted for the shell (genotype strings hold quotes)."""
    import shlex

    parts = [str(w) for w in words]
    for name, value in flags.items():
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def network_flags(opts: dict[str, Any]) -> dict[str, Any]:
    """The flags that rebuild the network and data of a run's stored options (space, width, cells, data)."""
    return {
        "space": opts.get("space", "nb201"),  # runs made before --space was recorded are nb201
        "width": opts["width"],
        "cells": opts["cells"],
        "dataset": opts["dataset"],
        "data_dir": opts.get("data_dir"),
        "resize": opts.get("resize"),
    }


def print_hint(label: str, command: str) -> None:
    """`label: command` on one line, unwrapped and without rich markup, so it pastes into a shell as is."""
    from edgenas.report.tables import stdout

    stdout.print(f"{label}: {command}", soft_wrap=True, markup=False, highlight=False)
