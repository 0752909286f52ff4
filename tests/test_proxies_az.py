"""AZ-NAS proxies: each formula checked against a case whose answer is known in closed form."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from edgenas.core.errors import UserError
from edgenas.core.seeding import numpy_rng, torch_generator
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.proxies import AZ_PROXIES, ProxyContext, available, block_expressivity, get, score_network
from edgenas.proxies import az_expressivity as az_e
from edgenas.proxies.az_trainability import block_score
from edgenas.spaces.nb201 import NB201Arch, NB201Network, NB201Space

SHAPE = NetShape(width=8, cells=1, in_channels=3, resolution=16, num_classes=10)
IDENTITY_CELL = "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


def random_conv_arch() -> NB201Arch:
    """A deterministic random NB201 cell that has a 3x3 conv on a live edge (so it is seed-sensitive)."""
    rng = numpy_rng(7, "test_proxies_az")
    space = NB201Space()
    while True:
        arch = space.sample(rng)
        if any(arch.ops[k] == "nor_conv_3x3" for k in arch.live_edges()):
            return arch


def test_registry_lists_az_proxies_and_rejects_unknown():
    assert set(AZ_PROXIES) <= set(available())
    with pytest.raises(UserError, match="az_expressivity"):
        get("az_nope")


def test_context_requires_forward_features():
    with pytest.raises(UserError, match="forward_features"):
        ProxyContext(nn.Conv2d(3, 4, 1), (3, 8, 8), batch=2)


def test_expressivity_isotropic_is_ln_c():
    c = 8
    x = torch.randn(8192, c, 1, 1, generator=torch_generator(0, "iso"))
    assert block_expressivity(x) == pytest.approx(math.log(c), rel=0.01)


def test_expressivity_collapsed_is_zero():
    g = torch_generator(0, "collapsed")
    z = torch.randn(16, 1, 4, 4, generator=g)
    w = torch.randn(1, 8, 1, 1, generator=g)
    assert abs(block_expressivity(z * w)) < 1e-6


def test_expressivity_constant_feature_is_neg_inf():
    class Const(nn.Module):
        def forward_features(self, x):
            f = x * 0.0
            return f, [f, f + 1.0]

    ctx = ProxyContext(Const(), (2, 4, 4), batch=4)
    assert get("az_expressivity")(ctx) == -math.inf


def test_identity_cell_gives_trainability_neg_inf():
    model = NB201Network(NB201Arch.parse(IDENTITY_CELL), SHAPE)
    ctx = ProxyContext(model, SHAPE.input_shape, batch=4)
    assert get("az_trainability")(ctx) == -math.inf


class LinearBlocks(nn.Module):
    """Primary blocks that are 1x1 convs with a set weight: the block Jacobian is that weight exactly."""

    def __init__(self, weight: torch.Tensor, blocks: int = 3, stride: int = 1) -> None:
        super().__init__()
        c = weight.shape[0]
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 1, stride=stride, bias=False) for _ in range(blocks))
        with torch.no_grad():
            for conv in self.convs:
                conv.weight.copy_(weight.view(c, c, 1, 1))

    def forward_features(self, x):
        feats = [x]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        return feats[-1], feats


def trainability_bounds(scale: float, channels: int, n: int) -> tuple[float, float]:
    """Range of t for sigma within scale * (1 ± 3 sqrt(C/n)).

    The Hutchinson estimate M = UᵀV/n = Aᵀ (VᵀV/n) carries the spread of a C x C sample covariance,
    whose top eigenvalue sits near (1 + sqrt(C/n))²; 3 sqrt(C/n) bounds that with room for noise.
    """
    delta = 3.0 * math.sqrt(channels / n)
    lo, hi = block_score(scale * (1 + delta)), block_score(scale * (1 - delta))
    if scale == 1.0:  # t peaks at 0 for sigma = 1
        return min(lo, hi), 0.0
    return min(lo, hi), max(lo, hi)


@pytest.mark.parametrize(("scale", "stride"), [(1.0, 1), (2.0, 1), (1.0, 2), (2.0, 2)])
def test_trainability_of_known_linear_map(scale, stride):
    """Orthogonal weight -> sigma = 1 -> t = 0; scaled by 2 -> t = 2 - 2 - 1/2 = -0.5.

    stride 2 exercises the PixelUnshuffle alignment: the gradient lands on every other position
    only, and unshuffling moves it into channels so M still estimates the weight.
    """
    c, batch, res, blocks = 4, 16, 16, 2 if stride == 1 else 1
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=torch_generator(1, "orth"), dtype=torch.float64))
    model = LinearBlocks((scale * q).float(), blocks=blocks, stride=stride)
    ctx = ProxyContext(model, (c, res, res), batch=batch, reinit=False)
    value = get("az_trainability")(ctx)
    n = batch * (res // stride) ** 2
    lo, hi = trainability_bounds(scale, c, n)
    assert lo <= value <= hi
    assert value == pytest.approx(2.0 - scale - 1.0 / scale, abs=0.1)


def test_trainability_flags_a_zero_block():
    model = LinearBlocks(torch.zeros(4, 4), blocks=1)
    ctx = ProxyContext(model, (4, 4, 4), batch=4, reinit=False)
    assert get("az_trainability")(ctx) == pytest.approx(-1e6, rel=1e-3)


def test_progressivity_is_min_consecutive_difference():
    model = NB201Network(random_conv_arch(), SHAPE)
    ctx = ProxyContext(model, SHAPE.input_shape, batch=8)
    per_block = az_e.block_values(ctx)
    assert len(per_block) == 3 * SHAPE.cells + 3
    by_hand = min(per_block[i] - per_block[i - 1] for i in range(1, len(per_block)))
    assert get("az_progressivity")(ctx) == pytest.approx(by_hand, abs=1e-12)
    assert get("az_expressivity")(ctx) == pytest.approx(sum(per_block), abs=1e-12)


def test_complexity_is_count_flops():
    model = NB201Network(random_conv_arch(), SHAPE)
    ctx = ProxyContext(model, SHAPE.input_shape, batch=2)
    assert get("az_complexity")(ctx) == count_flops(model, SHAPE.input_shape)


def test_scoring_leaves_the_callers_model_untouched():
    model = NB201Network(random_conv_arch(), SHAPE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    score_network(model, SHAPE.input_shape, AZ_PROXIES, batch=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_seed_same_values_different_seed_different_values():
    model = NB201Network(random_conv_arch(), SHAPE)
    a, secs = score_network(model, SHAPE.input_shape, AZ_PROXIES, batch=16, seed=3)
    b, _ = score_network(model, SHAPE.input_shape, AZ_PROXIES, batch=16, seed=3)
    c, _ = score_network(model, SHAPE.input_shape, AZ_PROXIES, batch=16, seed=4)
    assert a == b
    assert set(secs) == set(AZ_PROXIES) and all(s >= 0 for s in secs.values())
    assert all(np.isfinite(v) for v in a.values())
    for name in ("az_expressivity", "az_progressivity", "az_trainability"):
        assert a[name] != c[name], name
    assert a["az_complexity"] == c["az_complexity"]


def test_score_network_rejects_unknown_name_before_work():
    with pytest.raises(UserError, match="unknown proxy"):
        score_network(nn.Identity(), (3, 4, 4), ["az_expressivity", "bogus"])


# --------------------------------------------------------------------------- fast paths = plain formulas
def _plain_az(model: nn.Module, shape: NetShape, batch: int, seed: int) -> dict[str, float]:
    """The four AZ values as the code before the screen's speed-ups computed them (commit ff09f84): a deep
    copy, `count_flops`, permuted [n, C] float64 matrices, int8 Rademacher draws mapped to ±1."""
    from edgenas.proxies._util import channels_last_2d
    from edgenas.proxies.az_trainability import align_positions

    ctx = ProxyContext(model, shape.input_shape, batch=batch, seed=seed)
    feats = ctx.features
    per_block = []
    for f in feats:
        x = channels_last_2d(f.detach()).to(torch.float64)
        x = x - x.mean(dim=0, keepdim=True)
        eig = torch.linalg.eigvalsh(x.T @ x / x.shape[0])
        p = eig / eig.sum()
        per_block.append(float(-(p * torch.log(p + 1e-8)).sum()))
    gen = ctx.generator("az_trainability", "rademacher")
    t = [0.0] * (len(feats) - 1)
    for l in range(len(feats) - 1, 0, -1):  # noqa: E741
        out, inp = feats[l], feats[l - 1]
        v = torch.randint(0, 2, tuple(out.shape), generator=gen, dtype=torch.int8).to(torch.float32) * 2.0 - 1.0
        (u,) = torch.autograd.grad(out, inp, grad_outputs=v, allow_unused=True)
        u = torch.zeros_like(inp) if u is None else u
        if u.shape == v.shape and torch.equal(u, v):
            t[l - 1] = -math.inf
            continue
        mu = channels_last_2d(align_positions(u, v)).to(torch.float64)
        mv = channels_last_2d(v).to(torch.float64)
        sigma = float(torch.linalg.svdvals(mu.T @ mv / mu.shape[0]).max())
        t[l - 1] = block_score(sigma)

    def nan_inf(x: float) -> float:
        return -math.inf if math.isnan(x) else x

    diffs = [b - a for a, b in itertools.pairwise(per_block)]
    return {
        "az_expressivity": nan_inf(sum(per_block)),
        "az_progressivity": nan_inf(float("nan") if any(map(math.isnan, diffs)) else min(diffs)),
        "az_trainability": -math.inf if -math.inf in t else nan_inf(sum(t) / len(t)),
        "az_complexity": float(count_flops(model, shape.input_shape)),
    }


@pytest.mark.parametrize(
    ("space_name", "shape", "archs"),
    [
        (
            "nb201",
            NetShape(width=8, cells=1, in_channels=1, resolution=12, num_classes=10),
            [
                IDENTITY_CELL,  # trainability -inf
                "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # zero cells: NaN entropies -> -inf
                str(random_conv_arch()),
                "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|",
            ],
        ),
        ("darts", NetShape(width=4, cells=3, in_channels=1, resolution=8, num_classes=10), []),
    ],
)
def test_screen_scoring_equals_the_plain_formulas(space_name: str, shape: NetShape, archs: list[str]) -> None:
    """`score_arch` (no copy, FLOPs from position costs, [B, C, HW] float64 Grams, float32 Rademacher draws)
    gives the values of the plain formulation on the same features, to float64 rounding."""
    from edgenas.proxies.pool import score_arch
    from edgenas.spaces import get_space

    space = get_space(space_name)
    archs = archs or [str(a) for a in space.sample_distinct(2, np.random.default_rng(5))]
    for arch in archs:
        fast, _ = score_arch(space, arch, shape, list(AZ_PROXIES), batch=6, seed=2)
        plain = _plain_az(space.build(space.parse(arch), shape), shape, batch=6, seed=2)
        for name in AZ_PROXIES:
            assert fast[name] == pytest.approx(plain[name], rel=1e-9, abs=1e-12), (arch, name)
