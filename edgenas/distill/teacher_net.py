"""A teacher network that can be conditioned on the capacity of the student it teaches (GTN).

The teacher is an NB201 network; conditioning (`CONDITIONING = "film-last-stage"`, recorded
in teacher files) is FiLM (Perez et al., "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018) on its last-stage features: a small MLP maps the student's
capacity code to a per-channel scale and shift applied between the final BN and its ReLU.
The MLP's output layer starts at zero, so a fresh conditioned teacher is exactly the plain
one, and a plain teacher is the same class without FiLM.

The capacity code itself (scaled log FLOPs and params of the student) is made by
`edgenas.distill.generic_teacher.CapacityCoder`; why FiLM sits after the BN: docs/methods/gtn.md.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.core.space import NetShape
from edgenas.spaces.nb201 import NB201Arch, NB201Network

CODE_DIM = 2
CONDITIONING = "film-last-stage"
# The default teacher cell (`edgenas teacher`, the pipeline's teacher): every edge a 3x3 convolution.
TEACHER_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


class ConditionedTeacher(nn.Module):
    """NB201 teacher; with `film=True`, `forward(x, code)` modulates its last-stage features."""

    def __init__(self, arch: NB201Arch, shape: NetShape, film: bool = False, hidden: int = 32) -> None:
        super().__init__()
        self.net = NB201Network(arch, shape)
        self.arch, self.shape = arch, shape
        channels = shape.width * 4
        self.film: nn.Sequential | None = None
        if film:
            self.film = nn.Sequential(nn.Linear(CODE_DIM, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
            nn.init.zeros_(self.film[-1].weight)
            nn.init.zeros_(self.film[-1].bias)

    def forward_features(
        self, x: torch.Tensor, code: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and block outputs; `code` is (CODE_DIM,) or (batch, CODE_DIM)."""
        net = self.net
        feats = [net.stem(x)]
        for block in net.blocks:
            feats.append(block(feats[-1]))
        bn, relu = net.lastact
        h = bn(feats[-1])
        if self.film is not None and code is not None:
            # after the final BN: placed before it, a per-channel scale and shift would be
            # normalised away by the batch statistics and the code would get no gradient
            code = code.to(h.device, h.dtype)
            gamma, beta = self.film(code.expand(h.shape[0], CODE_DIM)).chunk(2, dim=1)
            h = h * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        logits = net.classifier(net.pool(relu(h)).flatten(1))
        return logits, feats

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x, code)[0]
