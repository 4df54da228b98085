"""STLNet's quantisation-and-counting operators (QCO), 1-D and 2-D, as plain tensor functions.

A feature map is summarised by how its pixels' similarities to the global mean feature
are distributed: each pixel's cosine similarity ``S_i = cos(x_i, mean_j x_j)`` is
quantised into ``N`` levels spread evenly over ``[min S, max S]`` with a soft
(triangular) assignment, and the assignments are counted. The 2-D operator counts the
co-occurrence of the levels of horizontally adjacent pixels, a grey-level co-occurrence
matrix over learned features.

Deviation from STLNet (documented in docs/methods/mlff.md): STLNet's encoding
``1 - |L_n - S_i|`` thresholded at the level spacing does not conserve mass (a pixel's
weights sum to less than 1). Here the assignment is the hat function
``max(0, 1 - |S_i - L_n| / step)`` with ``S_i`` clamped into ``[L_1, L_N]``: the weights of
every pixel sum to exactly 1, so the 1-D counts sum to the pixel count and the 2-D counts
to the number of adjacent pairs -- histograms in the literal sense, and unit-testable.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Quantised(NamedTuple):
    """Per image: ``encoding`` B x N x HW (soft level weights, columns sum to 1),
    ``levels`` B x N (level centres), ``similarity`` B x HW, ``mean_feature`` B x C."""

    encoding: torch.Tensor
    levels: torch.Tensor
    similarity: torch.Tensor
    mean_feature: torch.Tensor


def quantise(x: torch.Tensor, n_levels: int, eps: float = 1e-6) -> Quantised:
    """B x C x H x W features -> soft assignment of every pixel's similarity to ``n_levels`` levels."""
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    mean = flat.mean(dim=2)  # B x C
    sim = F.cosine_similarity(flat, mean[:, :, None], dim=1, eps=eps)  # B x HW
    enc, levels = soft_levels(sim, n_levels, eps)
    return Quantised(enc, levels, sim, mean)


def soft_levels(sim: torch.Tensor, n_levels: int, eps: float = 1e-6) -> tuple:
    """B x P similarities -> (encoding B x N x P, level centres B x N): each row's similarities
    soft-assigned to ``n_levels`` levels spread evenly over its [min, max]."""
    smin, smax = sim.min(dim=1, keepdim=True).values, sim.max(dim=1, keepdim=True).values
    step = ((smax - smin) / n_levels).clamp_min(eps)  # B x 1
    idx = torch.arange(n_levels, device=sim.device, dtype=sim.dtype)
    levels = smin + (idx[None, :] + 0.5) * step  # B x N, the bin centres
    # position in units of the level spacing, clamped to [first centre, last centre]; computed
    # relative to min S so a (near-)constant map puts all its mass in level 1 without rounding
    pos = ((sim - smin) / step - 0.5).clamp(0.0, n_levels - 1.0)
    enc = (1.0 - (pos[:, None, :] - idx[None, :, None]).abs()).clamp_min(0.0)
    return enc, levels


def cooccurrence(enc: torch.Tensor) -> torch.Tensor:
    """B x N x H x W level weights -> B x N x N counts of (left pixel level, right neighbour level)."""
    return torch.einsum("bihw,bjhw->bij", enc[..., :-1], enc[..., 1:])


def qco_1d(x: torch.Tensor, n_levels: int) -> tuple:
    """-> (counts B x N summing to H*W, Quantised). Divide by H*W for a distribution."""
    q = quantise(x, n_levels)
    return q.encoding.sum(dim=2), q


def qco_2d(x: torch.Tensor, n_levels: int) -> tuple:
    """-> (co-occurrence counts B x N x N of (left pixel level, right neighbour level), Quantised).

    ``counts[b, i, j] = sum over horizontal pairs (p, p+1) of E[i, p] * E[j, p+1]``; they sum
    to the number of pairs, H * (W - 1).
    """
    b, _, h, w = x.shape
    q = quantise(x, n_levels)
    return cooccurrence(q.encoding.reshape(b, n_levels, h, w)), q
