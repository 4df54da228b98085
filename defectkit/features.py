"""Patch features from a frozen backbone: neighbourhood aggregation and multi-stage fusion.

PatchCore and SimpleNet describe a location by its stride-8 and stride-16 features, each
averaged over a 3x3 neighbourhood ("patch size" p = 3) so that a feature sees a little
context, then resized to the finer grid and concatenated (METHODS.md, shared blocks).
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F


def aggregate_neighbourhood(feature: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """Average every location with its ``patch_size`` x ``patch_size`` neighbours (same size out)."""
    if patch_size <= 1:
        return feature
    pad = patch_size // 2
    # count_include_pad=False: border locations average only over real neighbours.
    return F.avg_pool2d(feature, patch_size, stride=1, padding=pad, count_include_pad=False)


def stage_balance_weights(channels: Sequence[int]) -> list:
    """Per-stage factors sqrt(C_max / C) that give every stage the same weight in a distance.

    The official PatchCore and SimpleNet code resamples every stage to one common channel
    count before concatenating, so a narrow stage counts as much as a wide one. Scaling a
    stage by sqrt(C_max / C) has that effect on squared Euclidean distances without
    inflating the feature dimension (which would slow nearest-neighbour search).
    """
    widest = max(channels)
    return [(widest / c) ** 0.5 for c in channels]


def fuse_stages(
    features: Dict[int, torch.Tensor],
    strides: Sequence[int] = (8, 16),
    patch_size: int = 3,
    balance: bool = False,
) -> torch.Tensor:
    """Aggregate each stage, resize all to the finest stage's grid, concatenate channels.

    With ``balance`` each stage is scaled by :func:`stage_balance_weights`.
    """
    strides = sorted(strides)
    target = features[strides[0]].shape[-2:]
    weights = stage_balance_weights([features[s].shape[1] for s in strides]) if balance else [1.0] * len(strides)
    parts = []
    for stride, weight in zip(strides, weights):
        f = aggregate_neighbourhood(features[stride], patch_size)
        if f.shape[-2:] != target:
            f = F.interpolate(f, size=target, mode="bilinear", align_corners=False)
        parts.append(f * weight if weight != 1.0 else f)
    return torch.cat(parts, dim=1)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian, truncated at 4 sigma (the usual ``2*int(4*sigma+0.5)+1`` taps)."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of N x 1 x H x W maps with reflected borders (exportable to ONNX)."""
    if sigma <= 0:
        return maps
    k = gaussian_kernel1d(sigma).to(maps)
    r = k.numel() // 2
    h, w = maps.shape[-2:]
    if r >= min(h, w):  # reflect padding needs the pad to be smaller than the map
        r = min(h, w) - 1
        k = k[k.numel() // 2 - r : k.numel() // 2 + r + 1]
        k = k / k.sum()
    x = F.pad(maps, (r, r, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def upsample_maps(maps: torch.Tensor, size: int, sigma: float = 4.0) -> torch.Tensor:
    """Patch-grid scores N x 1 x h x w -> N x 1 x size x size, bilinear then Gaussian-smoothed."""
    maps = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)
    return gaussian_blur(maps, sigma)
