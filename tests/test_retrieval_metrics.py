"""Retrieval metrics (hand-computed and against scikit-learn), query/gallery splits, retrieval losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from edgenas.core.errors import DataError
from edgenas.distill.losses import embedding_kd
from edgenas.tasks.retrieval.data import query_gallery_split
from edgenas.tasks.retrieval.losses import batch_hard_triplet
from edgenas.tasks.retrieval.metrics import retrieval_metrics


def _unit(angle_deg: float) -> list[float]:
    a = np.deg2rad(angle_deg)
    return [float(np.cos(a)), float(np.sin(a))]


def test_hand_computed_map_and_recall() -> None:
    # Gallery ranked by angle from the query direction (0°): 10°, 20°, 30°, 40°, 50°, 60°.
    gallery = torch.tensor([_unit(a) for a in (10, 20, 30, 40, 50, 60)])
    g_ids = torch.tensor([0, 1, 0, 1, 1, 1])
    query = torch.tensor([_unit(0), _unit(0)])
    q_ids = torch.tensor([0, 1])
    m = retrieval_metrics(query, q_ids, gallery, g_ids, ks=(1, 5))
    ap0 = (1 / 1 + 2 / 3) / 2  # relevant at ranks 1 and 3
    ap1 = (1 / 2 + 2 / 4 + 3 / 5 + 4 / 6) / 4  # relevant at ranks 2, 4, 5, 6
    assert m["map"] == pytest.approx((ap0 + ap1) / 2)
    assert m["recall@1"] == 0.5 and m["cmc_rank1"] == 0.5
    assert m["recall@5"] == 1.0
    assert m["queries"] == 2 and m["unscored_queries"] == 0 and m["gallery"] == 6


def test_map_matches_sklearn_query_by_query() -> None:
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(23, 8, generator=gen), torch.randn(71, 8, generator=gen)
    q_ids, g_ids = torch.randint(0, 4, (23,), generator=gen), torch.randint(0, 4, (71,), generator=gen)
    m = retrieval_metrics(q, q_ids, g, g_ids, chunk=5)  # several chunks
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).t()
    aps = [average_precision_score((g_ids == q_ids[i]).numpy(), sims[i].numpy()) for i in range(len(q))]
    assert m["map"] == pytest.approx(float(np.mean(aps)), abs=1e-9)
    top1 = sims.argmax(1)
    assert m["recall@1"] == pytest.approx(float((g_ids[top1] == q_ids).float().mean()))


def test_queries_without_a_match_are_counted_not_scored() -> None:
    m = retrieval_metrics(torch.eye(2), torch.tensor([0, 9]), torch.eye(2), torch.tensor([0, 1]))
    assert m["queries"] == 1 and m["unscored_queries"] == 1 and m["map"] == 1.0


def test_query_gallery_split_keeps_a_match_for_every_query() -> None:
    labels = np.array([0] * 20 + [1] * 5 + [2] * 2 + [3])
    q, g = query_gallery_split(labels, 0.25, seed=0)
    assert len(np.intersect1d(q, g)) == 0 and len(q) + len(g) == len(labels)
    assert [int((labels[q] == i).sum()) for i in range(4)] == [5, 1, 1, 0]  # id 3 has one image: gallery only
    assert set(labels[q]) <= set(labels[g])
    q2, _ = query_gallery_split(labels, 0.25, seed=0)
    assert np.array_equal(q, q2)
    with pytest.raises(DataError):
        query_gallery_split(labels, 1.0, seed=0)


def test_batch_hard_triplet_hand_computed() -> None:
    # Anchors on the unit circle: same-id points 90° apart, other id 180° away from the first.
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1])
    d01, d02, d12 = np.sqrt(2), 2.0, np.sqrt(2)
    # anchor 0: pos d01, neg d02; anchor 1: pos d01, neg d12; anchor 2 has no positive (skipped)
    expected = (max(d01 - d02 + 0.5, 0) + max(d01 - d12 + 0.5, 0)) / 2
    loss = batch_hard_triplet(e, y, margin=0.5)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert torch.isfinite(e.grad).all()
    assert batch_hard_triplet(e, torch.tensor([0, 1, 2])).item() == 0.0  # no positives at all


def test_embedding_kd_sees_direction_only() -> None:
    t = torch.randn(5, 4)
    assert embedding_kd(3 * t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_kd(-t, t).item() == pytest.approx(4.0, abs=1e-5)
