"""CIFAR-10 python batches: layout, sub-folder detection, class names, every bad-file error."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.core.errors import DataError
from edgenas.data import load_dataset
from edgenas.data.cifar import CIFAR10_CLASSES, load_cifar10, read_cifar_batch

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_pickle(path: Path, obj: object, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def make_cifar(root: Path, per_batch: int = 10, meta: list[bytes] | None = None) -> dict[str, np.ndarray]:
    """Write six small batches (like the originals: byte keys, uint8 data, list labels)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for i, name in enumerate(BATCHES):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(j + i) % 10 for j in range(per_batch)]
        write_pickle(root / name, {b"batch_label": name.encode(), b"data": data, b"labels": labels})
        written[name] = data
    if meta is not None:
        write_pickle(root / "batches.meta", {b"label_names": meta, b"num_vis": 3072})
    return written


def test_layout_and_labels(tmp_path: Path) -> None:
    written = make_cifar(tmp_path)
    train_x, train_y, test_x, test_y, classes = load_cifar10(tmp_path)
    assert train_x.shape == (50, 3, 32, 32) and test_x.shape == (10, 3, 32, 32)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    row = written["data_batch_2"][3]
    # Row layout: 1024 red, 1024 green, 1024 blue values, each row-major 32x32.
    assert train_x[13, 1, 2, 5] == row[1024 + 2 * 32 + 5]
    assert train_x[13, 2, 31, 0] == row[2048 + 31 * 32]
    np.testing.assert_array_equal(train_y[:12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2])
    np.testing.assert_array_equal(test_y, [(j + 5) % 10 for j in range(10)])
    assert classes == CIFAR10_CLASSES


def test_subfolder_and_meta_names(tmp_path: Path) -> None:
    names = [f"c{i}".encode() for i in range(10)]
    make_cifar(tmp_path / "cifar-10-batches-py", meta=names)
    *_, classes = load_cifar10(tmp_path)
    assert classes == tuple(f"c{i}" for i in range(10))


def test_load_dataset_normalises_each_channel(tmp_path: Path) -> None:
    make_cifar(tmp_path, per_batch=20)
    splits = load_dataset("cifar10", tmp_path, val_fraction=0.1, resize=16)
    assert splits.train.images.shape == (90, 3, 16, 16) and len(splits.val) == 10 and len(splits.test) == 20
    assert splits.info.channels == 3 and splits.info.resolution == 16 and len(splits.mean) == 3
    mean = splits.train.images.mean(dim=(0, 2, 3))
    std = splits.train.images.std(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as e:
        load_cifar10(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing") as e:
        load_cifar10(tmp_path)
    assert str(tmp_path / "data_batch_3") in str(e.value)


def test_not_a_pickle(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    (tmp_path / "test_batch").write_text("hello, I am a text file")
    with pytest.raises(DataError, match="not a readable CIFAR pickle") as e:
        load_cifar10(tmp_path)
    assert str(tmp_path / "test_batch") in str(e.value)


def test_truncated_pickle(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated") as e:
        load_cifar10(tmp_path)
    assert str(path) in str(e.value)


def test_refuses_code_in_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = write_pickle(tmp_path / "data_batch_1", {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match="refusing to load") as e:
        read_cifar_batch(path)
    assert not marker.exists() and str(path) in str(e.value)


def test_not_a_dict(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "b", [1, 2, 3])
    with pytest.raises(DataError, match="not a batch dict") as e:
        read_cifar_batch(path)
    assert str(path) in str(e.value)


def test_missing_keys(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "b", {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]})
    with pytest.raises(DataError, match="lacks the key") as e:
        read_cifar_batch(path)
    msg = str(e.value)
    assert "labels" in msg and "fine_labels" in msg and str(path) in msg


def test_wrong_data_shape(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "b", {b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"shape \[2, 1024\]") as e:
        read_cifar_batch(path)
    assert str(path) in str(e.value)


def test_label_count_mismatch(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "b", {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DataError, match="3 images but 2 labels") as e:
        read_cifar_batch(path)
    assert str(path) in str(e.value)


def test_labels_out_of_range(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "b", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 57]})
    with pytest.raises(DataError, match=r"outside 0\.\.9"):
        read_cifar_batch(path)


def test_str_keys_and_protocol_5(tmp_path: Path) -> None:
    data = np.arange(2 * 3072).reshape(2, 3072).astype(np.uint8)
    path = write_pickle(tmp_path / "b", {"data": data, "labels": np.array([4, 2])}, protocol=5)
    x, y = read_cifar_batch(path)
    np.testing.assert_array_equal(x.reshape(2, -1), data)
    np.testing.assert_array_equal(y, [4, 2])


def test_bad_meta(tmp_path: Path) -> None:
    make_cifar(tmp_path, meta=[b"only", b"two"])
    with pytest.raises(DataError, match="label_names") as e:
        load_cifar10(tmp_path)
    assert str(tmp_path / "batches.meta") in str(e.value)
