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

    The constructor deep-copies `model` (scoring must not overwrite the weights a caller holds;
    `copy_model=False` skips the copy for a caller that built the model only to score it), moves
    it to `device` in fp32, re-initialises it (`reinit=True`, the spec's default) and puts it in
    `train()` mode so BN normalises with the noise batch's own statistics. The input is one
    N(0, 1) batch of shape `(batch, *input_shape)` drawn from `seed`.

    `flops` (optional) is the model's exact batch-1 FLOPs when the caller knows them (a space's
    position costs, `edgenas.cost.static`); complexity then needs no counting pass.

    `real_batch` (optional) is one labelled batch `(images, labels)` of real data, images of shape
    `(B, *input_shape)` and int64 labels of shape `(B,)`, kept as `ctx.real_batch` (on `device`,
    images in fp32) for the baselines that are defined on a labelled loss (snip, grad_norm; spec
    az-nas.md §3.1: proxies that need real images get a real batch). It does not change `inputs`,
    so the AZ proxies always see the noise batch. `None` (the default) leaves `ctx.real_batch`
    `None`, and those baselines then use `inputs` with seeded uniform labels.

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
        real_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        copy_model: bool = True,
        flops: int | None = None,
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
        self.model = (copy.deepcopy(model) if copy_model else model).to(device=self.device, dtype=torch.float32)
        self.flops = flops
        if reinit:
            reinit_(self.model, torch_generator(self.seed, "proxy", "reinit"))
        self.model.train()
        x = torch.randn((self.batch, *self.input_shape), generator=torch_generator(self.seed, "proxy", "input"))
        self.inputs = x.to(self.device)
        self.real_batch = None if real_batch is None else self._check_real_batch(real_batch)
        self.cache: dict[str, Any] = {}
        self._features: list[torch.Tensor] | None = None

    def _check_real_batch(self, real_batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(images, labels)` validated against `input_shape` and moved to the device."""
        try:
            images, labels = real_batch
        except (TypeError, ValueError):
            raise UserError("real_batch must be a pair (images, labels)") from None
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise UserError("real_batch must hold two tensors (images, labels)")
        if images.dim() != len(self.input_shape) + 1 or tuple(images.shape[1:]) != self.input_shape:
            raise UserError(
                f"real_batch images must have shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(images.shape)}"
            )
        if images.shape[0] < 1 or tuple(labels.shape) != (images.shape[0],):
            raise UserError(
                f"real_batch labels must have shape ({images.shape[0]},), one per image, got {tuple(labels.shape)}"
            )
        if labels.dtype != torch.int64:
            raise UserError(f"real_batch labels must be int64 class indices, got {labels.dtype}")
        return images.detach().to(device=self.device, dtype=torch.float32), labels.detach().to(self.device)

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
