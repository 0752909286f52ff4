"""Reader for the CIFAR-10 "python version" batches (`data_batch_1..5`, `test_batch`).

Why a restricted unpickler: the batches are pickles, and unpickling an arbitrary file can
run arbitrary code. Only the handful of globals a numpy-array-in-a-dict pickle needs are
allowed, so a wrong or hostile file fails with a `DataError` instead of executing.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.core.errors import DataError

SUBDIR = "cifar-10-batches-py"  # the folder cifar-10-python.tar.gz extracts to
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_ROW = 3 * 32 * 32  # one image: 1024 red, then 1024 green, then 1024 blue bytes

# (module, name) pairs that numpy arrays, numpy scalars and protocol-2 bytes need.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """Load one batch as a dict with str keys (the originals are Python 2 pickles with byte keys)."""
    try:
        with path.open("rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"cannot read CIFAR-10 file {path}: {e.strerror or e}; check its permissions") from e
    except Exception as e:  # any unpickling failure means a damaged or foreign file
        raise DataError(
            f"CIFAR-10 file {path} is not a readable CIFAR pickle or is truncated ({type(e).__name__}: {e}); "
            "extract cifar-10-python.tar.gz again"
        ) from e
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a batch dict; is it the right file?")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    path = Path(path)
    batch = _unpickle(path)
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataError(
            f"CIFAR-10 file {path} lacks the key(s) {', '.join(missing)} "
            f"(found: {', '.join(sorted(batch)) or 'none'}); is it a CIFAR-10 python batch?"
        )
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != _ROW:
        raise DataError(f"CIFAR-10 file {path} has data of shape {list(data.shape)}, expected [N, {_ROW}]")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or (data.size and (data.min() < 0 or data.max() > 255)):
            raise DataError(f"CIFAR-10 file {path} has {data.dtype} pixel data, expected uint8 values 0..255")
        data = data.astype(np.uint8)
    labels = np.asarray(batch["labels"])
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"CIFAR-10 file {path} has labels of shape {list(labels.shape)}, expected a list of ints")
    if len(labels) != len(data):
        raise DataError(f"CIFAR-10 file {path} has {len(data)} images but {len(labels)} labels; extract it again")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise DataError(f"CIFAR-10 file {path} has labels outside 0..9 (e.g. {int(labels.max())}); is it CIFAR-100?")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(folder: Path) -> tuple[str, ...]:
    """Class names from `batches.meta` when present, else the standard CIFAR-10 names."""
    path = folder / META
    if not path.is_file():
        return CIFAR10_CLASSES
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list | tuple) or len(names) != len(CIFAR10_CLASSES):
        raise DataError(f"CIFAR-10 file {path} has no list of 10 label_names; delete it to use the standard names")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def cifar_folder(root: str | Path) -> Path:
    """The folder holding the batches: `root` itself or `root/cifar-10-batches-py`."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"CIFAR-10 folder {root} does not exist; pass --data-dir with the folder extracted from "
            "cifar-10-python.tar.gz"
        )
    sub = root / SUBDIR
    return sub if sub.is_dir() and not (root / TRAIN_BATCHES[0]).is_file() else root


def load_cifar10(root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Load `(train_x, train_y, test_x, test_y, class_names)`; images uint8 [N, 3, 32, 32]."""
    folder = cifar_folder(root)
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        if not (folder / name).is_file():
            raise DataError(
                f"CIFAR-10 file {folder / name} is missing; the folder needs data_batch_1..5 and test_batch "
                "(extract cifar-10-python.tar.gz there)"
            )
    train = [read_cifar_batch(folder / name) for name in TRAIN_BATCHES]
    test_x, test_y = read_cifar_batch(folder / TEST_BATCH)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, test_x, test_y, _class_names(folder)
