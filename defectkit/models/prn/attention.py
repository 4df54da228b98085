"""PRN's multi-size self-attention MSA (paper sec. 3.3, eq. 3).

One head per patch size p in {h, h/2, h/4, h/8}: the map is cut into non-overlapping
p x p patches (tokens), attention runs between the patches, and the result is put back
in place, so every head sees inconsistencies at its own scale. The heads are
concatenated and passed through a 2D residual block; the block is stacked 3 times.

Deviation (documented in docs/methods/prn.md): the paper embeds each flattened patch
(2c * p * p values) with a dense linear layer, which for p = h is a matrix of
(2c h^2)^2 weights (10^11 for ResNet-18 stage 1) -- impossible to build. We embed each
pixel with a shared 1x1 conv into ``head_dim`` channels for q / k / v and flatten those
per patch, i.e. the same patch tokens with a per-pixel-shared (block-diagonal) linear
map; logits are scaled by 1/sqrt(token dim). Maps whose side is not a multiple of the
number of patches per side are padded (replicate) and cropped back, so the patches of a
head tile the map exactly.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

PATCHES_PER_SIDE = (1, 2, 4, 8)  # patch sizes h, h/2, h/4, h/8


def head_grids(h: int, w: int, grids: Sequence[int] = PATCHES_PER_SIDE) -> List[Tuple[int, int]]:
    """Patches per side (gh, gw) of each head, capped by the map size (a patch is >= 1 pixel)."""
    return [(min(g, h), min(g, w)) for g in grids]


def to_patches(x: torch.Tensor, gh: int, gw: int) -> Tuple[torch.Tensor, Tuple[int, int, int, int]]:
    """B x C x H x W -> (B x (gh gw) x (C ph pw) tokens, layout); pads so the grid tiles the map."""
    b, c, h, w = x.shape
    ph, pw = math.ceil(h / gh), math.ceil(w / gw)
    pad_h, pad_w = ph * gh - h, pw * gw - w
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    t = x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * ph * pw)
    return t, (h, w, ph, pw)


def from_patches(tokens: torch.Tensor, c: int, gh: int, gw: int, layout: Tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`to_patches` (crops the padding)."""
    h, w, ph, pw = layout
    b = tokens.shape[0]
    x = tokens.reshape(b, gh, gw, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * ph, gw * pw)
    return x[:, :, :h, :w]


def patch_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, patches_per_side: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D)) V between the p x p patches of B x d x H x W q / k / v maps."""
    gh, gw = head_grids(q.shape[-2], q.shape[-1], (patches_per_side,))[0]
    if gh * gw == 1:  # one token attends to itself only: the output is V
        return v
    (tq, layout), (tk, _), (tv, _) = to_patches(q, gh, gw), to_patches(k, gh, gw), to_patches(v, gh, gw)
    attn = torch.softmax(tq @ tk.transpose(1, 2) / math.sqrt(tq.shape[-1]), dim=-1)
    return from_patches(attn @ tv, v.shape[1], gh, gw, layout)


class PatchAttentionHead(nn.Module):
    """One head on its own: q / k / v by a 1x1 conv, then :func:`patch_attention`."""

    def __init__(self, channels: int, head_dim: int, patches_per_side: int):
        super().__init__()
        self.grid = patches_per_side
        self.qkv = nn.Conv2d(channels, 3 * head_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=1)
        return patch_attention(q, k, v, self.grid)


class SeparableResidualBlock(nn.Module):
    """x + Block(heads): 1x1 (heads -> C), BN, ReLU, depthwise 3x3 + 1x1, BN; then ReLU."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(heads))


class MSALayer(nn.Module):
    """All heads of one MSA layer at one scale (q / k / v of every head from one 1x1 conv, which
    is the same as one conv per head but a single call), concatenated, then the residual block."""

    def __init__(self, channels: int, head_dim: int, grids: Sequence[int] = PATCHES_PER_SIDE):
        super().__init__()
        self.grids = tuple(grids)
        self.head_dim = head_dim
        self.qkv = nn.Conv2d(channels, 3 * head_dim * len(self.grids), 1)
        self.block = SeparableResidualBlock(head_dim * len(self.grids), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x).chunk(3 * len(self.grids), dim=1)
        heads = [patch_attention(*qkv[3 * i : 3 * i + 3], g) for i, g in enumerate(self.grids)]
        return self.block(x, torch.cat(heads, dim=1))


class MultiSizeSelfAttention(nn.Module):
    """MSA stacked ``depth`` times (paper: N = 3) at one scale."""

    def __init__(self, channels: int, head_dim: int = 8, depth: int = 3, grids: Sequence[int] = PATCHES_PER_SIDE):
        super().__init__()
        self.layers = nn.Sequential(*[MSALayer(channels, head_dim, grids) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
