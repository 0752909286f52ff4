"""Retrieval splits: a training set of identities, and a query/gallery split of the test set.

Two protocols. `open` (the default): retrieval and re-identification are judged on
identities never seen in training (Market-1501, VeRi-776, CUB/Cars in deep metric
learning), so a seeded draw of `test_ids` identities is held out: training sees only the
other identities' training images (relabelled 0..n-1 for the id classifier); query and
gallery are the held-out identities' test images. For an image folder this holds out whole
identity folders (their images that fell in the train part are dropped, never trained on).
The draw depends on `split_seed` only, so a teacher and the students distilled from it hold
out the same identities whatever their training seeds. `closed`: every identity is trained
on and query/gallery come from the test images of the same identities (edgenas before
issue 22; kept for comparison and for resumed runs).

Why the test set is split per identity: every query must have at least one image of its
own identity left in the gallery, or it cannot be scored. For each identity with two or
more test images, `query_fraction` of them (rounded, at least 1, at most all but one) are
drawn as queries with a seeded generator; the rest (and every single-image identity) form
the gallery. For Fashion-MNIST the identities are the 10 classes; for an image folder
laid out by identity (`root/<identity>/<image>`, dataset `folder`) they are the folders.
Under `open`, the normalisation statistics are taken again from the training identities'
images alone (`load_dataset` took them over every training image), so nothing of a held-out
identity, not even its pixel statistics, reaches training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from edgenas.core.errors import DataError
from edgenas.core.seeding import numpy_rng, torch_generator
from edgenas.data.augment import apply_augment
from edgenas.data.base import BatchLoader, DataInfo, Split
from edgenas.data.datasets import STATS_IMAGES, load_dataset
from edgenas.data.splits import stratified_pick
from edgenas.data.stream import StreamSplit, stream_stats
from edgenas.data.tensors import channel_stats, normalise_


@dataclass
class RetrievalSplits:
    """Train split (ids as class labels), and query/gallery splits drawn from the test split."""

    train: Split | StreamSplit
    query: Split | StreamSplit
    gallery: Split | StreamSplit
    info: DataInfo
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_ids: tuple[int, ...] = ()  # dataset ids trained on, in classifier order (open protocol)
    test_ids: tuple[int, ...] = ()  # dataset ids held out for query/gallery (open protocol; () = closed)


def held_out_ids(num_ids: int, test_ids: int, split_seed: int) -> tuple[int, ...]:
    """The `test_ids` identities (of 0..num_ids-1) held out by the open protocol, sorted."""
    if not 1 <= test_ids <= num_ids - 2:
        raise DataError(
            f"--test-ids {test_ids}: hold out between 1 and {num_ids - 2} of the {num_ids} identities "
            "(at least 2 must remain for training)"
        )
    rng = numpy_rng(split_seed, "open-set-ids")
    return tuple(sorted(int(i) for i in rng.choice(num_ids, size=test_ids, replace=False)))


def _rows(split: Split | StreamSplit, rows: np.ndarray, labels: torch.Tensor | None = None) -> Split | StreamSplit:
    """The split of rows `rows`, with `labels` instead of its own if given."""
    out = split.select(rows) if isinstance(split, StreamSplit) else Split(split.images[rows], split.labels[rows])
    if labels is not None:
        out.labels = labels
    return out


def query_gallery_split(labels: np.ndarray, query_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, gallery indices), both sorted; see the module docstring for the rule."""
    if not 0 < query_fraction < 1:
        raise DataError(f"query fraction must be in (0, 1), got {query_fraction!r}")
    labels = np.asarray(labels)
    rng = numpy_rng(seed, "query-gallery")
    query: list[np.ndarray] = []
    for ident in np.unique(labels):
        idx = np.flatnonzero(labels == ident)
        if len(idx) < 2:
            continue
        k = min(max(round(len(idx) * query_fraction), 1), len(idx) - 1)
        query.append(rng.choice(idx, size=k, replace=False))
    if not query:
        raise DataError("no identity has two or more test images, so no query can be matched in the gallery")
    q = np.sort(np.concatenate(query))
    g = np.setdiff1d(np.arange(len(labels)), q)
    return q, g


def load_retrieval(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    subset: int | None = None,
    test_subset: int | None = None,
    query_fraction: float = 0.1,
    resize: int | None = None,
    in_memory: bool | str = True,
    workers: int | None = None,
    protocol: Literal["open", "closed"] = "closed",
    test_ids: int = 4,
    split_seed: int = 0,
) -> RetrievalSplits:
    """Load a dataset (see `edgenas.data.load_dataset`) as retrieval train/query/gallery splits
    under `protocol` (see the module docstring; `edgenas retrieval` defaults to open, this
    function keeps its closed-set behaviour unless asked).

    `in_memory`/`workers` as in `load_dataset`: streamed or not, the identities drawn for
    query and gallery are the same.
    """
    if protocol not in ("open", "closed"):
        raise DataError(f"--protocol {protocol!r}: choose open or closed")
    data = load_dataset(
        name,
        data_dir,
        seed=seed,
        val_fraction=0.0,
        subset=subset,
        test_subset=test_subset,
        resize=resize,
        in_memory=in_memory,
        workers=workers,
    )
    train, test, info = data.train, data.test, data.info
    held: tuple[int, ...] = ()
    kept: tuple[int, ...] = ()
    if protocol == "open":
        held = held_out_ids(info.num_classes, test_ids, split_seed)
        kept = tuple(i for i in range(info.num_classes) if i not in held)
        relabel = torch.full((info.num_classes,), -1, dtype=torch.int64)
        relabel[list(kept)] = torch.arange(len(kept))
        rows = np.flatnonzero(relabel[train.labels].numpy() >= 0)
        if len(rows) == 0:
            raise DataError(f"no training image of the {len(kept)} training identities is left; raise --subset")
        train = _rows(train, rows, relabel[train.labels[torch.from_numpy(rows)]])
        test = _rows(test, np.flatnonzero(np.isin(test.labels.numpy(), held)))
        info = replace(info, num_classes=len(kept), class_names=tuple(info.class_names[i] for i in kept))
        mean, std = _renormalise(train, test, data.mean, data.std, seed)
    else:
        mean, std = data.mean, data.std
    q, g = query_gallery_split(test.labels.numpy(), query_fraction, seed)
    return RetrievalSplits(train, _rows(test, q), _rows(test, g), info, mean, std, kept, held)


def _renormalise(
    train: Split | StreamSplit, test: Split | StreamSplit, mean: tuple[float, ...], std: tuple[float, ...], seed: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalise `train` and `test` (in place) with the statistics of `train` alone; returns them
    in pixel units. In memory, the splits (own copies, `_rows`) hold images normalised with
    (mean, std): their own mean m and std s there give mean + std·m and std·s in pixel units."""
    if isinstance(train, StreamSplit):
        rows = np.arange(len(train))
        if len(train) > STATS_IMAGES:
            rows = stratified_pick(train.labels.numpy(), STATS_IMAGES, seed, "stats")[0]
        new_mean, new_std = stream_stats(train, rows)
        for split in (train, test):
            split.mean, split.std = new_mean, new_std  # type: ignore[union-attr]
        return new_mean, new_std
    m, s = channel_stats(train.images)
    for split in (train, test):
        normalise_(split.images, m, s)
    return (
        tuple(float(a + b * c) for a, b, c in zip(mean, std, m, strict=True)),
        tuple(float(b * c) for b, c in zip(std, s, strict=True)),
    )


def pk_order(labels: np.ndarray, p: int, k: int, batches: int, rng: np.random.Generator) -> np.ndarray:
    """Row order for `batches` batches of `p` identities × `k` images each (as the
    RandomIdentitySampler of re-id codebases: every identity's images shuffled and cut into
    groups of k, an identity with fewer than k images drawn with replacement, groups of p
    distinct random identities taken while p identities have groups left; then anew)."""
    ids = np.unique(labels)
    if len(ids) < p:
        raise DataError(f"P×K batches need {p} identities per batch, but training has only {len(ids)}; raise --pk")
    rows_of = {int(i): np.flatnonzero(labels == i) for i in ids}
    out: list[np.ndarray] = []
    while len(out) < batches * p:
        chunks: dict[int, list[np.ndarray]] = {}
        for i, rows in rows_of.items():
            rows = rng.choice(rows, size=k, replace=True) if len(rows) < k else rng.permutation(rows)
            chunks[i] = [rows[j : j + k] for j in range(0, len(rows) - k + 1, k)]
        while len(out) < batches * p:
            avail = [i for i in chunks if chunks[i]]
            if len(avail) < p:
                break
            for i in rng.choice(avail, size=p, replace=False):
                out.append(chunks[int(i)].pop())
    return np.concatenate(out[: batches * p])


class PKBatchLoader(BatchLoader):
    """`BatchLoader` whose batches are P identities × K images (`pk_order`), as many per epoch
    as a plain loader dropping the last batch gives (so schedules see the same steps); the
    order is a function of (seed, epoch)."""

    def __init__(self, split: Split, batch_size: int, k: int, seed: int = 0, augment: str | None = None) -> None:
        if batch_size % k:
            raise DataError(f"--batch-size {batch_size} is not a multiple of --pk {k}")
        super().__init__(split, batch_size, shuffle=True, seed=seed, drop_last=True, augment=augment)
        self.k = k
        pk_order(split.labels.numpy(), batch_size // k, k, 1, np.random.default_rng(0))  # fail now, not mid-run

    def __iter__(self):  # type: ignore[override]
        rng = numpy_rng(self.seed, "pk", self.epoch)
        order = torch.from_numpy(pk_order(self.split.labels.numpy(), self.batch_size // self.k, self.k, len(self), rng))
        aug_gen = torch_generator(self.seed, "augment", self.epoch) if self.augment else None
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x, y = self.split.images.index_select(0, idx), self.split.labels.index_select(0, idx)
            if aug_gen is not None:
                x = apply_augment(self.augment, x, aug_gen)
            yield x, y
