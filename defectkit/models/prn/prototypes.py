"""PRN's multi-scale prototypes (paper sec. 3.1): k-means over whole feature maps, residual to the nearest.

Each scale j keeps K prototypes P_j (K x c x h x w): K whole feature maps of normal
images, initialised by a seeded random choice and refined by k-means with the L2
distance between whole maps (at most ``max_iter`` iterations, stopping early when the
assignment no longer changes). A feature map's residual is the element-wise distance
|F - P*| to its nearest prototype P* (eq. 1); scales choose their prototypes independently.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch


def n_prototypes(n_images: int, ratio: float) -> int:
    """K = ``ratio`` of the normal images (paper: 10 %), at least 1."""
    return max(1, min(n_images, int(round(ratio * n_images))))


def _sq_distances(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """N x D and K x D -> N x K squared L2 distances (float64 accumulation for stability)."""
    x, centres = x.double(), centres.double()
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ centres.T + (centres * centres).sum(1)[None]
    return d.clamp_min_(0.0)


@torch.no_grad()
def kmeans_maps(maps: torch.Tensor, k: int, seed: int, max_iter: int = 300) -> Tuple[torch.Tensor, int]:
    """k-means on whole maps (N x c x h x w) -> (K x c x h x w prototypes, iterations run).

    Initialised with ``k`` distinct maps drawn by ``seed``; an emptied cluster keeps its
    previous centre. Deterministic for a seed.
    """
    n = maps.shape[0]
    flat = maps.reshape(n, -1).float()
    gen = torch.Generator().manual_seed(seed)
    init = torch.randperm(n, generator=gen)[:k].to(flat.device)
    centres = flat[init].clone()
    assign = None
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the number of iterations run is returned
        new_assign = _sq_distances(flat, centres).argmin(1)
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        for c in range(k):
            members = assign == c
            if members.any():
                centres[c] = flat[members].mean(0)
    return centres.reshape(k, *maps.shape[1:]), it


@torch.no_grad()
def nearest_residuals(feats: torch.Tensor, prototypes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """-> (|F - P*| with the shape of ``feats``, index of P* per map) for N x c x h x w features."""
    n = feats.shape[0]
    d = _sq_distances(feats.reshape(n, -1), prototypes.reshape(prototypes.shape[0], -1))
    idx = d.argmin(1)
    return (feats - prototypes[idx]).abs(), idx


def fit_prototypes(
    feats: Dict[int, torch.Tensor], ratio: float, seed: int, max_iter: int = 300
) -> Tuple[Dict[int, torch.Tensor], Dict[int, int]]:
    """Per stride: k-means prototypes of the normal training maps -> (prototypes, iterations per stride)."""
    protos, iters = {}, {}
    for i, (stride, f) in enumerate(sorted(feats.items())):
        k = n_prototypes(f.shape[0], ratio)
        protos[stride], iters[stride] = kmeans_maps(f, k, seed + 101 * i, max_iter)
    return protos, iters
