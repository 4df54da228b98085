"""STLNet's texture branch: the texture enhancement module (TEM, 1-D QCO) and the pyramid
texture feature extraction module (PTFEM, 2-D QCO on 1/2/4/8 sub-regions per side).

Both turn a statistic of the feature map (a histogram of pixel-to-mean similarities, or a
co-occurrence matrix of adjacent pixels' levels) into learned features and give them
back to the pixels, so shallow-stage features carry texture statistics of their region.
Sizes follow the reconstruction in docs/methods/mlff.md; see docs/methods/mlff.md for deviations.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.resize import resize_bilinear
from .qco import qco_1d, qco_2d


def conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class LevelAttention(nn.Module):
    """Self-attention over the N level nodes (STLNet's graph reasoning): each level's
    statistic feature is updated with a learned mix of all the others (residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.q = nn.Conv1d(dim, dim, 1)
        self.k = nn.Conv1d(dim, dim, 1)
        self.v = nn.Conv1d(dim, dim, 1)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:  # B x D x N
        attn = torch.softmax(torch.einsum("bdn,bdm->bnm", self.q(nodes), self.k(nodes)) * self.scale, dim=-1)
        return nodes + torch.einsum("bnm,bdm->bdn", attn, self.v(nodes))


class TEM(nn.Module):
    """Texture enhancement: 1-D QCO -> MLP(level, count) + global feature -> level attention
    -> every pixel takes back its levels' features (weighted by its soft assignment)."""

    def __init__(self, channels: int, n_levels: int = 16, dim: int = 64):
        super().__init__()
        self.n_levels = n_levels
        self.lift = nn.Sequential(nn.Conv1d(2, dim, 1), nn.ReLU(), nn.Conv1d(dim, dim, 1))
        self.global_proj = nn.Linear(channels, dim)
        self.merge = nn.Sequential(nn.Conv1d(2 * dim, dim, 1), nn.ReLU())
        self.attention = LevelAttention(dim)
        self.out = conv_bn_relu(channels + dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        counts, q = qco_1d(x, self.n_levels)
        stats = torch.stack([q.levels, counts / (h * w)], dim=1)  # B x 2 x N
        nodes = self.lift(stats)
        glob = self.global_proj(q.mean_feature)[:, :, None].expand_as(nodes)
        nodes = self.attention(self.merge(torch.cat([nodes, glob], dim=1)))  # B x D x N
        per_pixel = torch.bmm(nodes, q.encoding).reshape(b, -1, h, w)  # convex mix of levels
        return self.out(torch.cat([x, per_pixel], dim=1))


def split_regions(x: torch.Tensor, parts: int) -> torch.Tensor:
    """B x C x H x W -> (B * parts^2) x C x H/parts x W/parts, row-major regions per image."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, parts, h // parts, parts, w // parts)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b * parts * parts, c, h // parts, w // parts)


class TextureUnit(nn.Module):
    """One region's texture vector: 2-D QCO -> MLP(level_i, level_j, co-occurrence) per level
    pair -> mean over pairs, plus the region's projected mean feature."""

    def __init__(self, channels: int, n_levels: int = 8, dim: int = 64):
        super().__init__()
        self.n_levels = n_levels
        self.lift = nn.Sequential(nn.Conv1d(3, dim, 1), nn.ReLU(), nn.Conv1d(dim, dim, 1))
        self.global_proj = nn.Linear(channels, dim)

    def forward(self, regions: torch.Tensor) -> torch.Tensor:  # R x C x h x w -> R x D
        _, _, h, w = regions.shape
        counts, q = qco_2d(regions, self.n_levels)
        n = self.n_levels
        li = q.levels[:, :, None].expand(-1, n, n)
        lj = q.levels[:, None, :].expand(-1, n, n)
        pairs = torch.stack([li, lj, counts / max(1, h * (w - 1))], dim=1).flatten(2)  # R x 3 x N^2
        return F.relu(self.lift(pairs).mean(dim=2) + self.global_proj(q.mean_feature))


class PTFEM(nn.Module):
    """Pyramid texture features: a TextureUnit per sub-region at 1, 2, 4, 8 regions per side,
    each branch's region vectors upsampled to the input grid, all fused with the input."""

    def __init__(self, channels: int, n_levels: int = 8, dim: int = 64, scales: Sequence[int] = (1, 2, 4, 8)):
        super().__init__()
        self.scales = tuple(scales)
        self.units = nn.ModuleList(TextureUnit(channels, n_levels, dim) for _ in self.scales)
        self.out = conv_bn_relu(channels + dim * len(self.scales), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        branches = [x]
        for parts, unit in zip(self.scales, self.units):
            size = (max(parts * 2, math.ceil(h / parts) * parts), max(parts * 2, math.ceil(w / parts) * parts))
            xs = x if size == (h, w) else resize_bilinear(x, size)
            vec = unit(split_regions(xs, parts))  # (B * parts^2) x D
            grid = vec.reshape(b, parts, parts, -1).permute(0, 3, 1, 2)
            branches.append(resize_bilinear(grid, (h, w)))
        return self.out(torch.cat(branches, dim=1))
