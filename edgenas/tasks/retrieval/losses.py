"""Retrieval task losses: batch-hard triplet (Hermans et al., 2017) beside cross-entropy on ids.

Why here and not in `edgenas.distill.losses`: the triplet loss is a task loss that a
teacher trains with too; it needs no teacher, so it sits next to the trainer, while the
distillation module keeps only losses that compare a student with a teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """mean over anchors of relu(d(a, hardest positive) − d(a, hardest negative) + margin).

    Distances are Euclidean between L2-normalised embeddings (so `margin` is on a fixed
    scale). Anchors without a positive or without a negative in the batch are skipped;
    a batch with no valid anchor gives 0 (still attached to the graph).
    """
    e = F.normalize(embeddings, dim=1)
    # Squared distances from Gram matrix (cdist's backward is NaN-prone at zero distance).
    gram = e @ e.t()
    d = (2 - 2 * gram).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    hardest_pos = torch.where(pos, d, torch.zeros_like(d)).max(1).values
    hardest_neg = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin)[valid].mean()
