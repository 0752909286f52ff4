"""Costs of NB201 networks: FLOPs of the conv edges match the hand-computed formula."""

from __future__ import annotations

from edgenas.core.space import NetShape
from edgenas.cost import measure_cost
from edgenas.spaces.nb201 import NB201Arch, NB201Space


def test_nb201_costs_monotone_in_ops() -> None:
    space, shape = NB201Space(), NetShape(width=8, cells=1, in_channels=1, resolution=16)
    full = measure_cost(space.build(NB201Arch(("nor_conv_3x3",) * 6), shape), shape.input_shape)
    light = measure_cost(space.build(NB201Arch(("nor_conv_1x1",) * 6), shape), shape.input_shape)
    skip = measure_cost(space.build(NB201Arch(("skip_connect",) * 6), shape), shape.input_shape)
    assert full.flops > light.flops > skip.flops > 0
    assert full.params > light.params > skip.params
    # each 3x3 conv edge at stage 1 is 2*8*8*9*16*16 FLOPs more than a skip edge, 6 edges, 1 cell
    stage1_extra = 6 * 2 * 8 * 8 * 9 * 16 * 16
    stage2_extra = 6 * 2 * 16 * 16 * 9 * 8 * 8
    stage3_extra = 6 * 2 * 32 * 32 * 9 * 4 * 4
    assert full.flops - skip.flops == stage1_extra + stage2_extra + stage3_extra
