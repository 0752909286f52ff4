"""Retrieval splits: a training set of identities, and a query/gallery split of the test set.

Why the test set is split per identity: every query must have at least one image of its
own identity left in the gallery, or it cannot be scored. For each identity with two or
more test images, `query_fraction` of them (rounded, at least 1, at most all but one) are
drawn as queries with a seeded generator; the rest (and every single-image identity) form
the gallery. For Fashion-MNIST the identities are the 10 classes; for an image folder
laid out by identity (`root/<identity>/<image>`, dataset `folder`) they are the folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgenas.core.errors import DataError
from edgenas.core.seeding import numpy_rng
from edgenas.data.base import DataInfo, Split
from edgenas.data.datasets import load_dataset
from edgenas.data.stream import StreamSplit


@dataclass
class RetrievalSplits:
    """Train split (ids as class labels), and query/gallery splits drawn from the test split."""

    train: Split | StreamSplit
    query: Split | StreamSplit
    gallery: Split | StreamSplit
    info: DataInfo
    mean: tuple[float, ...]
    std: tuple[float, ...]


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
) -> RetrievalSplits:
    """Load a dataset (see `edgenas.data.load_dataset`) as retrieval train/query/gallery splits.

    `in_memory`/`workers` as in `load_dataset`: streamed or not, the identities drawn for
    query and gallery are the same.
    """
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
    q, g = query_gallery_split(data.test.labels.numpy(), query_fraction, seed)
    test = data.test
    if isinstance(test, StreamSplit):
        query, gallery = test.select(q), test.select(g)
    else:
        query = Split(test.images[q], test.labels[q])
        gallery = Split(test.images[g], test.labels[g])
    return RetrievalSplits(data.train, query, gallery, data.info, data.mean, data.std)
