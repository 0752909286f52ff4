"""The types every data consumer sees: `DataInfo`, `Split`, `DataSplits` and `BatchLoader`.

Why in-memory tensors: the datasets edgenas targets (Fashion-MNIST, CIFAR-10, small image
folders) fit in RAM many times over, and proxies/search evaluate thousands of tiny
networks, so per-sample `Dataset.__getitem__` + collate overhead would dominate. A split is
one pre-normalised float tensor, and batches are slices of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from edgenas.core.errors import DataError
from edgenas.core.seeding import torch_generator
from edgenas.data.augment import AUGMENTATIONS, apply_augment
from edgenas.data.stream import StreamLoader, StreamSplit


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset to be built for it (no data needed)."""

    name: str
    channels: int
    resolution: int  # square side length after any resize
    num_classes: int
    class_names: tuple[str, ...]


@dataclass
class Split:
    """One split held in memory: normalised images and their class indices."""

    images: torch.Tensor  # float32 [N, C, H, W], normalised with the train split's mean/std
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.labels):
            raise ValueError(f"Split has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class DataSplits:
    """Train/val/test splits of one dataset plus the statistics used to normalise them.

    `mean`/`std` are per channel, computed on `train` only (so val/test never leak into
    preprocessing); keep them to normalise new inputs the same way at deployment. The
    splits are in-memory `Split`s, or `StreamSplit`s decoded per batch (`streaming`).
    """

    train: Split | StreamSplit
    val: Split | StreamSplit
    test: Split | StreamSplit
    info: DataInfo
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def streaming(self) -> bool:
        return isinstance(self.train, StreamSplit)


@dataclass
class RawData:
    """A dataset as loaded from disk, before subsetting and normalisation (internal).

    Images stay in their compact on-disk dtype (uint8) until the splits are chosen, so
    subsetting a large dataset never materialises the full float tensor.
    """

    train_x: np.ndarray  # [N, C, H, W], values in [0, scale]
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    scale: float  # the value that maps to 1.0 (255 for uint8 images, 16 for sklearn digits)


class BatchLoader:
    """Mini-batches `(x, y)` straight from a `Split`'s tensors.

    Shuffling order is a pure function of `(seed, epoch)` (via `torch_generator(seed,
    "shuffle", epoch)`), so a run resumed at epoch k sees exactly the batches it would
    have seen; call `set_epoch` before iterating each epoch. Unshuffled batches are views
    of the split: treat every batch as read-only.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: str | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch size must be a positive integer, got {batch_size!r}")
        if augment not in AUGMENTATIONS:
            choices = ", ".join(repr(a) for a in AUGMENTATIONS)
            raise DataError(f"unknown augmentation {augment!r}; choose one of {choices}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling order and augmentation draws the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.split.images, self.split.labels
        n, bs = len(labels), self.batch_size
        order = torch.randperm(n, generator=torch_generator(self.seed, "shuffle", self.epoch)) if self.shuffle else None
        # A separate stream, so turning augmentation on does not change the batch order.
        aug_gen = torch_generator(self.seed, "augment", self.epoch) if self.augment else None
        for b in range(len(self)):
            lo, hi = b * bs, min((b + 1) * bs, n)
            if order is None:
                x, y = images[lo:hi], labels[lo:hi]
            else:
                idx = order[lo:hi]
                x, y = images.index_select(0, idx), labels.index_select(0, idx)
            if aug_gen is not None:
                x = apply_augment(self.augment, x, aug_gen)
            yield x, y


def make_loader(
    split: Split | StreamSplit,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    augment: str | None = None,
    pin_memory: bool = False,
) -> BatchLoader | StreamLoader:
    """The loader for either kind of split (same batch order for the same seed and epoch).

    `pin_memory` applies to streamed batches (in-memory batches are slices of one tensor,
    better moved to the GPU whole).
    """
    if isinstance(split, StreamSplit):
        return StreamLoader(split, batch_size, shuffle, seed, drop_last, augment, pin_memory=pin_memory)
    return BatchLoader(split, batch_size, shuffle, seed, drop_last, augment)
