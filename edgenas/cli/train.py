"""`edgenas train --arch ARCH`: train one architecture (resumable with `--resume RUN_DIR`).

The library function is `edgenas.train.train_arch.train_arch`, which `distill` and
`teacher` call too; `print_training` is the table all three print.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import train_config, trainer_command_args
from edgenas.core.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="architecture string, e.g. '|nor_conv_3x3~0|+|...|'")
    trainer_command_args(p, "train")


def handle(args: argparse.Namespace) -> int:
    if args.resume is None and args.arch is None:
        raise UserError("edgenas train needs --arch ARCH_STRING (or --resume RUN_DIR)")
    print_training(train(args, args.arch, "train"))
    return 0


def train(args: argparse.Namespace, arch: str | None, command: str, **mode: Any) -> dict[str, Any]:
    """`train_arch` with the flags every trainer command shares; `mode` adds distill's or teacher's."""
    from edgenas.train.train_arch import train_arch

    return train_arch(
        arch or "",
        space=args.space,
        dataset=args.dataset,
        data_dir=args.data_dir,
        width=args.width,
        cells=args.cells,
        train=None if args.resume else train_config(args),
        subset=args.subset,
        val_fraction=args.val_fraction,
        resize=args.resize,
        in_memory=args.in_memory,
        data_workers=args.data_workers,
        skip_bad=args.skip_bad,
        device=args.device,
        run_dir=args.run_dir,
        resume=args.resume,
        quiet=args.quiet,
        auxiliary_weight=args.auxiliary_weight,
        drop_path=args.drop_path,
        command=command,
        **mode,
    )


def print_training(res: dict[str, Any]) -> None:
    """Per-epoch table, test accuracy and the run folder."""
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


COMMANDS.register("train", Command("train one architecture", arguments, handle))
