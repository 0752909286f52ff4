"""scikit-learn's bundled 8×8 handwritten digits: the dataset that needs no download.

Why it exists: every command must be runnable on a fresh install (tests, demos, CI), and
`sklearn.datasets.load_digits` ships inside scikit-learn. It has no official test split,
so one is carved deterministically (stratified) from the seed.
"""

from __future__ import annotations

import numpy as np

from edgenas.data.base import RawData
from edgenas.data.splits import split_off_test

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_SIDE = 8
DIGITS_MAX = 16.0  # pixel values are integers 0..16


def load_digits_raw(seed: int) -> RawData:
    """All 1797 digits as uint8 [N, 1, 8, 8] (exact: values are integers), split train/test by seed."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn.datasets is slow to import

    bunch = load_digits()
    x = bunch.images.astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    train_x, train_y, test_x, test_y = split_off_test(x, y, seed)
    return RawData(train_x, train_y, test_x, test_y, DIGITS_CLASSES, DIGITS_MAX)
