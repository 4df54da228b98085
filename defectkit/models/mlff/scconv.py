"""SCNet's self-calibrated convolution (Liu et al., CVPR 2020), as docs/methods/mlff.md reconstructs it.

Stage 3 of a truncated backbone has a small receptive field; self-calibration widens it
without changing the grid: a down-sampled view of the input (average pool by ``r``) is
convolved, brought back up and added to the input, and its sigmoid gates a full-scale
convolution of the input, so every position is weighted by context from an r-times
larger neighbourhood. A final Conv-BN mixes the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.resize import resize_bilinear


def conv_bn(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout))


class SelfCalibratedConv(nn.Module):
    """``out = ReLU(BN(K4(BN(K3 x) * sigmoid(x + up(BN(K2 avgpool_r(x)))))))`` (SCNet eq. 1-4)."""

    def __init__(self, channels: int, pooling: int = 4):
        super().__init__()
        self.pooling = pooling
        self.k2 = conv_bn(channels, channels)  # small-scale context
        self.k3 = conv_bn(channels, channels)  # full-scale transform
        self.k4 = conv_bn(channels, channels)  # output

    def calibration(self, x: torch.Tensor) -> torch.Tensor:
        """The sigmoid gate in (0, 1), same shape as ``x``."""
        r = max(1, min(self.pooling, x.shape[-2], x.shape[-1]))
        context = self.k2(F.avg_pool2d(x, r, r, ceil_mode=True))
        context = resize_bilinear(context, x.shape[-2:])
        return torch.sigmoid(x + context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.k4(self.k3(x) * self.calibration(x)))
