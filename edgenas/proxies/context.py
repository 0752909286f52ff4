"""The per-candidate state shared by all proxies: the re-initialised model, the noise batch, one forward pass.

Why one object: the four AZ-NAS proxies are defined on the *same* forward pass of the *same*
noise batch through the *same* freshly initialised weights (spec az-nas.md §1.0). Building that
once per candidate and caching derived values keeps the cost at one forward plus one chain of
local VJPs, and makes the proxies consistent with each other by construction.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgenas.core.errors import UserError
from edgenas.core.seeding import torch_generator
from edgenas.cost._runtime import check_batch, check_input_shape

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


@torch.no_grad()
def reinit_(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise `model` in place the way AZ-NAS scores candidates.

    Conv2d/Linear weights: Kaiming-normal, fan_in, ReLU gain (std = sqrt(2 / fan_in)); biases 0;
    affine BN/GroupNorm: gamma 1, beta 0 (also the last BN of a residual branch, which training
    recipes often zero). Draws are made on CPU from `generator` and copied over, so the weights do
    not depend on the device.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            fan_in = w[0].numel()
            std = math.sqrt(2.0 / fan_in)
            w.copy_(torch.randn(w.shape, generator=generator, dtype=torch.float32) * std)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, _NORMS) and m.weight is not None:
            m.weight.fill_(1.0)
            m.bias.zero_()


class ProxyContext:
    """One candidate network prepared for training-free scoring.

    The constructor deep-copies `model` (scoring must not overwrite the weights a caller holds),
    moves the copy to `device` in fp32, re-initialises it (`reinit=True`, the spec's default) and
    puts it in `train()` mode so BN normalises with the noise batch's own statistics. The input is
    one N(0, 1) batch of shape `(batch, *input_shape)` drawn from `seed`.

    `features` runs `forward_features` lazily, once, and keeps the primary-block outputs in the
    autograd graph (with `retain_grad`) for the trainability VJPs. `cache` holds values that
    several proxies share (per-block expressivity, per-block trainability); the owning proxy
    module decides the keys.
    """

    def __init__(
        self,
        model: nn.Module,
        input_shape: Sequence[int],
        *,
        batch: int = 64,
        seed: int = 0,
        device: str | torch.device = "cpu",
        reinit: bool = True,
    ) -> None:
        if not callable(getattr(model, "forward_features", None)):
            raise UserError(
                f"{type(model).__name__} has no forward_features(x) -> (logits, feats); the AZ-NAS proxies need the "
                "list of primary-block outputs (e.g. an NB201Network)"
            )
        self.input_shape = check_input_shape(input_shape)
        self.batch = check_batch(batch)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.model = copy.deepcopy(model).to(device=self.device, dtype=torch.float32)
        if reinit:
            reinit_(self.model, torch_generator(self.seed, "proxy", "reinit"))
        self.model.train()
        x = torch.randn((self.batch, *self.input_shape), generator=torch_generator(self.seed, "proxy", "input"))
        self.inputs = x.to(self.device)
        self.cache: dict[str, Any] = {}
        self._features: list[torch.Tensor] | None = None

    @property
    def features(self) -> list[torch.Tensor]:
        """Primary-block outputs f_0..f_{L-1} of one forward pass, still in the graph.

        The input requires grad so that a block is in the graph even when the layers before it
        have no parameters (e.g. an identity stem); the VJPs stop at f_0 and never reach it.
        """
        if self._features is None:
            x = self.inputs.detach().requires_grad_(True)
            with torch.enable_grad():
                _, feats = self.model.forward_features(x)
            feats = list(feats)
            if not feats:
                raise UserError(f"{type(self.model).__name__}.forward_features returned no features")
            for f in feats:
                if f.requires_grad and not f.is_leaf:
                    f.retain_grad()
            self._features = feats
        return self._features

    def generator(self, *names: object) -> torch.Generator:
        """A CPU generator for one named random purpose of this candidate's scoring."""
        return torch_generator(self.seed, "proxy", *names)
