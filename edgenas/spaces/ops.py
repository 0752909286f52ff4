"""Building blocks shared by the spaces' networks and supernets."""

from __future__ import annotations

from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv -> BN, the conv op of NAS-Bench-201."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )
