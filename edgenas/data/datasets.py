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
from edgenas.data.stream import ArraySource, FileSource, StreamSplit, default_workers, stream_stats
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


def _load_raw(key: str, data_dir: str | Path | None, seed: int, resize: int | None, skip_bad: bool = False) -> RawData:
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
    x, y, classes = load_image_folder(root, resize, skip_bad)
    _check_folder_size(root, len(y))
    train_x, train_y, test_x, test_y = split_off_test(x, y, seed)
    return RawData(train_x, train_y, test_x, test_y, classes, 255.0)


def _check_folder_size(root: Path, n: int) -> None:
    if n < 3:
        raise DataError(f"image folder {root} has only {n} images; need at least 3 for train/val/test")


def _pick(what: str, count: int | None, y: np.ndarray, seed: int, purpose: str, key: str) -> np.ndarray | None:
    """Stratified indices for a `count`-sized subset, or None to keep everything."""
    if count is None or count == len(y):
        return None
    if count > len(y):
        raise DataError(f"{what}={count} is more than the {len(y)} images {key} has; use at most {len(y)}")
    return stratified_pick(y, count, seed, purpose)[0]


def _select(
    key: str,
    train_y: np.ndarray,
    test_y: np.ndarray,
    seed: int,
    val_fraction: float,
    subset: int | None,
    test_subset: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the train pool for train and val, and rows of the test pool for test.

    The one place the seeded draws happen, so the in-memory and the streaming path (which
    index the same pools) get the same splits.
    """
    pool = np.arange(len(train_y))
    keep = _pick("subset", subset, train_y, seed, "subset", key)
    if keep is not None:
        pool = keep
    n_val = fraction_count(len(pool), val_fraction)
    if len(pool) - n_val < 1:
        raise DataError(
            f"val_fraction={val_fraction} leaves no training images out of {len(pool)}; "
            "lower val_fraction or raise subset"
        )
    val_idx, train_idx = stratified_pick(train_y[pool], n_val, seed, "val-split")
    test_rows = np.arange(len(test_y))
    keep = _pick("test_subset", test_subset, test_y, seed, "test-subset", key)
    if keep is not None:
        test_rows = keep
    return pool[train_idx], pool[val_idx], test_rows


def _to_split(x: np.ndarray, y: np.ndarray, scale: float, resize: int | None) -> Split:
    images = to_unit_float(x, scale)
    if resize is not None:
        images = resize_images(images, resize)
    return Split(images, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


IN_MEMORY_CHOICES = ("auto", True, False)
# `in_memory: auto` streams a dataset whose float32 splits would take more than this.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
STATS_IMAGES = 5000  # streaming: normalisation statistics from at most this many training images
# Images per dataset (train pool, test) where known without reading it: the size estimate of `auto`.
_COUNTS: dict[str, tuple[int, int]] = {
    "fashion-mnist": (60000, 10000),
    "mnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "digits": (1437, 360),
}


def _check_in_memory(value: object) -> bool | str:
    if isinstance(value, str) and value.strip().lower() in ("auto", "true", "false"):
        v = value.strip().lower()
        return "auto" if v == "auto" else v == "true"
    if isinstance(value, bool):
        return value
    raise DataError(f"in_memory must be auto, true or false, got {value!r}")


def wants_streaming(
    key: str,
    in_memory: bool | str,
    resize: int | None,
    subset: int | None = None,
    test_subset: int | None = None,
    limit_bytes: int = IN_MEMORY_LIMIT_BYTES,
) -> bool:
    """Whether `in_memory` means streaming here: false → always; auto → folders, and any dataset
    whose float32 train+val+test tensors would exceed `limit_bytes`."""
    if in_memory is True:
        return False
    if in_memory is False or key == "folder":
        return True
    channels, side, _ = _FIXED[key]
    side = resize or side
    train, test = _COUNTS[key]
    images = min(subset or train, train) + min(test_subset or test, test)
    return images * channels * side * side * 4 > limit_bytes


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    subset: int | None = None,
    test_subset: int | None = None,
    resize: int | None = None,
    in_memory: bool | str = True,
    workers: int | None = None,
    skip_bad: bool = False,
) -> DataSplits:
    """Load a dataset as normalised train/val/test splits, in memory or streaming.

    Order of operations (each draw stratified and derived from `seed`):
    1. `subset`: keep this many of the official training images (the pool that train and
       val are then drawn from, so a quick run is quick end to end);
    2. val: `val_fraction` of that pool (at least one image if > 0), the rest is train;
    3. `test_subset`: keep this many of the test images;
    4. scale pixels to [0, 1], resize to `resize`×`resize` if given, then normalise all
       splits with the train split's per-channel mean/std.

    `in_memory`: True (the default for library callers such as searches, which read the
    tensors) holds every split as one float tensor; False streams (`StreamSplit`: files or
    uint8 rows decoded per batch, `workers` decoding processes, default cores − 1); "auto"
    streams folders and datasets over `IN_MEMORY_LIMIT_BYTES`. Streaming takes the mean/std
    from a seeded sample of at most `STATS_IMAGES` training images. `skip_bad` leaves out
    unreadable images (counted) instead of stopping with an error naming the file.
    """
    key = _check_name(name)
    val_fraction = _check_fraction(val_fraction)
    subset = _check_count("subset", subset)
    test_subset = _check_count("test_subset", test_subset)
    resize = _check_count("resize", resize)
    in_memory = _check_in_memory(in_memory)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, Integral) or workers < 0):
        raise DataError(f"workers must be a non-negative integer, got {workers!r}")
    if wants_streaming(key, in_memory, resize, subset, test_subset):
        return _load_streaming(key, data_dir, seed, val_fraction, subset, test_subset, resize, workers, skip_bad)

    raw = _load_raw(key, data_dir, seed, resize, skip_bad)
    train_rows, val_rows, test_rows = _select(key, raw.train_y, raw.test_y, seed, val_fraction, subset, test_subset)
    train = _to_split(raw.train_x[train_rows], raw.train_y[train_rows], raw.scale, resize)
    val = _to_split(raw.train_x[val_rows], raw.train_y[val_rows], raw.scale, resize)
    test = _to_split(raw.test_x[test_rows], raw.test_y[test_rows], raw.scale, resize)
    mean, std = channel_stats(train.images)
    for split in (train, val, test):
        normalise_(split.images, mean, std)
    _, channels, side, _ = train.images.shape
    info = DataInfo(key, channels, side, len(raw.class_names), raw.class_names)
    return DataSplits(train, val, test, info, mean, std)


def _load_streaming(
    key: str,
    data_dir: str | Path | None,
    seed: int,
    val_fraction: float,
    subset: int | None,
    test_subset: int | None,
    resize: int | None,
    workers: int | None,
    skip_bad: bool,
) -> DataSplits:
    """`load_dataset`'s streaming path: the same pools and draws, as `StreamSplit`s."""
    if key == "folder":
        root = _data_root(key, data_dir)
        scan = scan_image_folder(root, skip_bad)
        _check_folder_size(root, len(scan.labels))
        side = folder_side(scan, resize)
        source_files = FileSource(scan.files, scan.mode, side, skip_bad)
        rows = np.arange(len(scan.labels))
        train_pool, train_y, test_pool, test_y = split_off_test(rows, scan.labels, seed)
        train_src = test_src = source_files
        classes = scan.class_names
    else:
        raw = _load_raw(key, data_dir, seed, resize)
        side = resize or raw.train_x.shape[-1]
        train_src = ArraySource(raw.train_x, raw.scale, side)
        test_src = ArraySource(raw.test_x, raw.scale, side)
        train_pool, train_y = np.arange(len(raw.train_y)), raw.train_y
        test_pool, test_y = np.arange(len(raw.test_y)), raw.test_y
        classes = raw.class_names
    train_rows, val_rows, test_rows = _select(key, train_y, test_y, seed, val_fraction, subset, test_subset)
    workers = default_workers() if workers is None else int(workers)

    def split(src: FileSource | ArraySource, pool: np.ndarray, y: np.ndarray, rows: np.ndarray) -> StreamSplit:
        labels = torch.from_numpy(np.ascontiguousarray(y[rows], dtype=np.int64))
        return StreamSplit(src, np.ascontiguousarray(pool[rows], dtype=np.int64), labels, workers=workers)

    train = split(train_src, train_pool, train_y, train_rows)
    val = split(train_src, train_pool, train_y, val_rows)
    test = split(test_src, test_pool, test_y, test_rows)
    sample = np.arange(len(train))
    if len(train) > STATS_IMAGES:
        sample = stratified_pick(train.labels.numpy(), STATS_IMAGES, seed, "stats")[0]
    mean, std = stream_stats(train, sample)
    for s in (train, val, test):
        s.mean, s.std = mean, std
    info = DataInfo(key, train_src.channels, side, len(classes), classes)
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
