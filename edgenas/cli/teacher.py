"""`edgenas teacher [--generic]`: train a teacher; generic: one teacher aware of the whole student pool (GTN).

The library function is `edgenas.train.train_arch.train_arch` (`command="teacher"`, with
`generic` options for GTN); the default arch is the space's `teacher_arch` (NB201: every edge a
3x3 convolution; DARTS: the DARTS-V2 genotype).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import non_negative, positive_int, trainer_command_args
from edgenas.cli.train import print_training, train
from edgenas.core.errors import ConfigError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="teacher architecture (default: nb201 every edge a 3x3 conv; darts DARTS-V2)")
    p.add_argument("--generic", action="store_true", help="generic teacher (GTN): trained with sampled students")
    p.add_argument("--student-width", type=positive_int, default=8, help="--generic: students' width C (8)")
    p.add_argument("--student-cells", type=positive_int, default=1, help="--generic: students' cells N (1)")
    p.add_argument(
        "--conditioning",
        choices=("film", "none"),
        default="film",
        help="--generic: film, FiLM on the student's capacity code; none, one fixed teacher for all students (film)",
    )
    p.add_argument("--mu", type=non_negative, default=1.0, help="--generic: weight of the KD-awareness term (1.0)")
    p.add_argument(
        "--mu-mode",
        choices=("balanced", "fixed"),
        default="balanced",
        help="--generic: balanced, μ = its gradient norm on the teacher's logits over CE's; fixed, μ·T²KL (balanced)",
    )
    p.add_argument("--temperature", type=float, default=4.0, help="--generic: KD temperature T (4)")
    p.add_argument(
        "--sampler",
        choices=("learned", "uniform"),
        default="learned",
        help="--generic: students from a learnable distribution (architecture loss) or uniform (learned)",
    )
    p.add_argument(
        "--pool",
        nargs="+",
        metavar="FILE_OR_ARCH",
        help="--generic: draw students from these archs (strings, or files of one arch a line) not the whole supernet",
    )
    p.add_argument("--arch-lr", type=non_negative, default=0.05, help="--generic: sampler step η (0.05)")
    p.add_argument("--entropy-weight", type=non_negative, default=1.0, help="--generic: sampler entropy bonus λ (1.0)")
    trainer_command_args(p, "teacher")


def read_pool(items: list[str]) -> list[str]:
    """Arch strings from `--pool`: each item an arch, or a file of one arch a line (`#` comments, blanks skipped)."""
    archs: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
            found = [line for line in lines if line]
            if not found:
                raise ConfigError(f"--pool {item}: the file holds no arch (one arch string a line)")
            archs.extend(found)
        else:
            archs.append(item)
    return archs


def handle(args: argparse.Namespace) -> int:
    from edgenas.distill.teacher_net import default_teacher_arch

    generic = None
    if args.generic:
        generic = {
            "student_width": args.student_width,
            "student_cells": args.student_cells,
            "conditioning": args.conditioning,
            "mu": args.mu,
            "mu_mode": args.mu_mode,
            "temperature": args.temperature,
            "sampler": args.sampler,
            "pool": read_pool(args.pool) if args.pool else None,
            "arch_lr": args.arch_lr,
            "entropy_weight": args.entropy_weight,
        }
    elif args.pool:
        raise ConfigError("--pool is an option of --generic (the students a generic teacher is made aware of)")
    arch = args.arch or (None if args.resume else default_teacher_arch(args.space))
    print_training(train(args, arch, "teacher", generic=generic))
    return 0


COMMANDS.register(
    "teacher", Command("train a teacher; --generic: one teacher aware of the whole student pool", arguments, handle)
)
