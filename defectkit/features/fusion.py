"""Patch features from a frozen backbone: neighbourhood aggregation and multi-stage fusion.

PatchCore and SimpleNet describe a location by its stride-8 and stride-16 features, each
aggregated over a 3x3 neighbourhood ("patch size" p = 3) so that a feature sees a little
context, then resized to the finer grid and concatenated (docs/methods/shared.md).

Two aggregations are offered. ``"mean"`` averages each channel over the neighbourhood
(C values per stage). ``"adaptive"`` is what the official PatchCore / SimpleNet code does
with "adaptive average pooling": each location's C x p x p neighbourhood is flattened and
adaptive-average-pooled to ``embed_dim`` values, so some of the layout inside the
neighbourhood survives. That pooling is a fixed linear map of the neighbourhood, i.e. one
convolution with a constant kernel, which is how it is computed here (fast, exportable).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from ..utils.resize import resize_bilinear


def aggregate_neighbourhood(feature: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """Average every location with its ``patch_size`` x ``patch_size`` neighbours (same size out)."""
    if patch_size <= 1:
        return feature
    pad = patch_size // 2
    # count_include_pad=False: border locations average only over real neighbours.
    return F.avg_pool2d(feature, patch_size, stride=1, padding=pad, count_include_pad=False)


def adaptive_pool_matrix(length_in: int, length_out: int) -> torch.Tensor:
    """``length_out x length_in`` matrix M with ``M @ v == F.adaptive_avg_pool1d(v, length_out)``.

    Output i averages inputs ``floor(i * L_in / L_out)`` to ``ceil((i + 1) * L_in / L_out) - 1``,
    PyTorch's definition, which also covers L_out > L_in (inputs are repeated).
    """
    if length_in < 1 or length_out < 1:
        raise ValueError(f"adaptive pooling needs positive lengths, got {length_in} -> {length_out}")
    m = torch.zeros(length_out, length_in, dtype=torch.float64)
    for i in range(length_out):
        start = (i * length_in) // length_out
        end = -((-(i + 1) * length_in) // length_out)  # ceil
        m[i, start:end] = 1.0 / (end - start)
    return m


@lru_cache(maxsize=32)
def _neighbourhood_kernel(channels: int, patch_size: int, embed_dim: int) -> torch.Tensor:
    # unfold orders a neighbourhood as (channel, row, column): the same order as a conv weight
    pool = adaptive_pool_matrix(channels * patch_size * patch_size, embed_dim)
    return pool.float().reshape(embed_dim, channels, patch_size, patch_size)


def embed_neighbourhood(feature: torch.Tensor, patch_size: int, embed_dim: int) -> torch.Tensor:
    """Adaptive-average-pool every location's flattened C x p x p neighbourhood to ``embed_dim``.

    Equal to ``F.unfold`` (zero padding) followed by ``F.adaptive_avg_pool1d`` per location,
    as the official code computes it, but done as a single convolution.
    """
    kernel = _neighbourhood_kernel(feature.shape[1], patch_size, embed_dim).to(feature)
    return F.conv2d(feature, kernel, padding=patch_size // 2)


def stage_balance_weights(channels: Sequence[int]) -> list:
    """Per-stage factors sqrt(C_max / C) that give every stage the same weight in a distance.

    The official PatchCore and SimpleNet code resamples every stage to one common channel
    count before concatenating, so a narrow stage counts as much as a wide one. Scaling a
    stage by sqrt(C_max / C) has that effect on squared Euclidean distances without
    inflating the feature dimension (which would slow nearest-neighbour search).
    """
    widest = max(channels)
    return [(widest / c) ** 0.5 for c in channels]


#: Neighbourhood aggregations understood by :func:`fuse_stages`.
AGGREGATIONS = ("mean", "adaptive")


def check_aggregation(aggregation: str, embed_dim: Optional[int]) -> None:
    """Raise a clear error for an unknown aggregation or a missing or non-positive embed_dim."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    if (embed_dim is not None and embed_dim < 1) or (aggregation == "adaptive" and embed_dim is None):
        raise ValueError(f"embed_dim must be a positive int (needed by aggregation='adaptive'), got {embed_dim!r}")


def fuse_stages(
    features: Dict[int, torch.Tensor],
    strides: Sequence[int] = (8, 16),
    patch_size: int = 3,
    balance: bool = False,
    aggregation: str = "mean",
    embed_dim: Optional[int] = None,
) -> torch.Tensor:
    """Aggregate each stage, resize all to the finest stage's grid, concatenate channels.

    ``aggregation`` "mean" (C_s channels per stage) or "adaptive" (``embed_dim`` per stage,
    see the module docstring). With ``balance`` each stage is scaled by
    :func:`stage_balance_weights` of its output width (all equal, so no-op, for "adaptive").
    """
    check_aggregation(aggregation, embed_dim)
    strides = sorted(strides)
    target = features[strides[0]].shape[-2:]
    widths = [embed_dim if aggregation == "adaptive" else features[s].shape[1] for s in strides]
    weights = stage_balance_weights(widths) if balance else [1.0] * len(strides)
    parts = []
    for stride, weight in zip(strides, weights):
        if aggregation == "adaptive":
            f = embed_neighbourhood(features[stride], patch_size, embed_dim)
        else:
            f = aggregate_neighbourhood(features[stride], patch_size)
        if f.shape[-2:] != target:
            f = resize_bilinear(f, target)
        parts.append(f * weight if weight != 1.0 else f)
    return torch.cat(parts, dim=1)
