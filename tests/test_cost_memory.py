"""Peak activation memory: exact byte counts for networks whose tensor lifetimes are known.

Every expected value is worked out by hand from Python's reference semantics: a tensor
lives while a variable (or a caller) refers to it, and a storage is freed with its last
tensor. The input is held by the caller throughout; parameters and buffers never count.
"""

from __future__ import annotations

import torch
from torch import nn

from edgenas.cost import peak_activation_bytes

F32 = 4


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


def test_sequential_frees_consumed_outputs_exact() -> None:
    net = nn.Sequential(_conv(3, 8), nn.ReLU(), _conv(8, 8))
    # input 3*32*32*4 + conv1 out 8*32*32*4 + relu out; conv1 out is freed once ReLU consumed it
    assert peak_activation_bytes(net, (3, 32, 32)) == 12288 + 32768 + 32768 == 77824


def test_depth_does_not_accumulate() -> None:
    one = 4 * 8 * 8 * F32
    deep = nn.Sequential(*[_conv(4, 4) for _ in range(10)])
    # input + the layer's input + its output, whatever the depth
    assert peak_activation_bytes(deep, (4, 8, 8)) == 3 * one
    assert peak_activation_bytes(deep, (4, 8, 8), batch=3) == 3 * 3 * one


class _Residual(nn.Module):
    """s = stem(x); h = relu(conv1(s)); h = conv2(h); return s + h: s must stay alive to the end."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv1, self.conv2 = _conv(3, 8), _conv(8, 8), _conv(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        h = torch.relu(self.conv1(s))
        h = self.conv2(h)
        return s + h


def test_residual_keeps_skip_tensor_alive() -> None:
    x_bytes, a = 3 * 8 * 8 * F32, 8 * 8 * 8 * F32
    # relu: x, s, conv1 out, relu out = x + 3a (conv1 out then dies); conv2: x, s, relu out, conv2 out;
    # add: x, s, conv2 out, sum. The skip s is alive throughout, so the peak is x + 3a.
    assert peak_activation_bytes(_Residual(), (3, 8, 8)) == x_bytes + 3 * a
    # the same layers as a chain: each output dies once consumed, so only x + 2a
    chain = nn.Sequential(_conv(3, 8), _conv(8, 8), nn.ReLU(), _conv(8, 8))
    assert peak_activation_bytes(chain, (3, 8, 8)) == x_bytes + 2 * a


class _Branches(nn.Module):
    """Two branches read the same tensor and are concatenated."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.a, self.b = _conv(3, 4), _conv(4, 4), _conv(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return torch.cat([self.a(s), self.b(s)], dim=1)


def test_branches_alive_until_concatenated() -> None:
    x_bytes, a = 3 * 8 * 8 * F32, 4 * 8 * 8 * F32
    # at cat: x, s, branch a, branch b and the 2a-sized result
    assert peak_activation_bytes(_Branches(), (3, 8, 8)) == x_bytes + 5 * a


class _ViewOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = _conv(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1).unsqueeze(0)  # views share the conv output's storage


def test_views_and_inplace_ops_share_storage() -> None:
    x_bytes, a = 3 * 8 * 8 * F32, 4 * 8 * 8 * F32
    assert peak_activation_bytes(_ViewOut(), (3, 8, 8)) == x_bytes + a
    inplace = nn.Sequential(_conv(3, 4), nn.ReLU(inplace=True))
    assert peak_activation_bytes(inplace, (3, 8, 8)) == x_bytes + a
    copying = nn.Sequential(_conv(3, 4), nn.ReLU())
    assert peak_activation_bytes(copying, (3, 8, 8)) == x_bytes + 2 * a


def test_parameters_and_buffers_are_not_activations() -> None:
    # Linear's weight.t() is a view of a parameter: ignored. Only input and output count.
    assert peak_activation_bytes(nn.Linear(64, 10), (64,)) == 64 * F32 + 10 * F32
    bn = nn.BatchNorm2d(3)  # eval BN reads its running stats (buffers) and writes one output
    assert peak_activation_bytes(bn, (3, 8, 8)) == 2 * 3 * 8 * 8 * F32


def test_runs_in_eval_and_restores_training_mode() -> None:
    net = nn.Sequential(_conv(3, 4), nn.Dropout(0.5), nn.BatchNorm2d(4)).train()
    x_bytes, a = 3 * 8 * 8 * F32, 4 * 8 * 8 * F32
    # eval: dropout is the identity (no mask, no copy); BN writes one output
    assert peak_activation_bytes(net, (3, 8, 8)) == x_bytes + 2 * a
    assert net.training and all(m.training for m in net)
