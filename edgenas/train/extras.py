"""Final-training extras of DARTS' evaluation protocol: an auxiliary head and drop-path.

Liu et al. (DARTS, ICLR 2019) train the final network with an auxiliary classifier on the
output of cell 2N/3, its cross-entropy added with weight 0.4, and drop-path on every op but
the identity, its probability raised linearly from 0 over the epochs (`drop_path_prob ·
epoch / epochs`). A network offers them with `enable_training_extras(auxiliary,
drop_path_prob)` (`DartsNetwork` does); both are off by default, and the auxiliary head is
removed before the model file is written, so it is never deployed, exported or costed.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.core.seeding import derive_seed
from edgenas.train.trainer import ClassificationHooks, LossFn, Trainer


def wanted(opts: dict[str, Any]) -> bool:
    """True if the run's options switch on an auxiliary head or drop-path (old runs have neither key)."""
    return bool(opts.get("auxiliary_weight") or opts.get("drop_path"))


def check_options(auxiliary_weight: float, drop_path: float) -> None:
    if not auxiliary_weight >= 0:
        raise ConfigError(f"--auxiliary-weight must be >= 0, got {auxiliary_weight}")
    if not 0 <= drop_path < 1:
        raise ConfigError(f"--drop-path must be in [0, 1), got {drop_path}")


def supports(model: nn.Module) -> bool:
    return callable(getattr(model, "enable_training_extras", None))


def refuse_unsupported(model: nn.Module, space: str) -> None:
    """A one-line `ConfigError` when the space's networks have no auxiliary head or drop-path."""
    if not supports(model):
        raise ConfigError(
            f"--auxiliary-weight / --drop-path: the {space} space's networks have no auxiliary head or "
            "drop-path (DARTS networks have: --space darts)"
        )


def target(trained: nn.Module) -> nn.Module:
    """The space network inside what the trainer trains: a distiller's student, a generic teacher's net."""
    from edgenas.distill.generic_teacher import GenericTeacherPair
    from edgenas.distill.kd import Distiller

    if isinstance(trained, GenericTeacherPair):
        return trained.teacher.net
    if isinstance(trained, Distiller):
        return trained.student
    return trained


def enable(net: nn.Module, opts: dict[str, Any], seed: int) -> None:
    """Add the auxiliary head (initialised from its own seed, so the network's init is unchanged) and drop-path."""
    aux = float(opts.get("auxiliary_weight") or 0.0)
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, "auxiliary-head"))
        net.enable_training_extras(auxiliary=aux > 0, drop_path_prob=float(opts.get("drop_path") or 0.0))


def auxiliary_loss(base: LossFn, net: nn.Module, weight: float) -> LossFn:
    """`base` plus `weight` · CE of the auxiliary head's logits of the same forward pass (training only)."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        net.aux_logits = None
        total = base(model, x, y)
        aux, net.aux_logits = net.aux_logits, None
        return total if aux is None else total + weight * F.cross_entropy(aux, y)

    return loss


class DropPathSchedule(ClassificationHooks):
    """Classification hooks that raise the network's drop-path probability linearly with the epoch (DARTS)."""

    def __init__(self, net: nn.Module, drop_path: float) -> None:
        self.net, self.drop_path = net, drop_path

    def before_epoch(self, trainer: Trainer) -> None:
        self.net.drop_path_prob = self.drop_path * trainer.epoch / trainer.cfg.epochs
