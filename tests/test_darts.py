"""The DARTS cell space: published genotypes, one-line errors, exact costs counted by hand and against
the papers, the supernet at one-hot weights over normal and reduction cells, the training extras."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.cost.flops import count_flops
from edgenas.cost.params import count_params
from edgenas.spaces import get_space
from edgenas.spaces.darts import DARTS_V2, EDGES, EXAMPLE, OPS, DartsArch

SPACE = get_space("darts")

# As published in the DARTS repository (quark0/darts, cnn/genotypes.py) and PC-DARTS's
# (yuhuixu1993/PC-DARTS, genotypes.py), `range(2, 6)` concats included.
DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
PC_DARTS_CIFAR = """PC_DARTS_cifar = Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0),
    ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)],
    normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1),
    ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)],
    reduce_concat=range(2, 6))"""
PC_DARTS_IMAGE = (
    "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), "
    "reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), "
    "('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 1), ('max_pool_3x3', 3)], reduce_concat=range(2, 6))"
)
PUBLISHED = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "PC_DARTS_cifar": PC_DARTS_CIFAR,
    "PC_DARTS_image": PC_DARTS_IMAGE,
}
CIFAR = NetShape(width=36, cells=20, in_channels=3, resolution=32, num_classes=10)  # DARTS' evaluation network


# --------------------------------------------------------------------------- strings
@pytest.mark.parametrize("name", PUBLISHED)
def test_published_genotypes_round_trip(name: str) -> None:
    arch = SPACE.parse(PUBLISHED[name])
    text = str(arch)
    assert SPACE.parse(text) == arch and str(SPACE.parse(text)) == text
    assert text.startswith("Genotype(normal=[(") and text.endswith("reduce_concat=[2, 3, 4, 5])")
    # every node's pairs as published, only ordered by input
    pairs = [p for kind in ("normal", "reduce") for p in arch.cell(kind)]
    assert len(pairs) == 16 and all(op in OPS[1:] for op, _ in pairs)


def test_the_canonical_form_orders_each_node_by_input_and_ignores_layout() -> None:
    arch = SPACE.parse(DARTS_V2)
    assert str(arch) == EXAMPLE
    assert arch.normal[4:6] == (("skip_connect", 0), ("sep_conv_3x3", 1))  # published as (sep, 1), (skip, 0)
    black = EXAMPLE.replace("'", '"').replace("(", "(\n    ").replace("],", ",\n],")  # black-style, trailing commas
    assert SPACE.parse(black) == arch
    assert SPACE.parse("DARTS_V2 = " + DARTS_V2) == arch
    positional = "Genotype(" + EXAMPLE[len("Genotype(normal=") :].replace("normal_concat=", "")
    positional = positional.replace("reduce=", "").replace("reduce_concat=", "")
    assert SPACE.parse(positional) == arch


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (DARTS_V2.replace("'dil_conv_3x3', 2", "'conv_7x1', 2"), "unknown op 'conv_7x1'"),
        (
            DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
            "input 5 in ('dil_conv_3x3', 5) is out of range",
        ),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', -1)"), "out of range 0..4"),
        (DARTS_V2.replace(", ('dil_conv_3x3', 2)]", "]"), "found 7"),
        (
            DARTS_V2.replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('skip_connect', 0), ('dil_conv_3x3', 0)"),
            "read the same input 0",
        ),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)"), "'none' is not an op of a genotype"),
        (DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[4, 5]"), "reduce_concat: [4, 5]: this space"),
        (DARTS_V2.replace("Genotype(", "Genotype(foo=1, "), "unknown field 'foo'"),
        (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field 'reduce_concat'"),
        (DARTS_V2.replace("('sep_conv_3x3', 0)", "'sep_conv_3x3'", 1), "'sep_conv_3x3' is not an ('op', input) pair"),
        (DARTS_V2[:-1], "cannot read it"),
        ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "a DARTS genotype reads Genotype("),
        ("__import__('os').system('true')", "a DARTS genotype reads Genotype("),
    ],
)
def test_bad_genotypes_are_one_line_errors_naming_the_token(text: str, needle: str) -> None:
    with pytest.raises(ArchError) as err:
        SPACE.parse(text)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_constructor_checks_like_the_parser() -> None:
    with pytest.raises(ArchError, match="reduce node 5: unknown op 'bad'"):
        DartsArch((("skip_connect", 0), ("skip_connect", 1)) * 4, (*SPACE.cheapest().reduce[:7], ("bad", 0)))
    with pytest.raises(ArchError, match=r"normal node 3: .* read the same input 1"):
        normal = (("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 1), ("max_pool_3x3", 1))
        DartsArch((*normal, *SPACE.cheapest().normal[4:]), SPACE.cheapest().reduce)


# --------------------------------------------------------------------------- costs
def test_published_networks_have_the_published_size() -> None:
    """DARTS-V2 at C=36, 20 cells: DARTS' training log reports "param size = 3.349342MB" (the paper's 3.3M,
    auxiliary head excluded); PC-DARTS reports 3.6M for its CIFAR cell."""
    assert count_params(SPACE.build(SPACE.parse(DARTS_V2), CIFAR)) == 3_349_342
    assert round(count_params(SPACE.build(SPACE.parse(PC_DARTS_CIFAR), CIFAR)) / 1e6, 1) == 3.6


def test_hand_counted_params_and_flops_of_a_small_network() -> None:
    """Every op sep_conv_3x3, every node reading inputs 0 and 1; C=2, 3 cells (normal, reduce, reduce), 1x8x8 in.

    params (weights + BN γ, β)
      stem conv 1->6 3x3: 54, BN(6): 12                                                  =    66
      cell 0 normal C=2:  pre0 = pre1 = conv 6->2 (12) + BN (4) = 16 each; sep_conv_3x3(2) = 2 x
                          (dw 18 + pw 4 + BN 4) = 52, x 8 ops                           =   448
      cell 1 reduce C=4:  pre0 conv 6->4 + BN = 32, pre1 conv 8->4 + BN = 40; sep(4) = 2 x (36 + 16 + 8)
                          = 120, x 8                                                     =  1032
      cell 2 reduce C=8:  pre0 factorized reduce 8->8 = 2 x 32 + BN 16 = 80, pre1 conv 16->8 + BN = 144;
                          sep(8) = 2 x (72 + 64 + 16) = 304, x 8                         =  2656
      classifier 32->10: 320 + 10                                                         =   330
                                                                                  total   =  4532
    FLOPs (2 per multiply-add of convs and the linear layer; BN, ReLU, pools and sums not counted)
      stem at 8x8: 6*9*64 = 3456 MAC
      cell 0 at 8x8: pre 2 x 12*64 = 1536; sep 2 x (2*9*64 + 4*64) = 2816, x 8 = 22528    -> 24064 MAC
      cell 1 8x8 -> 4x4: pre 24*64 + 32*64 = 3584; sep at stride 2 = 4*9*16 + 16*16 + 4*9*16 + 16*16 = 1664,
                         x 8 = 13312                                                      -> 16896 MAC
      cell 2 4x4 -> 2x2: pre0 factorized reduce of the 8x8 cell-0 output 2 x 32*16 = 1024, pre1 128*16 = 2048;
                         sep = 8*9*4 + 64*4 + 8*9*4 + 64*4 = 1088, x 8 = 8704             -> 11776 MAC
      classifier 320 MAC;  total 56512 MAC = 113024 FLOPs
    """
    shape = NetShape(width=2, cells=3, in_channels=1, resolution=8, num_classes=10)
    cell = (("sep_conv_3x3", 0), ("sep_conv_3x3", 1)) * 4
    arch = DartsArch(cell, cell)
    net = SPACE.build(arch, shape)
    assert [c.reduction for c in net.cells] == [False, True, True]
    assert count_params(net) == 4532
    assert count_flops(net, shape.input_shape) == 113024
    for kind, exact in (("params", 4532), ("flops", 113024)):
        fixed, weights = SPACE.position_costs(kind, shape)
        index = SPACE.encode(arch)
        assert fixed + weights[np.arange(len(index)), index].sum() == exact


@pytest.mark.parametrize(
    "shape",
    [NetShape(4, 3, 1, 12, 10), NetShape(4, 5, 3, 9, 7), NetShape(6, 2, 1, 7, 10), NetShape(4, 8, 3, 32, 10)],
    ids=str,
)
def test_position_costs_are_exact_over_normal_and_reduction_cells_and_odd_sides(shape: NetShape) -> None:
    costs = {kind: SPACE.position_costs(kind, shape) for kind in ("params", "flops")}
    for arch in SPACE.sample_distinct(6, np.random.default_rng(7)):
        net = SPACE.build(arch, shape)
        index = SPACE.encode(arch)
        exact = {"params": count_params(net), "flops": count_flops(net, shape.input_shape)}
        for kind, (fixed, weights) in costs.items():
            assert fixed + weights[np.arange(len(index)), index].sum() == exact[kind], (kind, str(arch))


def test_every_resolution_and_channel_count_builds() -> None:
    for channels, side in ((1, 28), (3, 32), (3, 9), (1, 4)):
        shape = NetShape(4, 3, channels, side, 10)
        logits, feats = SPACE.build(SPACE.sample(np.random.default_rng(side)), shape).forward_features(
            torch.randn(2, channels, side, side)
        )
        assert logits.shape == (2, 10) and len(feats) == 4
        half = -(-side // 2)
        assert feats[-1].shape[-1] == -(-half // 2)  # two reductions: ⌈⌈side/2⌉/2⌉
    with pytest.raises(ArchError, match="too small"):
        SPACE.build(SPACE.cheapest(), NetShape(4, 3, 1, 3, 10))


# --------------------------------------------------------------------------- supernet
@pytest.mark.parametrize("shape", [NetShape(4, 3, 1, 12, 10), NetShape(4, 4, 3, 7, 5)], ids=str)
def test_supernet_at_one_hot_weights_is_the_subnet_over_both_cell_types(shape: NetShape) -> None:
    torch.manual_seed(0)
    supernet = SPACE.supernet(shape).eval()
    for m in supernet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, *shape.input_shape)
    for arch in SPACE.sample_distinct(3, np.random.default_rng(1)):
        sub = SPACE.subnet(supernet, arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(sub(x), supernet(x, SPACE.onehot(arch)), rtol=1e-5, atol=1e-5)
        assert count_params(sub) == count_params(SPACE.build(arch, shape))


def test_partial_channel_supernet_runs_and_dead_ops_are_skipped() -> None:
    shape = NetShape(8, 3, 1, 12, 10)
    supernet = SPACE.supernet(shape, k=4)
    w = torch.softmax(torch.randn(len(SPACE.choice_points()), len(OPS), requires_grad=True), dim=1)
    logits, feats = supernet.forward_features(torch.randn(2, 1, 12, 12), w)
    assert logits.shape == (2, 10) and [f.shape[1] for f in feats] == [24, 32, 64, 128]
    logits.sum().backward()
    supernet.alive.zero_()  # every op deleted: every node is zero, the network still runs
    assert supernet(torch.randn(2, 1, 12, 12), w.detach()).shape == (2, 10)
    with pytest.raises(Exception, match="not divisible"):
        SPACE.supernet(NetShape(6, 3, 1, 12, 10), k=4)


def test_choice_points_and_the_top_two_derivation() -> None:
    points = SPACE.choice_points()
    assert len(points) == 28 and points[0].name == "normal 2<-0" and points[-1].name == "reduce 5<-4"
    assert len({p.node for p in points}) == 8 and len(EDGES) == 14
    w = np.zeros((28, len(OPS)))
    w[:, OPS.index("none")] = 5.0  # `none` never wins a slot
    for p, point in enumerate(points):  # the weight of `i<-j` is j: each node keeps its two latest inputs
        w[p, OPS.index("sep_conv_5x5")] = float(point.name.split("<-")[1])
    arch = SPACE.top_weighted(w)
    node5 = arch.normal[6:]
    assert node5 == (("sep_conv_5x5", 3), ("sep_conv_5x5", 4))
    with pytest.raises(ArchError, match="non-none inputs"):
        SPACE.decode(np.zeros(28, dtype=int))


def test_size_sampling_and_mutation() -> None:
    assert SPACE.size() == (1 * 3 * 6 * 10 * 7**8) ** 2
    first = next(iter(SPACE.enumerate()))
    assert isinstance(first, DartsArch)
    rng = np.random.default_rng(3)
    for arch in SPACE.sample_distinct(50, rng):
        child = SPACE.mutate(arch, rng)
        changed = SPACE.encode(child) != SPACE.encode(arch)
        assert child != arch and 1 <= changed.sum() <= 2  # one op, or one input (old point off, new one on)
        assert changed[:14].any() != changed[14:].any()  # in one cell


@pytest.mark.slow  # ~35 s; the contract test checks the floor at a small shape
def test_cheapest_is_a_floor_on_deeper_networks() -> None:
    from edgenas.cost.measure import measure_cost

    shape = NetShape(4, 5, 1, 12, 10)
    floor = measure_cost(SPACE.build(SPACE.cheapest(), shape), shape.input_shape, latency=None)
    for arch in SPACE.sample_distinct(15, np.random.default_rng(9)):
        c = measure_cost(SPACE.build(arch, shape), shape.input_shape, latency=None)
        assert c.params >= floor.params and c.flops >= floor.flops and c.peak_memory_bytes >= floor.peak_memory_bytes


def test_cost_terms_refuse_a_latency_budget_without_a_table_in_one_line() -> None:
    from edgenas.core.device import Budgets
    from edgenas.core.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a latency lookup table"):
        SPACE.cost_terms(Budgets(max_latency_ms=1.0), NetShape(4, 3, 1, 12, 10))


@pytest.mark.slow  # ~35 s: measures the peak of a few hundred networks
def test_the_peak_memory_fit_has_more_samples_than_coefficients() -> None:
    from edgenas.core.device import Budgets

    terms = SPACE.cost_terms(Budgets(max_peak_memory_bytes=1), NetShape(4, 3, 1, 12, 10))
    assert terms["max_peak_memory_bytes"].fit["samples"] > 14  # more samples than coefficients


# --------------------------------------------------------------------------- training extras
def test_auxiliary_head_and_drop_path_are_training_only() -> None:
    shape = NetShape(4, 3, 1, 12, 10)
    torch.manual_seed(0)
    net = SPACE.build(SPACE.parse(DARTS_V2), shape)
    deployed = count_params(net)
    net.enable_training_extras(auxiliary=True, drop_path_prob=0.5)
    x = torch.randn(4, 1, 12, 12)
    net.train()
    net(x)
    assert net.aux_logits is not None and net.aux_logits.shape == (4, 10)
    a, b = net(x), net(x)
    assert not torch.equal(a, b)  # drop-path draws new masks
    net.eval()
    net.aux_logits = None
    assert torch.equal(net(x), net(x)) and net.aux_logits is None
    net.drop_auxiliary()
    assert count_params(net) == deployed and set(net.state_dict()) == set(SPACE.build(net.arch, shape).state_dict())
