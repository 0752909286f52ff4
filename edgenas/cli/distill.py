"""`edgenas distill --student ARCH --teacher MODEL`: train a student with knowledge distillation.

The library function is `edgenas.train.train_arch.train_arch` with a `teacher` and `kd`
options (CE + Hinton KD, optional feature and relational KD); a generic teacher with FiLM
is conditioned on the student's capacity, one without (`--conditioning none`) teaches as a plain one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgenas.cli import COMMANDS, Command
from edgenas.cli._args import trainer_command_args
from edgenas.cli.train import print_training, train
from edgenas.core.errors import UserError


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--student", help="student architecture string")
    p.add_argument("--teacher", type=Path, help="teacher model.pt (edgenas teacher, or any edgenas train run)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of Hinton KD (1.0)")
    p.add_argument("--temperature", type=float, default=4.0, help="KD temperature T (4)")
    p.add_argument("--feature-weight", type=float, default=0.0, help="weight of last-stage feature KD (0)")
    p.add_argument("--relational-weight", type=float, default=0.0, help="weight of relational (RKD) KD (0)")
    trainer_command_args(p, "distill")
    p.set_defaults(width=8)


def handle(args: argparse.Namespace) -> int:
    if args.resume is None and (args.student is None or args.teacher is None):
        raise UserError("edgenas distill needs --student ARCH and --teacher MODEL_FILE (or --resume RUN_DIR)")
    kd = {
        "kd_weight": args.kd_weight,
        "temperature": args.temperature,
        "feature_weight": args.feature_weight,
        "relational_weight": args.relational_weight,
    }
    print_training(train(args, args.student, "distill", teacher=args.teacher, kd=kd))
    return 0


COMMANDS.register(
    "distill", Command("train a student with knowledge distillation from a teacher model file", arguments, handle)
)
