"""Class-per-folder images: class order, colour mode, resizing, info without loading, every error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgenas.core.errors import DataError
from edgenas.data import dataset_info, load_dataset
from edgenas.data.folder import load_image_folder, scan_image_folder


def save(path: Path, value: int | tuple[int, int, int], size: tuple[int, int] = (6, 6), mode: str = "L") -> Path:
    """A constant-colour image, so the loaded pixels can be checked exactly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def make_gray_folder(root: Path, per_class: int = 3) -> None:
    for c, name in enumerate(["zebra", "ant", "moth"]):
        for i in range(per_class):
            save(root / name / f"{i:02d}.png", 10 * c + i)


def test_classes_sorted_and_pixels_exact(tmp_path: Path) -> None:
    make_gray_folder(tmp_path)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()
    x, y, classes = load_image_folder(tmp_path)
    assert classes == ("ant", "moth", "zebra")
    assert x.shape == (9, 1, 6, 6) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # ant was written as class 1 (values 10..12), zebra as class 0 (values 0..2).
    np.testing.assert_array_equal(x[:, 0, 0, 0], [10, 11, 12, 20, 21, 22, 0, 1, 2])
    assert (x == x[:, :, :1, :1]).all()


def test_mixed_modes_become_rgb(tmp_path: Path) -> None:
    save(tmp_path / "a" / "0.png", 100)
    save(tmp_path / "b" / "0.jpg", (255, 0, 0), mode="RGB")
    save(tmp_path / "b" / "1.bmp", (0, 0, 255), mode="RGB")
    x, _, _ = load_image_folder(tmp_path)
    assert x.shape == (3, 3, 6, 6)
    np.testing.assert_array_equal(x[0, :, 0, 0], [100, 100, 100])  # gray replicated to RGB
    np.testing.assert_array_equal(x[2, :, 0, 0], [0, 0, 255])  # bmp is lossless
    assert x[1, 0, 0, 0] > 200 and x[1, 2, 0, 0] < 50  # jpeg: red, approximately


def test_sizes_follow_first_image_or_resize(tmp_path: Path) -> None:
    save(tmp_path / "a" / "0.png", 50, size=(10, 10))
    save(tmp_path / "a" / "1.png", 60, size=(20, 14))
    save(tmp_path / "b" / "0.png", 70, size=(4, 4))
    x, _, _ = load_image_folder(tmp_path)
    assert x.shape == (3, 1, 10, 10)
    np.testing.assert_array_equal(x[:, 0, 5, 5], [50, 60, 70])  # constant images stay constant
    x, _, _ = load_image_folder(tmp_path, resize=7)
    assert x.shape == (3, 1, 7, 7)


def test_dataset_info_matches_load(tmp_path: Path) -> None:
    make_gray_folder(tmp_path, per_class=5)
    info = dataset_info("folder", tmp_path, resize=12)
    splits = load_dataset("folder", tmp_path, resize=12, val_fraction=0.25)
    assert info == splits.info
    assert info.channels == 1 and info.resolution == 12 and info.class_names == ("ant", "moth", "zebra")
    # 15 images: 3 held out as test (20%), then 25% of the remaining 12 as val.
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)
    assert splits.train.images.shape[1:] == (1, 12, 12)


def test_folder_needs_data_dir() -> None:
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("folder")
    with pytest.raises(DataError, match="--data-dir"):
        dataset_info("folder")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as e:
        load_image_folder(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(e.value)


def test_no_class_subfolders(tmp_path: Path) -> None:
    save(tmp_path / "loose.png", 1)
    with pytest.raises(DataError, match="no class sub-folders") as e:
        scan_image_folder(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_single_class(tmp_path: Path) -> None:
    save(tmp_path / "only" / "0.png", 1)
    with pytest.raises(DataError, match="only one class") as e:
        scan_image_folder(tmp_path)
    assert "only" in str(e.value)


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    make_gray_folder(tmp_path)
    (tmp_path / "beetle").mkdir()
    (tmp_path / "beetle" / "readme.md").write_text("no images here")
    with pytest.raises(DataError, match="has no images") as e:
        load_image_folder(tmp_path)
    assert str(tmp_path / "beetle") in str(e.value)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    make_gray_folder(tmp_path)
    bad = tmp_path / "moth" / "broken.png"
    bad.write_bytes(b"definitely not a png")
    with pytest.raises(DataError, match="cannot read image") as e:
        dataset_info("folder", tmp_path)
    assert str(bad) in str(e.value)


def test_truncated_image_is_named(tmp_path: Path) -> None:
    make_gray_folder(tmp_path)
    bad = tmp_path / "ant" / "big.png"
    noise = np.random.default_rng(0).integers(0, 256, (6, 6), dtype=np.uint8)
    Image.fromarray(noise).save(bad)
    bad.write_bytes(bad.read_bytes()[:60])  # header intact, pixel data cut
    with pytest.raises(DataError, match="cannot read image") as e:
        load_image_folder(tmp_path)
    assert str(bad) in str(e.value)
