"""The shared pipeline: stratified seeded splits, subsets, resize, normalisation, options, BatchLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgenas.core.errors import DataError
from edgenas.data import DATASETS, BatchLoader, Split, dataset_info, load_dataset
from edgenas.data.augment import crop_flip
from edgenas.data.splits import stratified_pick

# ---- stratified_pick ---------------------------------------------------------------------------


def test_stratified_pick_quotas_are_proportional_and_exact() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    picked, rest = stratified_pick(labels, 25, seed=0, purpose="t")
    assert len(picked) == 25 and len(rest) == 75
    assert sorted(np.concatenate([picked, rest]).tolist()) == list(range(100))
    # 25% of 50/30/20 = 12.5/7.5/5: floors 12/7/5, and the one leftover goes to a class with remainder .5.
    assert np.bincount(labels[picked], minlength=3).tolist() in ([13, 7, 5], [12, 8, 5])
    assert np.all(np.diff(picked) > 0) and np.all(np.diff(rest) > 0)


def test_stratified_pick_is_seeded() -> None:
    labels = np.arange(200) % 7
    a = stratified_pick(labels, 40, 5, "val")[0]
    assert np.array_equal(a, stratified_pick(labels, 40, 5, "val")[0])
    assert not np.array_equal(a, stratified_pick(labels, 40, 6, "val")[0])
    assert not np.array_equal(a, stratified_pick(labels, 40, 5, "other")[0])


# ---- load_dataset ------------------------------------------------------------------------------


def test_same_seed_same_splits_other_seed_different() -> None:
    a = load_dataset("digits", seed=7, subset=300, test_subset=50)
    b = load_dataset("digits", seed=7, subset=300, test_subset=50)
    c = load_dataset("digits", seed=8, subset=300, test_subset=50)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).images, getattr(b, part).images)
        assert torch.equal(getattr(a, part).labels, getattr(b, part).labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert not torch.equal(a.test.images, c.test.images)


def test_subset_sizes_and_stratification() -> None:
    splits = load_dataset("digits", subset=500, test_subset=100, val_fraction=0.2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (400, 100, 100)
    # Digits classes hold 174..183 training images each, so every class gets 9-11 of 100 val images.
    for part in (splits.val, splits.test):
        counts = torch.bincount(part.labels, minlength=10)
        assert counts.min() >= 9 and counts.max() <= 11 and counts.sum() == 100


def test_resize_and_normalisation() -> None:
    splits = load_dataset("digits", resize=13, subset=400)
    assert splits.train.images.shape[1:] == (1, 13, 13) and splits.test.images.shape[1:] == (1, 13, 13)
    assert splits.info.resolution == 13 == dataset_info("digits", resize=13).resolution
    x = splits.train.images
    assert x.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert x.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    # The stored mean/std undo the normalisation back to [0, 1].
    raw = x * splits.std[0] + splits.mean[0]
    assert raw.min().item() >= -1e-5 and raw.max().item() <= 1 + 1e-5
    # The test split uses the train statistics, so its mean is only near zero.
    assert abs(splits.test.images.mean().item()) < 0.2


def test_resize_matches_interpolate() -> None:
    plain = load_dataset("digits", subset=100, test_subset=20)
    big = load_dataset("digits", subset=100, test_subset=20, resize=16)
    raw = plain.test.images * plain.std[0] + plain.mean[0]
    want = F.interpolate(raw, size=(16, 16), mode="bilinear", align_corners=False)
    got = big.test.images * big.std[0] + big.mean[0]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_zero_val_fraction_gives_empty_val() -> None:
    splits = load_dataset("digits", val_fraction=0.0, subset=100)
    assert len(splits.train) == 100 and len(splits.val) == 0 and splits.val.images.shape == (0, 1, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"val_fraction": "0.1"}, "val_fraction"),
        ({"subset": 0}, "subset must be a positive integer"),
        ({"subset": 2.5}, "subset must be a positive integer"),
        ({"subset": True}, "subset must be a positive integer"),
        ({"subset": 5000}, "subset=5000 is more than the 1438"),
        ({"test_subset": 1000}, "test_subset=1000 is more than the 359"),
        ({"test_subset": -3}, "test_subset must be a positive integer"),
        ({"resize": 0}, "resize must be a positive integer"),
        ({"subset": 1, "val_fraction": 0.5}, "leaves no training images"),
    ],
)
def test_bad_options(kwargs: dict, needle: str) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("digits", **kwargs)
    assert needle in str(e.value)


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'") as e:
        load_dataset("imagenet")
    assert all(name in str(e.value) for name in DATASETS)
    with pytest.raises(DataError, match="unknown dataset"):
        dataset_info("svhn")


def test_fixed_infos() -> None:
    fm = dataset_info("fashion-mnist")
    assert (fm.channels, fm.resolution, fm.num_classes) == (1, 28, 10) and fm.class_names[-1] == "Ankle boot"
    assert dataset_info("mnist").class_names == tuple("0123456789")
    c = dataset_info("cifar10", resize=64)
    assert (c.channels, c.resolution, c.class_names[0]) == (3, 64, "airplane")


# ---- BatchLoader -------------------------------------------------------------------------------


def toy_split(n: int = 10) -> Split:
    return Split(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone(), torch.arange(n))


def order(loader: BatchLoader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_unshuffled_batches_in_order() -> None:
    loader = BatchLoader(toy_split(10), 4)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    assert order(loader) == list(range(10))
    assert torch.equal(batches[1][0][:, 0, 0, 0], torch.tensor([4.0, 5, 6, 7]))


def test_drop_last() -> None:
    loader = BatchLoader(toy_split(10), 4, shuffle=True, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in loader] == [4, 4]
    assert len(BatchLoader(toy_split(8), 4, drop_last=True)) == 2


def test_shuffle_is_a_function_of_seed_and_epoch() -> None:
    split = toy_split(50)
    a, b = BatchLoader(split, 8, shuffle=True, seed=1), BatchLoader(split, 8, shuffle=True, seed=1)
    epoch0 = order(a)
    assert sorted(epoch0) == list(range(50)) and epoch0 != list(range(50))
    assert order(a) == epoch0  # iterating again without set_epoch repeats the epoch
    a.set_epoch(1)
    epoch1 = order(a)
    assert epoch1 != epoch0
    b.set_epoch(1)  # a fresh loader resumed at epoch 1 sees the same order
    assert order(b) == epoch1
    assert order(BatchLoader(split, 8, shuffle=True, seed=2)) != epoch0
    # Images travel with their labels.
    for x, y in a:
        assert torch.equal(x[:, 0, 0, 0].long(), y)


def test_augment_preserves_shape_is_seeded_and_leaves_split_alone() -> None:
    split = Split(torch.randn(20, 3, 8, 8), torch.arange(20))
    before = split.images.clone()
    loader = BatchLoader(split, 6, augment="crop-flip", seed=3)
    xs = [x for x, _ in loader]
    assert [tuple(x.shape) for x in xs] == [(6, 3, 8, 8)] * 3 + [(2, 3, 8, 8)]
    assert torch.equal(split.images, before)
    assert not torch.equal(torch.cat(xs), before)
    assert all(torch.equal(p, q) for p, q in zip(xs, [x for x, _ in loader], strict=True))
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([x for x, _ in loader]), torch.cat(xs))


def test_crop_flip_is_a_shifted_possibly_flipped_window() -> None:
    x = torch.randn(16, 2, 5, 5)
    out = crop_flip(x, torch.Generator().manual_seed(0))
    padded = F.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(len(x)):
        windows = [(dy, dx, padded[i, :, dy : dy + 5, dx : dx + 5]) for dy in range(9) for dx in range(9)]
        matches = [
            (dy, dx, flip)
            for dy, dx, w in windows
            for flip in (False, True)
            if torch.equal(out[i], w.flip(-1) if flip else w)
        ]
        assert matches, f"sample {i} is not a crop of its padded input"
        flips += matches[0][2]
    assert 0 < flips < 16


def test_loader_rejects_bad_arguments() -> None:
    with pytest.raises(DataError, match="batch size"):
        BatchLoader(toy_split(), 0)
    with pytest.raises(DataError, match="unknown augmentation 'mixup'"):
        BatchLoader(toy_split(), 4, augment="mixup")
