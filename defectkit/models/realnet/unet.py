"""RealNet's per-stage reconstruction network G_k: a small U-Net on one stage's selected features.

The paper (supp. C.4) reconstructs every stage with its own U-Net with skip connections
(official code: 2 residual blocks per level, channel multipliers 1-2-4, hidden width half
the input width, attention at the lower levels). Here: one residual block per level, no
attention, GroupNorm, and a width floor, so a CPU can train it in minutes; the structure
(encoder, bottleneck, decoder with skips, per-stage and no cross-stage alignment) is kept.
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.resize import resize_bilinear


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, ch), ch)


class ResBlock(nn.Module):
    """conv3x3-GN-SiLU-conv3x3-GN plus a (1x1-projected) shortcut; GroupNorm, so results do
    not depend on what else is in the batch (normal and synthetic images are mixed)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.skip(x))


class ReconUNet(nn.Module):
    """m_k channels in, m_k channels out, same grid; ``len(mults)`` levels, each halving the grid.

    Grids whose side is not divisible by 2^(levels-1) still work: the decoder resizes each
    upsampled map to its skip's size.
    """

    def __init__(self, channels: int, width: int, mults: Sequence[int] = (1, 2, 4)):
        super().__init__()
        widths = [width * m for m in mults]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        cin = widths[0]
        for w in widths:
            self.down.append(ResBlock(cin, w))
            cin = w
        self.mid = ResBlock(cin, cin)
        self.up = nn.ModuleList()
        for w in reversed(widths):
            self.up.append(ResBlock(cin + w, w))
            cin = w
        self.head = nn.Conv2d(cin, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        skips: List[torch.Tensor] = []
        for i, block in enumerate(self.down):
            if i > 0:
                h = F.avg_pool2d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        h = self.mid(h)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = resize_bilinear(h, skip.shape[-2:])
            h = block(torch.cat([h, skip], dim=1))
        return self.head(h)


def recon_width(channels: int, ratio: float = 0.5, floor: int = 16) -> int:
    """Hidden width of G_k: ``ratio`` x its input width (official code: 0.5), at least ``floor``."""
    return max(floor, int(round(ratio * channels)))
