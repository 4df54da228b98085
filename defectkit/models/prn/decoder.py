"""PRN's trainable network: skip branches (MF, MP residuals, MSA, MF) and a U-Net-like decoder.

Per scale j (finest first): F*_j = MF(F)_j and D*_j = MF(D)_j are concatenated
(2 c_j channels), refined by MSA (3 layers) and fused again by MF -> the skip
connection T*_j (paper fig. 3). The decoder starts from the coarsest skip, and at each
finer scale upsamples (bilinear x2), concatenates the skip and applies two 3x3
conv-BN-ReLU layers; a 1x1 conv gives anomaly logits on the finest (stride-4) grid,
which are upsampled bilinearly to the input size.

Ablation switches (paper table 4): ``use_prototypes`` (MP: residual branch on/off),
``use_msa`` and ``use_mf``; all off is the plain U-Net baseline whose skips are the
frozen features themselves.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from ...utils.resize import resize_bilinear
from .attention import MultiSizeSelfAttention
from .fusion import MultiScaleFusion


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class PRNNetwork(nn.Module):
    """Frozen features (+ prototype residuals) per scale -> anomaly logits on the finest grid."""

    def __init__(
        self,
        channels: Sequence[int],
        use_prototypes: bool = True,
        use_msa: bool = True,
        use_mf: bool = True,
        head_dim: int = 8,
        msa_depth: int = 3,
        decoder_channels: Sequence[int] = (32, 48, 64),
    ):
        super().__init__()
        channels = list(channels)
        if len(decoder_channels) != len(channels):
            raise ValueError(f"decoder_channels needs one width per scale ({len(channels)}), got {decoder_channels}")
        self.use_prototypes, self.use_msa, self.use_mf = use_prototypes, use_msa, use_mf
        skip = [2 * c for c in channels] if use_prototypes else channels
        self.feature_fusion = MultiScaleFusion(channels) if use_mf else None
        self.residual_fusion = MultiScaleFusion(channels) if (use_mf and use_prototypes) else None
        self.attention = (
            nn.ModuleList(MultiSizeSelfAttention(c, head_dim, msa_depth) for c in skip) if use_msa else None
        )
        self.skip_fusion = MultiScaleFusion(skip) if (use_mf and use_msa) else None
        n = len(channels)
        dec = list(decoder_channels)
        self.decoder = nn.ModuleList()
        for j in reversed(range(n)):
            c_in = skip[j] + (dec[j + 1] if j + 1 < n else 0)
            self.decoder.append(conv_block(c_in, dec[j]))
        self.head = nn.Conv2d(dec[0], 1, 1)

    def skips(self, feats: List[torch.Tensor], residuals: Optional[List[torch.Tensor]]) -> List[torch.Tensor]:
        if self.feature_fusion is not None:
            feats = self.feature_fusion(feats)
        if self.use_prototypes:
            if residuals is None:
                raise ValueError("this PRN network uses prototype residuals; pass them")
            if self.residual_fusion is not None:
                residuals = self.residual_fusion(residuals)
            x = [torch.cat([f, r], dim=1) for f, r in zip(feats, residuals)]
        else:
            x = list(feats)
        if self.attention is not None:
            x = [att(t) for att, t in zip(self.attention, x)]
            if self.skip_fusion is not None:
                x = self.skip_fusion(x)
        return x

    def forward(self, feats: List[torch.Tensor], residuals: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        skips = self.skips(feats, residuals)
        x = None
        for block, skip in zip(self.decoder, reversed(skips)):
            if x is not None:
                x = resize_bilinear(x, skip.shape[-2:])
                skip = torch.cat([skip, x], dim=1)
            x = block(skip)
        return self.head(x)
