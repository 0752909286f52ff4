"""The benchmark statistics against values worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgenas.bench.stats import (
    bootstrap_difference,
    kendall_interval,
    kendall_tau,
    mean_std,
    paired_difference,
    predicted_tau,
    rank_icc,
    seeds_for_tau,
    split_half_interval,
    split_half_tau,
    t_interval,
    tau_ceiling,
)


def test_mean_std_uses_the_sample_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, None)


def test_paired_difference_is_a_t_interval_on_the_differences() -> None:
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t(0.975, 2 df) = 4.302653
    iv = paired_difference([1.5, 2.5, 3.5], [0.5, 0.5, 0.5])
    half = 4.302653 / math.sqrt(3)
    assert iv.estimate == pytest.approx(2.0)
    assert (iv.low, iv.high) == pytest.approx((2.0 - half, 2.0 + half), abs=1e-5)
    assert iv.n == 3 and not iv.excludes_zero()
    assert paired_difference([3.0, 3.1, 2.9, 3.0], [1.0, 1.0, 1.0, 1.0]).excludes_zero()
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([1.0, 2.0], [1.0])
    one = t_interval([4.0])
    assert one.estimate == 4.0 and math.isnan(one.low)


def test_tau_of_a_known_permutation() -> None:
    # one swapped pair of 4: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_bootstraps_are_fixed_by_their_seed_and_bracket_the_estimate() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.01, size=(3, 40))
    b = a - 0.01 + rng.normal(0, 0.005, size=(3, 40))
    one, two = bootstrap_difference(a, b, seed=7), bootstrap_difference(a, b, seed=7)
    assert one == two and one.low < one.estimate < one.high and one.excludes_zero()
    assert bootstrap_difference(a, a + 0.02, seed=1).high == pytest.approx(-0.02)  # no spread: a point
    x = np.arange(30.0)
    y = x + rng.normal(0, 5, size=30)
    iv = kendall_interval(x, y, samples=500, seed=3)
    assert iv == kendall_interval(x, y, samples=500, seed=3)
    assert iv.low < iv.estimate < iv.high and iv.estimate == pytest.approx(kendall_tau(x, y))


def test_split_half_tau() -> None:
    acc = np.array([[0.1, 0.2], [0.2, 0.1], [0.3, 0.4], [0.4, 0.3]])
    assert split_half_tau(acc) == pytest.approx(kendall_tau(acc[:, 0], acc[:, 1]))
    perfect = np.repeat(np.arange(10.0)[:, None], 4, axis=1)
    assert split_half_tau(perfect) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 seeds"):
        split_half_tau(acc[:, :1])


def test_split_half_interval() -> None:
    rng = np.random.default_rng(0)
    quality = np.arange(30.0)
    two = quality[:, None] + rng.normal(0, 4, size=(30, 2))
    iv = split_half_interval(two, samples=300, seed=1)  # 2 seeds: the τ interval of seed 0 vs seed 1
    pair = kendall_interval(two[:, 0], two[:, 1], samples=300, seed=1)
    assert (iv.estimate, iv.low, iv.high, iv.n) == (pair.estimate, pair.low, pair.high, 30)
    four = quality[:, None] + rng.normal(0, 4, size=(30, 4))
    iv4 = split_half_interval(four, samples=300, seed=1)
    assert iv4 == split_half_interval(four, samples=300, seed=1) and iv4.method == "bootstrap archs × halvings"
    assert iv4.low < iv4.estimate < iv4.high and iv4.estimate == pytest.approx(split_half_tau(four, seed=1))
    flat = kendall_interval([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], samples=50)  # τ undefined on every resample
    assert math.isnan(flat.low) and math.isnan(flat.high)


def test_kendall_difference_is_paired_over_items() -> None:
    from edgenas.bench.stats import kendall_difference

    y = np.arange(20.0)
    perfect = kendall_difference(y, -y, y, samples=200, seed=0)  # τ = 1 vs τ = -1 on every resample
    assert perfect.estimate == pytest.approx(2.0) and perfect.low == pytest.approx(2.0)
    rng = np.random.default_rng(1)
    noisy = y + rng.normal(0, 3, size=20)
    same = kendall_difference(noisy, noisy, y, samples=200, seed=0)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)  # a score against itself: no spread
    iv = kendall_difference(y + rng.normal(0, 1, 20), noisy, y, samples=500, seed=2)
    assert iv.low < iv.estimate < iv.high and iv.estimate > 0


def test_an_interval_from_one_seed_is_valid_json() -> None:
    iv = paired_difference([0.9], [0.8])
    out = iv.as_json()
    assert out["low"] is None and out["high"] is None and out["estimate"] == pytest.approx(0.1)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_rank_icc_by_hand() -> None:
    # ranks (1,2), (3,4), (5,6) → normal scores Φ⁻¹((r − ½)/6) = ∓1.383, ∓0.674, ∓0.210;
    # arch means −1.029, 0, 1.029: MSB = 2·1.0583 = 2.1167; MSW = mean of (Δz)²/2 = 0.1968
    # ICC(1) = (2.1167 − 0.1968) / (2.1167 + 0.1968) = 0.8298. Only order counts: swapping
    # an arch's two seeds or stretching the scale changes nothing.
    assert rank_icc(np.array([[0.1, 0.2], [0.5, 0.6], [0.8, 0.9]])) == pytest.approx(0.8298, abs=1e-4)
    assert rank_icc(np.array([[0.2, 0.1], [0.5, 0.6], [0.9, 0.8]])) == pytest.approx(0.8298, abs=1e-4)
    assert rank_icc(np.array([[1.0, 1.0], [5.0, 5.0], [8.0, 8.0]])) == pytest.approx(1.0)  # no seed noise
    with pytest.raises(ValueError, match="at least 3 archs"):
        rank_icc(np.array([[0.1, 0.2], [0.3, 0.4]]))


def test_predicted_tau_and_ceiling_match_a_simulated_truth() -> None:
    # archs with signal N(0, 1) and seed noise N(0, 1): true single-seed reliability 0.5
    rng = np.random.default_rng(0)
    signal = rng.normal(size=1500)
    acc = signal[:, None] + rng.normal(size=(1500, 4))
    icc = rank_icc(acc)
    assert icc == pytest.approx(0.5, abs=0.04)
    assert predicted_tau(icc, 1) == pytest.approx(kendall_tau(acc[:, 0], acc[:, 1]), abs=0.04)
    assert predicted_tau(icc, 2) == pytest.approx(kendall_tau(acc[:, :2].mean(1), acc[:, 2:].mean(1)), abs=0.04)
    assert predicted_tau(1.0, 1) == pytest.approx(1.0) and predicted_tau(0.0, 5) == 0.0
    assert predicted_tau(-1.0, 1) == 0.0 and tau_ceiling(-1.0, 2) == 0.0  # ICC(1)'s floor −1/(k−1): no signal
    # a perfect score (the signal itself) against a 2-seed truth
    assert tau_ceiling(icc, 2) == pytest.approx(kendall_tau(signal, acc[:, :2].mean(1)), abs=0.04)
    assert tau_ceiling(0.0, 2) == 0.0 and tau_ceiling(-0.2, 2) == 0.0 and tau_ceiling(1.0, 1) == pytest.approx(1.0)


def test_seeds_for_tau_inverts_the_prediction() -> None:
    assert seeds_for_tau(0.5, predicted_tau(0.5, 3)) == pytest.approx(3.0)
    # ICC 1/3 → r(2 seeds) = 0.5 → τ = (2/π)·arcsin(0.5) = 1/3
    assert predicted_tau(1 / 3, 2) == pytest.approx(1 / 3) and seeds_for_tau(1 / 3, 1 / 3) == pytest.approx(2.0)
    assert seeds_for_tau(0.99, 0.7) == 1.0  # one seed already agrees enough
    assert seeds_for_tau(0.0, 0.7) is None and seeds_for_tau(-0.1, 0.7) is None
