"""PRN's multi-scale fusion block MF (paper sec. 3.2, eq. 2): out_j = sum_r f_rj(in_r).

f_jj is the identity; r < j (finer input) is a depthwise-separable conv with stride
2^(j-r), kernel 2^(j-r)+1 and padding 2^(j-r-1); r > j (coarser input) is a bilinear
upsample followed by a 1x1 conv. Scales are indexed from the finest (0) with strides
doubling, as in the paper (64, 32, 16 at 256 px).
"""

from __future__ import annotations

from typing import List, Sequence

import torch
from torch import nn

from ...utils.resize import resize_bilinear


class DownFuse(nn.Module):
    """f_rj for r < j: depthwise conv (stride 2^d, kernel 2^d + 1, padding 2^(d-1)) then 1x1 to c_j."""

    def __init__(self, c_in: int, c_out: int, steps: int):
        super().__init__()
        s = 2**steps
        self.depthwise = nn.Conv2d(c_in, c_in, s + 1, stride=s, padding=s // 2, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pointwise(self.depthwise(x)))


class UpFuse(nn.Module):
    """f_rj for r > j: bilinear upsample to the target grid, then 1x1 conv to c_j."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return self.norm(self.conv(resize_bilinear(x, size)))


class MultiScaleFusion(nn.Module):
    """MF over len(channels) scales; channel counts are kept per scale."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = list(channels)
        n = len(channels)
        self.paths = nn.ModuleDict()
        for r in range(n):
            for j in range(n):
                if r < j:
                    self.paths[f"{r}_{j}"] = DownFuse(channels[r], channels[j], j - r)
                elif r > j:
                    self.paths[f"{r}_{j}"] = UpFuse(channels[r], channels[j])

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        outs = []
        for j, target in enumerate(inputs):
            total = target
            for r, x in enumerate(inputs):
                if r < j:
                    down = self.paths[f"{r}_{j}"](x)
                    if down.shape[-2:] != target.shape[-2:]:  # odd grid sizes: align to the target grid
                        down = resize_bilinear(down, target.shape[-2:])
                    total = total + down
                elif r > j:
                    total = total + self.paths[f"{r}_{j}"](x, target.shape[-2:])
            outs.append(total)
        return outs
