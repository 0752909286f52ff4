"""A teacher network that can be conditioned on the capacity of the student it teaches (GTN).

The teacher is a network of any registered space (NB201 by default); conditioning
(`CONDITIONING = "film-last-stage"`, recorded in teacher files) is FiLM (Perez et al.,
"FiLM: Visual Reasoning with a General Conditioning Layer", AAAI 2018) on its last-stage
features: a small MLP maps the student's capacity code to a per-channel scale and shift
applied where the network's `head` lets it act (NB201: between the final BN and its ReLU;
DARTS: on the last cell's output, before pooling).
The MLP's output layer starts at zero, so a fresh conditioned teacher is exactly the plain
one, and a plain teacher is the same class without FiLM.

The capacity code itself (scaled log FLOPs and params of the student) is made by
`edgenas.distill.generic_teacher.CapacityCoder`; why FiLM sits after the BN: docs/methods/gtn.md.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.space import Arch, NetShape
from edgenas.spaces import get_space
from edgenas.spaces.nb201.arch import TEACHER_ARCH

CODE_DIM = 2
CONDITIONING = "film-last-stage"
__all__ = ["CODE_DIM", "CONDITIONING", "TEACHER_ARCH", "ConditionedTeacher", "default_teacher_arch"]


def default_teacher_arch(space: str) -> str:
    """The teacher cell `edgenas teacher` and the pipeline use when none is named (`SearchSpace.teacher_arch`)."""
    return get_space(space).teacher_arch


class ConditionedTeacher(nn.Module):
    """A teacher network (of `arch`'s space); with `film=True`, `forward(x, code)` modulates its last-stage features."""

    def __init__(self, arch: Arch, shape: NetShape, film: bool = False, hidden: int = 32) -> None:
        super().__init__()
        self.net = get_space(arch.space_name).build(arch, shape)
        self.arch, self.shape = arch, shape
        channels = self.net.classifier.in_features
        self.film: nn.Sequential | None = None
        if film:
            self.film = nn.Sequential(nn.Linear(CODE_DIM, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
            nn.init.zeros_(self.film[-1].weight)
            nn.init.zeros_(self.film[-1].bias)

    def forward_features(
        self, x: torch.Tensor, code: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and block outputs; `code` is (CODE_DIM,) or (batch, CODE_DIM)."""
        feats = self.net.features(x)
        modulate = None
        if self.film is not None and code is not None:
            film = self.film

            def modulate(h: torch.Tensor) -> torch.Tensor:
                c = code.to(h.device, h.dtype)
                gamma, beta = film(c.expand(h.shape[0], CODE_DIM)).chunk(2, dim=1)
                return h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]

        return self.net.head(feats[-1], modulate), feats

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, code)[0]
