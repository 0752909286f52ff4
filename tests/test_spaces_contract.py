"""The space contract, checked for every registered space: string round trip, errors naming the
bad token, build, block features, the supernet at one-hot weights (same output and cost as the
built network), expected-cost terms, and the cheapest network as a floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.core.device import Budgets
from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.memory import peak_activation_bytes
from edgenas.cost.params import count_params
from edgenas.spaces import SPACES, get_space

SHAPE = NetShape(width=8, cells=1, in_channels=1, resolution=12, num_classes=10)
# Archs whose every decision is live, where the additive cost terms are exact (elsewhere an upper bound).
FULLY_LIVE = {
    "nb201": lambda arch: "none" not in arch.ops,
    "darts": lambda arch: True,  # every op of a genotype feeds the cell's output
    "mobile": lambda arch: True,  # every block is built; a skipped optional block costs 0
}


@pytest.fixture(params=SPACES.names())
def space(request):
    return get_space(request.param)


def test_every_space_says_which_archs_are_fully_live(space) -> None:
    assert space.name in FULLY_LIVE, f"add the {space.name} space to FULLY_LIVE in this test"


def test_parse_format_round_trip_and_distinct_samples(space) -> None:
    archs = space.sample_distinct(30, np.random.default_rng(0))
    assert len(archs) == 30
    for arch in archs:
        assert space.parse(str(arch)) == arch and str(space.parse(str(arch))) == str(arch)
        assert space.mutate(arch, np.random.default_rng(1)) != arch


def _first_op(space, text: str) -> str:
    """The op name that comes first in an arch string (the longest name where several start)."""
    ops = [op for op in space.choice_ops if op != space.none_op and op in text]
    return min(ops, key=lambda op: (text.index(op), -len(op)))


def test_a_bad_token_is_named(space) -> None:
    text = str(space.sample(np.random.default_rng(0)))
    token = "no_such_op_xyz"
    bad = text.replace(_first_op(space, text), token, 1)
    assert bad != text and space.choice_ops
    with pytest.raises(ArchError, match=token) as err:
        space.parse(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ArchError):
        space.parse("")


def test_build_gives_logits_and_block_features(space) -> None:
    net = space.build(space.sample(np.random.default_rng(2)), SHAPE).eval()
    x = torch.randn(2, *SHAPE.input_shape)
    logits, feats = net.forward_features(x)
    assert logits.shape == (2, SHAPE.num_classes) and len(feats) >= 2
    assert torch.equal(logits, net(x))


@pytest.mark.parametrize("seed", range(6))
def test_supernet_at_one_hot_weights_is_the_built_network(space, seed: int) -> None:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arch = space.sample(rng)
    supernet = space.supernet(SHAPE).eval()
    for m in supernet.modules():  # non-trivial BN statistics, so a mixed-up copy would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sub = space.subnet(supernet, arch).eval()
    built = space.build(arch, SHAPE)
    x = torch.randn(3, *SHAPE.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), supernet(x, space.onehot(arch)), rtol=1e-5, atol=1e-5)
    assert count_params(sub) == count_params(built)
    assert count_flops(sub, SHAPE.input_shape) == count_flops(built, SHAPE.input_shape)


def test_expected_cost_at_one_hot_weights_is_the_exact_cost(space) -> None:
    terms = space.cost_terms(Budgets(max_params=1, max_flops=1), SHAPE)
    live = FULLY_LIVE[space.name]
    checked = 0
    for arch in space.sample_distinct(40, np.random.default_rng(3)):
        net = space.build(arch, SHAPE)
        exact = {"max_params": count_params(net), "max_flops": count_flops(net, SHAPE.input_shape)}
        for name, value in exact.items():
            expected = float(terms[name].expected(space.onehot(arch)))
            if live(arch):
                assert expected == pytest.approx(value, rel=1e-9)
            else:
                assert expected >= value - 1e-6  # dead decisions are not built: the terms bound from above
        checked += live(arch)
    assert checked >= 3


def test_the_cheapest_network_is_a_floor(space) -> None:
    cheap = space.build(space.cheapest(), SHAPE)
    floor = (
        count_params(cheap),
        count_flops(cheap, SHAPE.input_shape),
        peak_activation_bytes(cheap, SHAPE.input_shape),
    )
    for arch in space.sample_distinct(60, np.random.default_rng(4)):
        net = space.build(arch, SHAPE)
        assert count_params(net) >= floor[0]
        assert count_flops(net, SHAPE.input_shape) >= floor[1]
        assert peak_activation_bytes(net, SHAPE.input_shape) >= floor[2]


def test_supernet_description_encodes_every_arch(space) -> None:
    points = space.choice_points()
    assert len(points) == len({p.name for p in points}) and space.choice_ops
    for arch in space.sample_distinct(20, np.random.default_rng(5)):
        index = space.encode(arch)
        assert index.shape == (len(points),) and space.decode(index) == arch
        assert space.onehot(arch).shape == (len(points), len(space.choice_ops))
        assert space.top_weighted(space.onehot(arch).numpy()) == arch  # the paper derivation of a one-hot


def test_position_costs_are_the_exact_cost_of_the_live_points(space) -> None:
    costs = {kind: space.position_costs(kind, SHAPE) for kind in ("params", "flops")}
    for arch in space.sample_distinct(25, np.random.default_rng(6)):
        net = space.build(arch, SHAPE)
        index, live = space.encode(arch), space.live_points(arch)
        exact = {"params": count_params(net), "flops": count_flops(net, SHAPE.input_shape)}
        for kind, (fixed, weights) in costs.items():
            model = fixed + weights[np.arange(len(index)), index][live].sum()
            assert model == pytest.approx(exact[kind], rel=1e-9), (kind, str(arch))
