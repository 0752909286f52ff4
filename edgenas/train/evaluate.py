"""Evaluation of a classifier on a split."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from edgenas.core.precision import Precision, resolve_precision


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    precision: Precision | None = None,
) -> dict:
    """Top-1 accuracy (fraction) and mean cross-entropy over all batches (loss in fp32 under AMP)."""
    was_training = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    precision = precision or resolve_precision(device)
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        x = precision.inputs(x)
        with precision.autocast():
            logits = model(x).float()
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    return {"accuracy": correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": total}
