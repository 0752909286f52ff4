"""Data that streams: splits decoded per batch instead of held as one float tensor.

Why: an in-memory split costs N·C·S²·4 bytes (100k RGB images at 224 px ≈ 60 GB), so
large or high-resolution datasets cannot be held whole. A `StreamSplit` keeps only where
each image lives (a file, or a row of a compact uint8 array); a `StreamLoader` decodes,
resizes, normalises and augments one batch at a time, in `torch.utils.data.DataLoader`
worker processes when asked. Batch order is the same pure function of (seed, epoch) as
`BatchLoader`'s, so both paths see the same images in the same batches; augmentation draws
come from one generator per (seed, epoch, batch), so workers need no shared state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from edgenas.core.errors import DataError
from edgenas.core.seeding import torch_generator
from edgenas.data.augment import AUGMENTATIONS, apply_augment
from edgenas.data.tensors import normalise_, resize_images, to_unit_float

_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_image(path: Path, mode: str, side: int) -> np.ndarray:
    """One image file as uint8 [C, side, side] in `mode` ("L" or "RGB"); `DataError` naming it if unreadable.

    Same decoding as the in-memory folder reader: convert, then PIL's bilinear resize
    (antialiased when shrinking) only when the size differs.
    """
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if im.size != (side, side):
                im = im.resize((side, side), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, dtype=np.uint8)
    except _READ_ERRORS as e:
        raise DataError(f"cannot read image {path} ({e}); remove or replace the file, or set dataset.skip_bad") from e
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


@dataclass
class FileSource:
    """Images as files, decoded when a batch asks for them."""

    files: list[Path]
    mode: str  # "L" or "RGB"
    side: int
    skip_bad: bool = False

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def batch(self, positions: np.ndarray) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        """Float [B', C, S, S] in [0, 1], the kept positions' mask, and the files skipped."""
        out = np.empty((len(positions), self.channels, self.side, self.side), dtype=np.uint8)
        kept = np.ones(len(positions), dtype=bool)
        bad: list[str] = []
        for i, p in enumerate(positions):
            try:
                out[i] = read_image(self.files[p], self.mode, self.side)
            except DataError:
                if not self.skip_bad:
                    raise
                kept[i] = False
                bad.append(str(self.files[p]))
        return to_unit_float(out[kept], 255.0), kept, bad


@dataclass
class ArraySource:
    """Images as a compact uint8 array [N, C, H, W]; scaled and resized per batch."""

    pixels: np.ndarray
    scale: float
    side: int

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[1])

    def batch(self, positions: np.ndarray) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        x = to_unit_float(self.pixels[positions], self.scale)
        return resize_images(x, self.side), np.ones(len(positions), dtype=bool), []


Source = FileSource | ArraySource


@dataclass
class StreamSplit:
    """One split that streams: positions into a source, labels, and the normalisation to apply."""

    source: Source
    positions: np.ndarray  # int64 [N]: rows of the source
    labels: torch.Tensor  # int64 [N]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    workers: int = 0  # DataLoader worker processes (0: decode in the calling process)

    def __post_init__(self) -> None:
        if len(self.positions) != len(self.labels):
            raise ValueError(f"StreamSplit has {len(self.positions)} positions but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, rows: np.ndarray) -> StreamSplit:
        """The split of rows `rows` (same source and normalisation): e.g. retrieval's query/gallery."""
        rows = np.asarray(rows)
        return StreamSplit(
            self.source, self.positions[rows], self.labels[torch.from_numpy(rows)], self.mean, self.std, self.workers
        )

    def decode(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Normalised images and labels of split rows `rows` (bad files dropped when skipping)."""
        x, kept, bad = self.source.batch(self.positions[rows])
        if self.mean:
            normalise_(x, self.mean, self.std)
        return x, self.labels[torch.from_numpy(rows[kept])], bad


def stream_stats(split: StreamSplit, rows: np.ndarray, chunk: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std over split rows `rows`, in float64 (as `channel_stats`)."""
    c = split.source.channels
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for lo in range(0, len(rows), chunk):
        x, _, _ = split.source.batch(split.positions[rows[lo : lo + chunk]])
        x = x.to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    if count == 0:
        raise DataError("no readable training image to take normalisation statistics from")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0.0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return tuple(mean.tolist()), tuple(std.tolist())


class _EpochBatches(torch.utils.data.Dataset):
    """Item b = the b-th batch of one epoch, decoded and augmented (what a worker computes)."""

    def __init__(self, split: StreamSplit, batches: list[np.ndarray], augment: str | None, seed: int, epoch: int):
        self.split, self.batches, self.augment, self.seed, self.epoch = split, batches, augment, seed, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        x, y, bad = self.split.decode(self.batches[b])
        if self.augment and len(y):
            x = apply_augment(self.augment, x, torch_generator(self.seed, "augment", self.epoch, b))
        return x, y, bad


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is per-image Python work; extra threads would only contend


@dataclass
class StreamLoader:
    """Mini-batches `(x, y)` of a `StreamSplit`, with `BatchLoader`'s interface and batch order.

    `workers` (default: the split's) decode in separate processes; `pin_memory` pins the
    batches for fast, asynchronous copies to a GPU. Files skipped as unreadable (with
    `dataset.skip_bad`) are counted in `skipped` (the names in `skipped_files`).
    """

    split: StreamSplit
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    augment: str | None = None
    workers: int | None = None
    pin_memory: bool = False
    epoch: int = 0
    skipped_files: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise DataError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if self.augment not in AUGMENTATIONS:
            choices = ", ".join(repr(a) for a in AUGMENTATIONS)
            raise DataError(f"unknown augmentation {self.augment!r}; choose one of {choices}")

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_rows(self) -> list[np.ndarray]:
        """The split rows of each batch of this epoch (BatchLoader's order, exactly)."""
        n, bs = len(self.split), self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=torch_generator(self.seed, "shuffle", self.epoch)).numpy()
        else:
            order = np.arange(n)
        return [order[b * bs : min((b + 1) * bs, n)] for b in range(len(self))]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch_batches = _EpochBatches(self.split, self.batch_rows(), self.augment, self.seed, self.epoch)
        workers = self.split.workers if self.workers is None else self.workers
        if workers <= 0:
            items: Iterator = (epoch_batches[b] for b in range(len(epoch_batches)))
        else:
            items = iter(
                torch.utils.data.DataLoader(
                    epoch_batches,
                    batch_size=None,
                    num_workers=min(workers, max(len(epoch_batches), 1)),
                    pin_memory=self.pin_memory,
                    worker_init_fn=_worker_init,
                    prefetch_factor=4,
                )
            )
        pin_here = self.pin_memory and workers <= 0
        for x, y, bad in items:
            self.skipped_files.update(bad)
            if len(y):
                yield (x.pin_memory(), y.pin_memory()) if pin_here else (x, y)


def default_workers() -> int:
    """Decoding workers when the config says `auto`: the cores but one (the trainer's), at most 8."""
    return max(1, min(8, (os.cpu_count() or 1) - 1))
