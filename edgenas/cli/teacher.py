"""`edgenas teacher [--generic]`: train a teacher; generic: one teacher aware of the whole student pool (GTN).

The library function is `edgenas.train.train_arch.train_arch` (`command="teacher"`, with
`generic` options for GTN); the default arch is the space's `teacher_arch` (NB201: every edge a
3x3 convolution; DARTS: the DARTS-V2 genotype).
"""

from __future__ import annotations

import argparse

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import positive_int, trainer_command_args
from edgenas.cli.train import print_training, train


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", help="teacher architecture (default: nb201 every edge a 3x3 conv; darts DARTS-V2)")
    p.add_argument("--generic", action="store_true", help="generic teacher (GTN): trained with sampled students")
    p.add_argument("--student-width", type=positive_int, default=8, help="--generic: students' width C (8)")
    p.add_argument("--student-cells", type=positive_int, default=1, help="--generic: students' cells N (1)")
    p.add_argument("--mu", type=float, default=0.1, help="--generic: weight of the T²-scaled KD-awareness term (0.1)")
    p.add_argument("--temperature", type=float, default=4.0, help="--generic: KD temperature T (4)")
    trainer_command_args(p, "teacher")


def handle(args: argparse.Namespace) -> int:
    from edgenas.distill.teacher_net import default_teacher_arch

    generic = None
    if args.generic:
        generic = {
            "student_width": args.student_width,
            "student_cells": args.student_cells,
            "mu": args.mu,
            "temperature": args.temperature,
        }
    arch = args.arch or (None if args.resume else default_teacher_arch(args.space))
    print_training(train(args, arch, "teacher", generic=generic))
    return 0


COMMANDS.register(
    "teacher", Command("train a teacher; --generic: one teacher aware of the whole student pool", arguments, handle)
)
