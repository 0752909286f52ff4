"""Physical pruning: a gated `ResNetEmbed` → a plain, smaller `ResNetEmbed` with the same outputs.

Why our own and not torch-pruning: only the inner channels of residual blocks are
pruned, and they touch exactly three tensors (conv1's filters, bn1's channels, conv2's
input slices), so there is no cross-layer dependency to trace; the pruned model is a plain
instance of the same class (`ResNetConfig.inner`), which saves, loads and exports like any
other. The gate's value is folded into conv2 (relu(z)·g feeds conv2 linearly), so the
pruned model needs no gates at all. Outputs are checked equal in eval mode.

`merge_compactors` does the same for CDD's paper variant: compactor rows with ‖W_c‖₂ under
the threshold are dropped (exact when they are zero) and the rest is merged into conv1
and bn1 (eval-mode BN is affine: bn1 then the compactor M is conv1 with weights
M·diag(a)·W1 and a bias M·c, carried by a unit BN), as the authors' code merges its
compactors into conv2.
"""

from __future__ import annotations

import copy

import torch

from edgenas.core.seeding import torch_generator
from edgenas.tasks.retrieval.model import BasicBlock, ResNetEmbed

PRUNE_ATOL = 1e-5


@torch.no_grad()
def prune_gated(model: ResNetEmbed, *, check: bool = True) -> ResNetEmbed:
    """The smaller plain network; with `check`, raise if outputs differ by more than `PRUNE_ATOL`."""
    if not model.cfg.gated:
        raise ValueError("prune_gated needs a gated network")
    model = model.cpu()
    keep = [torch.nonzero(b.gate.mask).flatten() for b in model.blocks]
    small = ResNetEmbed(model.cfg.with_inner(tuple(len(k) for k in keep), gated=False))
    small.stem.load_state_dict(model.stem.state_dict())
    small.embed.load_state_dict(model.embed.state_dict())
    for src, dst, idx in zip(model.blocks, small.blocks, keep, strict=True):
        _prune_block(src, dst, idx)
    if check:
        diff = max_output_diff(model, small)
        if not diff <= PRUNE_ATOL:
            raise RuntimeError(f"pruned network differs from the gated one by {diff:.3g} (> {PRUNE_ATOL}); a bug")
    return small


def _prune_block(src: BasicBlock, dst: BasicBlock, idx: torch.Tensor) -> None:
    assert src.gate is not None
    g = src.gate.effective()[idx]
    dst.conv1.weight.copy_(src.conv1.weight[idx])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst.bn1, name).copy_(getattr(src.bn1, name)[idx])
    dst.bn1.num_batches_tracked.copy_(src.bn1.num_batches_tracked)
    dst.conv2.weight.copy_(src.conv2.weight[:, idx] * g.view(1, -1, 1, 1))
    dst.bn2.load_state_dict(src.bn2.state_dict())
    dst.shortcut.load_state_dict(src.shortcut.state_dict())


@torch.no_grad()
def compactor_keep(model: ResNetEmbed, threshold: float) -> list[torch.Tensor]:
    """Rows kept per block: norm >= threshold (the largest row if none, so no block is empty)."""
    keep = []
    for c in model.compactors():
        n = c.row_norms()
        k = torch.nonzero(n >= threshold).flatten()
        keep.append(k if len(k) else n.argmax().view(1))
    return keep


@torch.no_grad()
def merge_compactors(model: ResNetEmbed, threshold: float, *, check: bool = True) -> ResNetEmbed:
    """The plain network without compactors and without the rows under `threshold`.

    With `check`, raise if it differs by more than `PRUNE_ATOL` from `model` with the removed
    rows zeroed (so the merge itself is exact; what removing non-zero rows costs is
    `max_output_diff(model, merged)`, which the caller reports).
    """
    if not model.cfg.compactor:
        raise ValueError("merge_compactors needs a network with compactors")
    model = model.cpu()
    keep = compactor_keep(model, threshold)
    small = ResNetEmbed(model.cfg.with_inner(tuple(len(k) for k in keep)))
    small.stem.load_state_dict(model.stem.state_dict())
    small.embed.load_state_dict(model.embed.state_dict())
    for src, dst, idx in zip(model.blocks, small.blocks, keep, strict=True):
        assert src.compactor is not None
        bn = src.bn1
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        c = bn.bias - a * bn.running_mean
        m = src.compactor.conv.weight[idx].flatten(1)  # [kept, inner]
        dst.conv1.weight.copy_(torch.einsum("oi,ijhw->ojhw", m, src.conv1.weight * a.view(-1, 1, 1, 1)))
        dst.bn1.weight.fill_(1.0)
        dst.bn1.bias.copy_(m @ c)
        dst.bn1.running_mean.zero_()
        dst.bn1.running_var.fill_(1.0 - dst.bn1.eps)
        dst.bn1.num_batches_tracked.copy_(bn.num_batches_tracked)
        dst.conv2.weight.copy_(src.conv2.weight[:, idx])
        dst.bn2.load_state_dict(src.bn2.state_dict())
        dst.shortcut.load_state_dict(src.shortcut.state_dict())
    if check:
        zeroed = copy.deepcopy(model)
        for comp, idx in zip(zeroed.compactors(), keep, strict=True):
            drop = torch.ones(comp.conv.out_channels, dtype=torch.bool)
            drop[idx] = False
            comp.conv.weight[drop] = 0.0
        diff = max_output_diff(zeroed, small)
        if not diff <= PRUNE_ATOL:
            raise RuntimeError(f"merged network differs from the compactor one by {diff:.3g} (> {PRUNE_ATOL}); a bug")
    return small


@torch.no_grad()
def max_output_diff(a: torch.nn.Module, b: torch.nn.Module, batch: int = 8, seed: int = 0) -> float:
    """Largest |a(x) − b(x)| on a seeded random batch, both in eval mode (modes restored after)."""
    cfg = a.cfg  # type: ignore[attr-defined]
    x = torch.randn((batch, *cfg.input_shape), generator=torch_generator(seed, "prune-check"))
    modes = a.training, b.training
    a.eval()
    b.eval()
    try:
        return float((a(x) - b(x)).abs().max())
    finally:
        a.train(modes[0])
        b.train(modes[1])
