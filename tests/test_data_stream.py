"""Streaming splits: the same splits and batches as in memory, bad files named or skipped, augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.core.errors import DataError
from edgenas.data import load_dataset
from edgenas.data.augment import random_resized_crop_flip
from edgenas.data.base import BatchLoader, make_loader
from edgenas.data.datasets import wants_streaming
from edgenas.data.stream import StreamLoader, StreamSplit


def make_folder(root: Path, per_class: int = 14, side: int = 8) -> list[Path]:
    """Three classes of random gray images (PNG is lossless, so pixels compare exactly)."""
    rng = np.random.default_rng(0)
    files = []
    for name in ("ant", "bee", "cat"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / name / f"{i:02d}.png"
            Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(path)
            files.append(path)
    return files


def batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.set_epoch(epoch)
    return list(loader)


def test_folder_streams_the_same_splits_and_batches(tmp_path: Path) -> None:
    make_folder(tmp_path)
    mem = load_dataset("folder", tmp_path, seed=3, val_fraction=0.2, subset=30, in_memory=True)
    stream = load_dataset("folder", tmp_path, seed=3, val_fraction=0.2, subset=30, in_memory=False, workers=0)
    assert stream.streaming and not mem.streaming and isinstance(stream.train, StreamSplit)
    assert stream.info == mem.info
    for name in ("train", "val", "test"):
        a, b = getattr(mem, name), getattr(stream, name)
        assert torch.equal(a.labels, b.labels), name
    # every training image: the stats come from all of them (fewer than STATS_IMAGES), so equal up to rounding
    np.testing.assert_allclose(stream.mean, mem.mean, rtol=1e-6)
    x, y = next(iter(make_loader(stream.test, 1000)))
    torch.testing.assert_close(x, mem.test.images, rtol=1e-5, atol=1e-5)
    assert torch.equal(y, mem.test.labels)
    for epoch in (0, 1):
        ref = batches(BatchLoader(mem.train, 5, shuffle=True, seed=3, drop_last=True), epoch)
        got = batches(StreamLoader(stream.train, 5, shuffle=True, seed=3, drop_last=True), epoch)
        assert [yb.tolist() for _, yb in got] == [yb.tolist() for _, yb in ref]
        for (xs, _), (xm, _) in zip(got, ref, strict=True):
            torch.testing.assert_close(xs, xm, rtol=1e-5, atol=1e-5)


def test_worker_processes_give_the_same_batches(tmp_path: Path) -> None:
    make_folder(tmp_path, per_class=6)
    data = load_dataset("folder", tmp_path, seed=1, in_memory="auto", workers=0)
    assert data.streaming  # auto streams folders
    inline = StreamLoader(data.train, 4, shuffle=True, seed=1, augment="crop-flip", workers=0)
    pooled = StreamLoader(data.train, 4, shuffle=True, seed=1, augment="crop-flip", workers=2)
    for (xa, ya), (xb, yb) in zip(batches(inline, 2), batches(pooled, 2), strict=True):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_array_datasets_stream_like_memory() -> None:
    mem = load_dataset("digits", seed=0, subset=400, resize=12)
    stream = load_dataset("digits", seed=0, subset=400, resize=12, in_memory=False, workers=0)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(mem, name).labels, getattr(stream, name).labels)
    x, _ = next(iter(StreamLoader(stream.val, 10_000)))
    torch.testing.assert_close(x, mem.val.images, rtol=1e-5, atol=1e-5)


def test_auto_streams_only_folders_and_large_data() -> None:
    assert not wants_streaming("fashion-mnist", "auto", None)
    assert wants_streaming("fashion-mnist", "auto", 224)  # 70k x 224² x 4 B ≈ 14 GB
    assert not wants_streaming("fashion-mnist", "auto", 224, subset=100, test_subset=100)
    assert wants_streaming("folder", "auto", None) and wants_streaming("digits", False, None)
    assert not wants_streaming("folder", True, None)
    with pytest.raises(DataError, match="in_memory must be auto, true or false"):
        load_dataset("digits", in_memory="sometimes")


def corrupt(path: Path) -> None:
    """Keep a valid PNG header but cut the pixel data: the scan passes, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_png_is_named_or_skipped(tmp_path: Path) -> None:
    files = make_folder(tmp_path, per_class=5)
    corrupt(files[7])
    with pytest.raises(DataError, match=rf"cannot read image {files[7]}.*skip_bad"):
        # named when first decoded: while taking the statistics (a training image) or in a batch
        data = load_dataset("folder", tmp_path, seed=0, val_fraction=0.2, in_memory=False, workers=0)
        for split in (data.train, data.val, data.test):
            list(StreamLoader(split, 4))
    with pytest.raises(DataError, match=rf"cannot read image {files[7]}"):
        load_dataset("folder", tmp_path, in_memory=True)
    data = load_dataset("folder", tmp_path, seed=0, val_fraction=0.2, in_memory=False, workers=0, skip_bad=True)
    seen, skipped = 0, set()
    for split in (data.train, data.val, data.test):
        loader = StreamLoader(split, 4)
        seen += sum(len(y) for _, y in loader)
        skipped |= loader.skipped_files
    assert skipped == {str(files[7])} and seen == len(files) - 1
    mem = load_dataset("folder", tmp_path, seed=0, in_memory=True, skip_bad=True)
    assert len(mem.train) + len(mem.val) + len(mem.test) == len(files) - 1


def test_unreadable_header_is_named_at_scan(tmp_path: Path) -> None:
    make_folder(tmp_path, per_class=3)
    bad = tmp_path / "bee" / "zz.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=rf"cannot read image {bad}"):
        load_dataset("folder", tmp_path, in_memory=False)
    data = load_dataset("folder", tmp_path, in_memory=False, skip_bad=True, workers=0)
    assert len(data.train) + len(data.val) + len(data.test) == 9


def test_random_resized_crop_flip_is_seeded_and_keeps_shape() -> None:
    x = torch.randn(6, 3, 16, 12)
    a = random_resized_crop_flip(x, torch.Generator().manual_seed(5))
    b = random_resized_crop_flip(x, torch.Generator().manual_seed(5))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    # a full-area crop (scale 1, the image's own aspect) is the image or its mirror, per image
    full = random_resized_crop_flip(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(0.75, 0.75))
    flipped = [torch.allclose(f, xi.flip(-1), atol=1e-5) for f, xi in zip(full, x, strict=True)]
    kept = [torch.allclose(f, xi, atol=1e-5) for f, xi in zip(full, x, strict=True)]
    assert all(a or b for a, b in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_train_command_streams_a_folder_and_counts_skipped_images(tmp_path: Path) -> None:
    from edgenas.cli import run as cli
    from edgenas.core.rundir import RunDir

    files = make_folder(tmp_path / "data", per_class=10)
    corrupt(files[3])
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    argv = ["train", "--arch", arch, "--dataset", "folder", "--data-dir", str(tmp_path / "data")]
    argv += ["--width", "4", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--quiet"]
    argv += ["--in-memory", "false", "--data-workers", "0", "--augment", "rrc-flip", "--resolution", "12"]
    assert cli([*argv, "--run-dir", str(tmp_path / "bad")]) == 2  # the corrupt file stops it, named
    assert not (tmp_path / "bad").exists()  # before a run folder is made
    assert cli([*argv, "--skip-bad", "--run-dir", str(tmp_path / "run")]) == 0
    res = RunDir(tmp_path / "run")
    results = json.loads((res.path / "results.json").read_text())
    assert results["streaming"] is True and results["precision"] == "fp32 channels_last"
    assert res.read_config()["options"]["in_memory"] is False
    # 30 images: 6 test, 24 train pool -> 2 val + 22 train; the bad one is in exactly one split
    assert results["train_images"] + results["val_images"] == 24
    assert results["shape"]["resolution"] == 12


def test_retrieval_query_and_gallery_identities_are_the_same_streamed(tmp_path: Path) -> None:
    from edgenas.tasks.retrieval.data import load_retrieval

    make_folder(tmp_path, per_class=12)
    for split in ({"protocol": "closed"}, {"protocol": "open", "test_ids": 1}):
        mem = load_retrieval("folder", tmp_path, seed=2, query_fraction=0.3, **split)
        stream = load_retrieval("folder", tmp_path, seed=2, query_fraction=0.3, in_memory=False, workers=0, **split)
        for name in ("train", "query", "gallery"):
            a, b = getattr(mem, name), getattr(stream, name)
            assert torch.equal(a.labels, b.labels), name
        x, _ = next(iter(make_loader(stream.query, 100)))
        torch.testing.assert_close(x, mem.query.images, rtol=1e-5, atol=1e-5)
