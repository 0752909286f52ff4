"""IDX reader: round trips (gz, raw, dotted names), every malformed-file error, real Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from edgenas.core.errors import DataError
from edgenas.data import datasets, load_dataset
from edgenas.data.idx import IMAGES_MAGIC, LABELS_MAGIC, load_idx_dataset, read_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None) -> Path:
    data = idx_bytes(arr, magic)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_dataset(root: Path, n_train: int = 40, n_test: int = 20, suffix: str = ".gz", dotted: bool = False):
    """Write a tiny MNIST-style dataset; returns the arrays written."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        write_idx(root / (name + suffix), arr)
    return arrays


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 3], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / f"im{suffix}", images))
    got_labels = read_idx(write_idx(tmp_path / f"lb{suffix}", labels))
    assert got_images.shape == (2, 3, 4) and got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, [7, 3])
    assert got_images.flags.writeable


def test_read_idx_gzip_content_without_gz_suffix(tmp_path: Path) -> None:
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(gzip.compress(idx_bytes(np.array([1, 2, 3]))))
    np.testing.assert_array_equal(read_idx(path), [1, 2, 3])


@pytest.mark.parametrize(("suffix", "dotted"), [(".gz", False), ("", False), (".gz", True), ("", True)])
def test_load_idx_dataset_finds_all_spellings(tmp_path: Path, suffix: str, dotted: bool) -> None:
    arrays = make_dataset(tmp_path, suffix=suffix, dotted=dotted)
    train_x, train_y, test_x, test_y = load_idx_dataset(tmp_path, "mnist")
    np.testing.assert_array_equal(train_x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(test_x, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(train_y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(test_y, arrays["t10k-labels-idx1-ubyte"])
    assert train_y.dtype == np.int64 and train_x.shape == (40, 6, 5) and test_x.shape == (20, 6, 5)


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as e:
        load_idx_dataset(missing, "mnist")
    assert str(missing) in str(e.value) and "--data-dir" in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing") as e:
        load_idx_dataset(tmp_path, "mnist")
    assert "t10k-labels-idx1-ubyte" in str(e.value)


def test_wrong_magic_names_expected_and_found(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    # A labels file where the images file should be.
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros(40, dtype=np.uint8))
    with pytest.raises(DataError, match="wrong magic") as e:
        load_idx_dataset(tmp_path, "mnist")
    msg = str(e.value)
    assert "train-images-idx3-ubyte.gz" in msg and "expected 0x00000803" in msg and "found 0x00000801" in msg


def test_read_idx_rejects_unknown_magic(tmp_path: Path) -> None:
    path = tmp_path / "weird.idx"
    path.write_bytes(b"\x00\x00\x0d\x01" + (1).to_bytes(4, "big") + b"\x00\x00\x00\x00")
    with pytest.raises(DataError, match=r"found 0x00000D01") as e:
        read_idx(path)
    assert "weird.idx" in str(e.value) and "0x00000801" in str(e.value)


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_truncated_file_reports_sizes(tmp_path: Path, suffix: str) -> None:
    make_dataset(tmp_path, suffix=suffix)
    name = "train-images-idx3-ubyte" + suffix
    full = idx_bytes(np.zeros((40, 6, 5), dtype=np.uint8))
    cut = full[:-7]
    (tmp_path / name).write_bytes(gzip.compress(cut) if suffix else cut)
    with pytest.raises(DataError, match="truncated") as e:
        load_idx_dataset(tmp_path, "mnist")
    msg = str(e.value)
    assert name in msg and f"expected {len(full)} bytes" in msg and f"found {len(cut)}" in msg


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_trailing_data_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.array([1, 2])) + b"junk")
    with pytest.raises(DataError, match="trailing data"):
        read_idx(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip") as e:
        load_idx_dataset(tmp_path, "mnist")
    assert str(path) in str(e.value)


def test_cut_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    data = gzip.compress(idx_bytes(np.arange(1000) % 256))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a valid gzip") as e:
        read_idx(path)
    assert str(path) in str(e.value)


def test_label_count_mismatch(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8))
    with pytest.raises(DataError, match="39 labels") as e:
        load_idx_dataset(tmp_path, "mnist")
    assert "train-labels-idx1-ubyte.gz" in str(e.value) and "40 images" in str(e.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, dtype=np.uint8))
    with pytest.raises(DataError, match="label 12") as e:
        load_idx_dataset(tmp_path, "mnist", num_classes=10)
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value)


def test_load_dataset_from_idx_dir(tmp_path: Path) -> None:
    arrays = make_dataset(tmp_path, n_train=100, n_test=30)
    splits = load_dataset("fashion-mnist", tmp_path, val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 30)
    assert splits.train.images.shape == (80, 1, 6, 5) and splits.train.images.dtype == torch.float32
    assert splits.info.class_names[0] == "T-shirt/top" and splits.info.channels == 1
    # Un-normalising the test split gives back the file's pixels / 255, in file order.
    raw = splits.test.images * splits.std[0] + splits.mean[0]
    np.testing.assert_allclose(raw[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"] / 255.0, atol=1e-5)
    np.testing.assert_array_equal(splits.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_missing_default_fashion_dir_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.DEFAULT_DIRS, "fashion-mnist", str(tmp_path / "absent"))
    with pytest.raises(DataError) as e:
        load_dataset("fashion-mnist")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg and "--dataset digits" in msg
    assert "\n" not in msg


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_real_fashion_mnist() -> None:
    splits = load_dataset("fashion-mnist", test_subset=1000)
    assert len(splits.train) + len(splits.val) == 60000 and len(splits.val) == 6000
    assert len(splits.test) == 1000
    assert splits.train.images.shape[1:] == (1, 28, 28)
    # Fashion-MNIST is balanced: 6000 per class, 5400 of them in train after a stratified 10% val.
    assert torch.bincount(splits.train.labels, minlength=10).tolist() == [5400] * 10
    assert splits.mean[0] == pytest.approx(0.286, abs=0.002) and splits.std[0] == pytest.approx(0.353, abs=0.002)
    train_x, train_y, test_x, test_y = load_idx_dataset(FASHION_DIR, "fashion-mnist")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert len(train_y) == 60000 and len(test_y) == 10000 and set(np.unique(test_y)) == set(range(10))


def test_magic_constants() -> None:
    assert (IMAGES_MAGIC, LABELS_MAGIC) == (0x803, 0x801)
