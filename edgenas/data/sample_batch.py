"""One labelled batch of real images: what label-using proxies (snip, grad_norm) score with."""

from __future__ import annotations

from pathlib import Path

import torch

from edgenas.data.base import BatchLoader
from edgenas.data.datasets import load_dataset


def sample_batch(
    name: str,
    data_dir: str | Path | None = None,
    *,
    batch: int,
    seed: int = 0,
    subset: int | None = None,
    val_fraction: float = 0.1,
    resize: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded, shuffled batch of `batch` training images and labels, normalised like training."""
    data = load_dataset(name, data_dir, seed=seed, val_fraction=val_fraction, subset=subset, resize=resize)
    return next(iter(BatchLoader(data.train, batch, shuffle=True, seed=seed)))
