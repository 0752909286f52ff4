"""The entry point: `load_dataset(name, ...)` -> normalised train/val/test `DataSplits`.

Why one pipeline for every format: the readers only turn files into uint8 arrays; the
choices that affect results (subset, validation split, resize, normalisation) happen
here, once, in the same order and with the same seeded draws for every dataset.
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from edgenas.core.errors import DataError
from edgenas.data.base import DataInfo, DataSplits, RawData, Split
from edgenas.data.cifar import CIFAR10_CLASSES, load_cifar10
from edgenas.data.digits import DIGITS_CLASSES, DIGITS_SIDE, load_digits_raw
from edgenas.data.folder import folder_side, load_image_folder, scan_image_folder
from edgenas.data.idx import load_idx_dataset
from edgenas.data.splits import fraction_count, split_off_test, stratified_pick
from edgenas.data.tensors import channel_stats, normalise_, resize_images, to_unit_float

DATASETS: tuple[str, ...] = ("fashion-mnist", "mnist", "cifar10", "folder", "digits")
DEFAULT_DIRS: dict[str, str] = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
    "cifar10": "/usr/share/datasets/cifar10",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))

# Datasets whose shape is known without touching the disk: (channels, side, class names).
_FIXED: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "fashion-mnist": (1, 28, FASHION_MNIST_CLASSES),
    "mnist": (1, 28, MNIST_CLASSES),
    "cifar10": (3, 32, CIFAR10_CLASSES),
    "digits": (1, DIGITS_SIDE, DIGITS_CLASSES),
}


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name.strip().lower() not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name.strip().lower()


def _check_count(what: str, value: object) -> int | None:
    """None, or a positive int (bool is rejected: `True` is not a size)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise DataError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _check_fraction(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
        raise DataError(f"val_fraction must be a number in [0, 1), got {value!r}")
    return float(value)


def _data_root(key: str, data_dir: str | Path | None) -> Path:
    """The folder to read: `data_dir`, else the dataset's system-wide default (with install hints)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if key == "folder":
        raise DataError("dataset 'folder' needs --data-dir with a folder that has one sub-folder per class")
    root = Path(DEFAULT_DIRS[key])
    if root.is_dir():
        return root
    if key == "fashion-mnist":
        raise DataError(
            f"Fashion-MNIST is not installed at {root}; run `apt-get install dataset-fashion-mnist`, "
            "or pass --data-dir with a folder holding its IDX files, or use --dataset digits (no download)"
        )
    raise DataError(f"{key} is not installed at {root}; pass --data-dir with its folder, or use --dataset digits")


def _load_raw(key: str, data_dir: str | Path | None, seed: int, resize: int | None) -> RawData:
    """Read the files of dataset `key` into uint8 arrays [N, C, H, W] with a train/test split."""
    if key == "digits":  # bundled with scikit-learn; data_dir does not apply
        return load_digits_raw(seed)
    root = _data_root(key, data_dir)
    if key in ("fashion-mnist", "mnist"):
        classes = _FIXED[key][2]
        train_x, train_y, test_x, test_y = load_idx_dataset(root, key, num_classes=len(classes))
        return RawData(train_x[:, None], train_y, test_x[:, None], test_y, classes, 255.0)
    if key == "cifar10":
        train_x, train_y, test_x, test_y, classes = load_cifar10(root)
        return RawData(train_x, train_y, test_x, test_y, classes, 255.0)
    # folder: resized by PIL while reading, and without an official test split.
    x, y, classes = load_image_folder(root, resize)
    if len(y) < 3:
        raise DataError(f"image folder {root} has only {len(y)} images; need at least 3 for train/val/test")
    train_x, train_y, test_x, test_y = split_off_test(x, y, seed)
    return RawData(train_x, train_y, test_x, test_y, classes, 255.0)


def _pick(what: str, count: int | None, y: np.ndarray, seed: int, purpose: str, key: str) -> np.ndarray | None:
    """Stratified indices for a `count`-sized subset, or None to keep everything."""
    if count is None or count == len(y):
        return None
    if count > len(y):
        raise DataError(f"{what}={count} is more than the {len(y)} images {key} has; use at most {len(y)}")
    return stratified_pick(y, count, seed, purpose)[0]


def _to_split(x: np.ndarray, y: np.ndarray, scale: float, resize: int | None) -> Split:
    images = to_unit_float(x, scale)
    if resize is not None:
        images = resize_images(images, resize)
    return Split(images, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    subset: int | None = None,
    test_subset: int | None = None,
    resize: int | None = None,
) -> DataSplits:
    """Load a dataset as normalised, in-memory train/val/test splits.

    Order of operations (each draw stratified and derived from `seed`):
    1. `subset`: keep this many of the official training images (the pool that train and
       val are then drawn from, so a quick run is quick end to end);
    2. val: `val_fraction` of that pool (at least one image if > 0), the rest is train;
    3. `test_subset`: keep this many of the test images;
    4. scale pixels to [0, 1], resize to `resize`×`resize` if given, then normalise all
       splits with the train split's per-channel mean/std.
    """
    key = _check_name(name)
    val_fraction = _check_fraction(val_fraction)
    subset = _check_count("subset", subset)
    test_subset = _check_count("test_subset", test_subset)
    resize = _check_count("resize", resize)

    raw = _load_raw(key, data_dir, seed, resize)
    train_x, train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    keep = _pick("subset", subset, train_y, seed, "subset", key)
    if keep is not None:
        train_x, train_y = train_x[keep], train_y[keep]
    n_val = fraction_count(len(train_y), val_fraction)
    if len(train_y) - n_val < 1:
        raise DataError(
            f"val_fraction={val_fraction} leaves no training images out of {len(train_y)}; "
            "lower val_fraction or raise subset"
        )
    val_idx, train_idx = stratified_pick(train_y, n_val, seed, "val-split")
    keep = _pick("test_subset", test_subset, test_y, seed, "test-subset", key)
    if keep is not None:
        test_x, test_y = test_x[keep], test_y[keep]

    train = _to_split(train_x[train_idx], train_y[train_idx], raw.scale, resize)
    val = _to_split(train_x[val_idx], train_y[val_idx], raw.scale, resize)
    test = _to_split(test_x, test_y, raw.scale, resize)
    mean, std = channel_stats(train.images)
    for split in (train, val, test):
        normalise_(split.images, mean, std)
    _, channels, side, _ = train.images.shape
    info = DataInfo(key, channels, side, len(raw.class_names), raw.class_names)
    return DataSplits(train, val, test, info, mean, std)


def dataset_info(name: str, data_dir: str | Path | None = None, resize: int | None = None) -> DataInfo:
    """Shape and classes without loading the data (a folder scan reads headers only)."""
    key = _check_name(name)
    resize = _check_count("resize", resize)
    if key in _FIXED:
        channels, side, classes = _FIXED[key]
        return DataInfo(key, channels, resize or side, len(classes), classes)
    scan = scan_image_folder(_data_root(key, data_dir))
    channels = 1 if scan.mode == "L" else 3
    return DataInfo(key, channels, folder_side(scan, resize), len(scan.class_names), scan.class_names)
