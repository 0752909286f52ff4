"""NAS-Bench-201 space: string round trip on all 15,625 cells, validation, sampling, networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgenas.core.errors import ArchError
from edgenas.core.space import NetShape
from edgenas.spaces import get_space
from edgenas.spaces.nb201 import EDGES, OPS, NB201Arch, NB201Space

GOOD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_round_trip_all_cells() -> None:
    space = NB201Space()
    seen = set()
    for i, arch in enumerate(space.enumerate()):
        text = str(arch)
        assert NB201Arch.parse(text) == arch
        assert arch.index == i
        assert NB201Arch.from_index(i) == arch
        seen.add(text)
    assert len(seen) == space.size() == 15625


def test_parse_known_string() -> None:
    arch = NB201Arch.parse(GOOD)
    assert arch.ops == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")
    assert str(arch) == GOOD
    assert NB201Arch.parse("  " + GOOD + "\n") == arch


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        (GOOD.replace("avg_pool_3x3", "max_pool_3x3"), "'max_pool_3x3'"),
        (GOOD.replace("skip_connect~2", "skip_connect~1"), "'skip_connect~1'"),
        (GOOD.replace("|+|skip", "|+|none~0|skip"), "node 3 needs 3"),
        (GOOD.replace("+", "", 1), "found 2"),
        (GOOD.replace("nor_conv_3x3~0|+", "nor_conv_3x3-0|+", 1), "'nor_conv_3x3-0'"),
        (GOOD[1:], "must start and end"),
    ],
)
def test_parse_errors_name_the_bad_token(text: str, needle: str) -> None:
    with pytest.raises(ArchError) as info:
        NB201Arch.parse(text)
    assert needle in str(info.value)


def test_sample_and_mutate_are_seeded() -> None:
    space = NB201Space()
    a = [str(space.sample(np.random.default_rng(7))) for _ in range(3)]
    assert len(set(a)) == 1
    rng = np.random.default_rng(1)
    arch = space.sample(rng)
    for _ in range(50):
        child = space.mutate(arch, rng)
        assert sum(x != y for x, y in zip(arch.ops, child.ops, strict=True)) == 1
        arch = child


def test_live_edges() -> None:
    dead = NB201Arch.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|")
    assert not dead.is_connected and dead.live_edges() == []
    skip_only = NB201Arch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert skip_only.live_edges() == [3]
    full = NB201Arch(("nor_conv_3x3",) * len(EDGES))
    assert full.live_edges() == list(range(len(EDGES)))


@pytest.mark.parametrize(("channels", "resolution", "classes"), [(1, 28, 10), (3, 32, 100), (1, 8, 10), (3, 17, 5)])
def test_network_shapes(channels: int, resolution: int, classes: int) -> None:
    space = get_space("nb201")
    shape = NetShape(width=8, cells=2, in_channels=channels, resolution=resolution, num_classes=classes)
    net = space.build(space.parse(GOOD), shape)
    logits, feats = net.forward_features(torch.randn(2, channels, resolution, resolution))
    assert logits.shape == (2, classes)
    assert len(feats) == 1 + 3 * shape.cells + 2
    assert [f.shape[1] for f in feats] == [8] + [8] * 2 + [16] * 3 + [32] * 3
    assert torch.allclose(net(torch.randn(1, channels, resolution, resolution)).sum() * 0, torch.zeros(()))


def test_zero_cell_outputs_zeros_and_skip_cell_is_identity() -> None:
    shape = NetShape(width=4, cells=1, in_channels=1, resolution=8)
    dead = NB201Space().build(NB201Arch(("none",) * 6), shape).eval()
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(dead.blocks[0](x), torch.zeros_like(x))
    skip = NB201Space().build(NB201Arch.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"), shape)
    assert torch.equal(skip.blocks[0](x), x)


def test_ops_table() -> None:
    assert len(OPS) == 5 and len(EDGES) == 6


def test_sample_distinct() -> None:
    space = NB201Space()
    archs = space.sample_distinct(200, np.random.default_rng(0))
    assert len(archs) == len({str(a) for a in archs}) == 200
    assert [str(a) for a in archs] == [str(a) for a in space.sample_distinct(200, np.random.default_rng(0))]
    connected = space.sample_distinct(50, np.random.default_rng(0), accept=lambda a: a.is_connected)
    assert len(connected) == 50 and all(a.is_connected for a in connected)
    assert space.sample_distinct(5, np.random.default_rng(0), accept=lambda a: False) == []
