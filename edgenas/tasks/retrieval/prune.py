"""Physical pruning: a gated `ResNetEmbed` → a plain, smaller `ResNetEmbed` with the same outputs.

Why our own and not torch-pruning: only the inner channels of residual blocks are
pruned, and they touch exactly three tensors (conv1's filters, bn1's channels, conv2's
input slices), so there is no cross-layer dependency to trace; the pruned model is a plain
instance of the same class (`ResNetConfig.inner`), which saves, loads and exports like any
other. The gate's value is folded into conv2 (relu(z)·g feeds conv2 linearly), so the
pruned model needs no gates at all. Outputs are checked equal in eval mode.
"""

from __future__ import annotations

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
