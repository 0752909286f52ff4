"""scikit-learn digits: the bundled fallback, with a seeded stratified train/test split."""

from __future__ import annotations

import numpy as np
import torch

from edgenas.data import dataset_info, load_dataset
from edgenas.data.digits import load_digits_raw


def test_raw_split_sizes_values_and_stratification() -> None:
    raw = load_digits_raw(seed=0)
    assert raw.train_x.shape == (1438, 1, 8, 8) and raw.test_x.shape == (359, 1, 8, 8)
    assert raw.train_x.dtype == np.uint8 and raw.scale == 16.0
    assert raw.train_x.max() == 16 and raw.train_x.min() == 0
    totals = np.bincount(np.concatenate([raw.train_y, raw.test_y]), minlength=10)
    test_counts = np.bincount(raw.test_y, minlength=10)
    # Each class contributes its 20% share, to within one image.
    assert np.all(np.abs(test_counts - 0.2 * totals) < 1.0)


def test_raw_split_depends_on_seed_only() -> None:
    a, b, c = load_digits_raw(3), load_digits_raw(3), load_digits_raw(4)
    np.testing.assert_array_equal(a.test_x, b.test_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert not np.array_equal(a.test_x, c.test_x)
    # Train and test never share an image: together they are the whole set.
    assert len(a.train_y) + len(a.test_y) == 1797


def test_load_dataset_digits() -> None:
    splits = load_dataset("digits", seed=1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1294, 144, 359)
    assert splits.train.images.shape == (1294, 1, 8, 8) and splits.train.labels.dtype == torch.int64
    assert splits.info == dataset_info("digits")
    assert splits.info.num_classes == 10 and splits.info.resolution == 8
    # Un-normalised pixels are multiples of 1/16 in [0, 1].
    pixels = splits.val.images * splits.std[0] + splits.mean[0]
    sixteenths = pixels * 16
    torch.testing.assert_close(sixteenths, sixteenths.round(), atol=1e-4, rtol=0)
    assert pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5
