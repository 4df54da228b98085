"""The MLFF network head: texture branch on stages 1+2, self-calibrated conv on stage 3,
fusion into one per-pixel feature ``phi`` and a linear score head (docs/methods/mlff.md).

Input: the backbone's stride-4, 8 and 16 features. With ``output_stride`` 4 (the default,
as in the paper) stage 2 is upsampled bilinearly onto stage 1's grid and concatenated with
it, so the texture branch and the output live on the stride-4 grid; with 8 stage 1 is
average-pooled onto stage 2's grid instead (about 5x cheaper, lower on validation,
docs/methods/mlff.md). Stage 3 is calibrated at stride 16 and upsampled bilinearly to
the output grid. The switches ``texture`` and ``scconv`` drop a branch for the paper's
ablation (Table 4); without them the stage features are only projected (1x1
Conv-BN-ReLU) before fusion -- the "baseline fusion".
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.resize import resize_bilinear
from .scconv import SelfCalibratedConv
from .texture import PTFEM, TEM, conv_bn_relu

STRIDES = (4, 8, 16)


OUTPUT_STRIDES = (4, 8)


def low_level_input(stage4: torch.Tensor, stage8: torch.Tensor, output_stride: int = 4) -> torch.Tensor:
    """Stages 1 and 2 on one grid, concatenated: stride 4 upsamples stage 2 bilinearly onto
    stage 1's grid (the paper); stride 8 pools stage 1 onto stage 2's (cheaper)."""
    if output_stride == 8:
        return torch.cat([F.adaptive_avg_pool2d(stage4, stage8.shape[-2:]), stage8], dim=1)
    if output_stride == 4:
        up = resize_bilinear(stage8, stage4.shape[-2:])
        return torch.cat([stage4, up], dim=1)
    raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")


class MLFFNet(nn.Module):
    """(low: B x (C1+C2) x h x w, high: B x C3 x h/2 x w/2) -> (phi B x D x h x w, s B x h x w)."""

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        width: int = 64,
        feature_dim: int = 32,
        texture: bool = True,
        scconv: bool = True,
        tem_levels: int = 16,
        ptfem_levels: int = 8,
        pyramid: Tuple[int, ...] = (1, 2, 4, 8),
        scconv_pooling: int = 4,
    ):
        super().__init__()
        self.low_proj = conv_bn_relu(low_channels, width)
        self.high_proj = conv_bn_relu(high_channels, width)
        self.tem = TEM(width, tem_levels, width) if texture else None
        self.ptfem = PTFEM(width, ptfem_levels, width, pyramid) if texture else None
        self.scconv = SelfCalibratedConv(width, scconv_pooling) if scconv else None
        low_out = 2 * width if texture else width
        self.fuse = nn.Sequential(conv_bn_relu(low_out + width, 2 * width, 3), nn.Conv2d(2 * width, feature_dim, 1))
        self.score_head = nn.Conv2d(feature_dim, 1, 1)

    def texture_features(self, low: torch.Tensor) -> torch.Tensor:
        x = self.low_proj(low)
        if self.tem is None:
            return x
        enhanced = self.tem(x)
        return torch.cat([enhanced, self.ptfem(enhanced)], dim=1)

    def calibrated_features(self, high: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        x = self.high_proj(high)
        if self.scconv is not None:
            x = self.scconv(x)
        return resize_bilinear(x, size)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        tex = self.texture_features(low)
        cal = self.calibrated_features(high, tex.shape[-2:])
        phi = self.fuse(torch.cat([tex, cal], dim=1))
        return phi, self.score_head(phi)[:, 0]


def split_stages(stages: Dict[int, torch.Tensor], output_stride: int = 4) -> Tuple[torch.Tensor, torch.Tensor]:
    """{4, 8, 16: features} -> (low-level input on the output grid, stage-3 input) for MLFFNet."""
    return low_level_input(stages[4], stages[8], output_stride), stages[16]
