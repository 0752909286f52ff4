"""Distillation losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from edgenas.distill.losses import FeatureKD, hinton_kd, rkd_angle, rkd_distance, similarity_kd


def test_hinton_kd_hand_value_and_zero_for_identical() -> None:
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # teacher probs (3/4, 1/4) at T=1
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert hinton_kd(s, t, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # at T=2 the teacher logits halve: probs ∝ (sqrt 3, 1); times T² = 4
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    expected_t2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert hinton_kd(s, t, temperature=2.0).item() == pytest.approx(expected_t2, rel=1e-6)
    logits = torch.randn(5, 10)
    assert hinton_kd(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        hinton_kd(s, t, temperature=0)


def test_hinton_kd_trains_student_only() -> None:
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    hinton_kd(s, t).backward()
    assert s.grad is not None and t.grad is None


def test_feature_kd_projector_and_pooling() -> None:
    kd = FeatureKD(2, 3)
    with torch.no_grad():
        kd.projector.weight.zero_()
        kd.projector.weight[0, 0] = 1.0  # teacher channel 0 <- student channel 0
    s = torch.zeros(1, 2, 4, 4)
    s[0, 0] = 2.0
    t = torch.zeros(1, 3, 2, 2)  # smaller map: student is pooled to 2x2 -> channel 0 = 2.0
    # squared error: channel 0 has 4 positions of (2-0)^2 = 4; mean over 1*3*2*2 = 12 elements
    assert kd(s, t).item() == pytest.approx(16 / 12)
    t[0, 0] = 2.0
    assert kd(s, t).item() == pytest.approx(0.0)


def test_relational_losses_zero_for_identical_and_scale_invariant() -> None:
    e = torch.randn(6, 5)
    assert rkd_distance(e, e).item() == pytest.approx(0.0, abs=1e-7)
    assert rkd_distance(3 * e, e).item() == pytest.approx(0.0, abs=1e-6)  # distances are mean-normalised
    assert rkd_angle(2 * e + 1, e).item() == pytest.approx(0.0, abs=1e-6)  # angles survive scale and shift
    assert rkd_distance(torch.randn(6, 5), e).item() > 0.01


def test_rkd_distance_hand_value() -> None:
    # three points on a line at 0, 1, 3: distances 1, 3, 2, mean 2 -> normalised 0.5, 1.5, 1
    t = torch.tensor([[0.0], [1.0], [3.0]])
    s = torch.tensor([[0.0], [1.0], [2.0]])  # distances 1, 2, 1, mean 4/3 -> 0.75, 1.5, 0.75
    diffs = torch.tensor([0.25, 0.0, 0.25])  # |s - t| per pair: (0.75-0.5), (1.5-1.5), (0.75-1)
    # smooth-L1 (beta 1) = 0.5 d² for |d| < 1, over the 9 matrix entries (each pair twice, diagonal 0)
    expected = (2 * (0.5 * diffs**2).sum() / 9).item()
    assert rkd_distance(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_similarity_kd_hand_value() -> None:
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # G_t = I, rows already unit
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # G_s = ones -> rows (1/√2, 1/√2)
    r = 1 / math.sqrt(2)
    expected = 2 * ((r - 1) ** 2 + r**2) / 4
    assert similarity_kd(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert similarity_kd(t, t).item() == pytest.approx(0.0)
