"""Parameter and FLOP counts against hand-computed values (conventions of edgenas.core.cost)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgenas.core.errors import ConfigError
from edgenas.cost import FLOPS_CONVENTION, count_flops, count_params


def test_params_of_known_layers() -> None:
    assert count_params(nn.Conv2d(3, 8, 3)) == 3 * 8 * 3 * 3 + 8
    assert count_params(nn.Conv2d(3, 8, 3, bias=False)) == 3 * 8 * 3 * 3
    assert count_params(nn.Linear(10, 4)) == 10 * 4 + 4
    # BatchNorm: weight and bias only; running_mean/var and num_batches_tracked are buffers
    assert count_params(nn.BatchNorm2d(8)) == 2 * 8
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(10, 4))
    assert count_params(net) == 224 + 16 + 44


def test_params_shared_once_frozen_included_buffers_excluded() -> None:
    shared = nn.Linear(5, 5)
    assert count_params(nn.Sequential(shared, nn.ReLU(), shared)) == 30
    frozen = nn.Linear(5, 5).requires_grad_(False)
    assert count_params(frozen) == 30
    with_buffer = nn.Linear(2, 2)
    with_buffer.register_buffer("table", torch.zeros(1000))
    assert count_params(with_buffer) == 6


def test_flops_of_conv_is_two_macs_bias_not_counted() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    macs = (3 * 3 * 3) * 8 * 32 * 32  # (k*k*c_in) per output element, c_out*H*W outputs
    assert count_flops(conv, (3, 32, 32)) == 2 * macs
    strided = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    assert count_flops(strided, (4, 16, 16)) == 2 * (3 * 3 * 4) * 6 * 8 * 8


def test_flops_of_linear_and_batch_scaling() -> None:
    assert count_flops(nn.Linear(16, 10), (16,)) == 2 * 16 * 10
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (3, 8, 8), batch=4) == 4 * count_flops(conv, (3, 8, 8))


def test_bn_relu_pool_add_zero_flops() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    net = nn.Sequential(conv, nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(0.5))
    assert count_flops(net, (3, 16, 16)) == count_flops(conv, (3, 16, 16)) == 2 * 27 * 8 * 16 * 16
    assert count_flops(nn.Sequential(nn.BatchNorm2d(3), nn.ReLU()), (3, 16, 16)) == 0
    assert "multiply-add = 2 FLOPs" in FLOPS_CONVENTION


class _ModeSpy(nn.Module):
    """Records whether forward ran in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.seen: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(self.training)
        return self.bn(self.conv(x))


def test_flops_run_in_eval_and_restore_each_modules_mode() -> None:
    spy = _ModeSpy().train()
    spy.bn.eval()  # a mixed setup (frozen BN) must come back exactly as it was
    stats_before = spy.bn.running_mean.clone()
    assert count_flops(spy, (1, 4, 4)) == 2 * 1 * 2 * 4 * 4
    assert spy.seen == [False]
    assert spy.training and spy.conv.training and not spy.bn.training
    assert torch.equal(spy.bn.running_mean, stats_before)
    assert not spy.conv.weight.requires_grad or spy.conv.weight.grad is None


@pytest.mark.parametrize("shape", [(), (3, 0, 4), (3, 8.0, 8), "3x32x32"])
def test_bad_input_shape_is_a_config_error(shape: object) -> None:
    with pytest.raises(ConfigError, match="input shape"):
        count_flops(nn.Conv2d(3, 4, 1), shape)  # type: ignore[arg-type]
