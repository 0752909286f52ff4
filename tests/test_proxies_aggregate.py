"""Rank aggregation: expected numbers written by hand from the spec's formula (az-nas.md §2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgenas.core.errors import UserError
from edgenas.proxies import az_aggregate, linear_rank_sum, rank_scores

NAN, NEG_INF = float("nan"), -math.inf

# m = 4 candidates, three proxies with ties, a NaN and -inf.
TABLE = {
    # 1.0 -> rank 2; the two 3.0 tie at (3+4)/2 = 3.5; NaN counts as -inf -> rank 1
    "E": [1.0, 3.0, 3.0, NAN],
    # the two -inf tie at (1+2)/2 = 1.5; 0.2 -> 3; 0.5 -> 4
    "T": [NEG_INF, 0.5, NEG_INF, 0.2],
    # NaN and -inf tie with each other at 1.5; 1 -> 3; 2 -> 4
    "C": [NAN, NEG_INF, 1.0, 2.0],
}
RANKS = {"E": [2.0, 3.5, 3.5, 1.0], "T": [1.5, 4.0, 1.5, 3.0], "C": [1.5, 1.5, 3.0, 4.0]}


def test_rank_scores_by_hand():
    for name, col in TABLE.items():
        np.testing.assert_array_equal(rank_scores(col), RANKS[name])


def test_az_aggregate_by_hand():
    expected = [
        math.log(2.0 / 4) + math.log(1.5 / 4) + math.log(1.5 / 4),
        math.log(3.5 / 4) + math.log(4.0 / 4) + math.log(1.5 / 4),
        math.log(3.5 / 4) + math.log(1.5 / 4) + math.log(3.0 / 4),
        math.log(1.0 / 4) + math.log(3.0 / 4) + math.log(4.0 / 4),
    ]
    np.testing.assert_allclose(az_aggregate(TABLE), expected, rtol=0, atol=1e-12)


def test_linear_rank_sum_by_hand_and_differs_from_az():
    np.testing.assert_array_equal(linear_rank_sum(TABLE), [5.0, 9.0, 8.0, 8.0])
    # weakest stave: candidates 2 and 3 tie on the linear sum, the log sum separates them
    az = az_aggregate(TABLE)
    assert az[2] > az[3]


def test_aggregate_rejects_ragged_or_empty_table():
    with pytest.raises(UserError, match="lengths differ"):
        az_aggregate({"a": [1.0, 2.0], "b": [1.0]})
    with pytest.raises(UserError):
        linear_rank_sum({})
