"""Greedy k-center coreset selection (PatchCore's memory-bank subsampling).

Greedy k-center picks, at every step, the point farthest from everything picked so far,
so the kept 10 % still cover the whole feature distribution (rare normal patterns
included), unlike random subsampling. Distances are computed on a Gaussian random
projection (Johnson-Lindenstrauss) of the features: the selection only needs relative
distances, and a narrow projection keeps each step's pass over all N points in cache.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional

import torch

from ...utils.progress import progress as progress_bar


def random_projection(features: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """N x C -> N x dim with a seeded Gaussian matrix; no-op when dim >= C."""
    if dim <= 0 or dim >= features.shape[1]:
        return features
    matrix = torch.randn(features.shape[1], dim, generator=generator) / math.sqrt(dim)
    return features @ matrix.to(features)


@contextlib.contextmanager
def single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run the greedy loop on one CPU thread.

    Each step is a few small kernels over N points; with several threads their
    synchronisation costs more than the arithmetic (measured 6x slower with 2 threads
    on a busy 2-core machine, and no faster on an idle one).
    """
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def greedy_coreset(
    features: torch.Tensor,
    ratio: float = 0.1,
    projection_dim: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Indices (sorted by selection order) of a greedy k-center coreset of ``ratio`` x N rows."""
    if not 0 < ratio <= 1:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    n = features.shape[0]
    k = max(1, int(round(n * ratio)))
    if k >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    x = random_projection(features.float(), projection_dim, generator).contiguous()
    return greedy_k_center(x, k, generator, progress)


def greedy_k_center(
    x: torch.Tensor, k: int, generator: torch.Generator, progress: bool = False, desc: str = "coreset"
) -> torch.Tensor:
    """Indices (in selection order) of ``k`` rows of ``x`` picked by greedy k-center from a seeded start.

    Costs k passes over the N rows (N x k distance evaluations), so callers bound N x k.
    """
    n = x.shape[0]
    if k >= n:
        return torch.arange(n)
    sq_norms = (x * x).sum(1)
    selected = torch.empty(k, dtype=torch.long)
    current = int(torch.randint(n, (1,), generator=generator))
    min_dist: Optional[torch.Tensor] = None
    with single_thread_on_cpu(x.device):
        with progress_bar(range(k), desc=desc, unit="pt", enabled=progress, mininterval=1.0) as steps:
            for step in steps:
                selected[step] = current
                # ||x_i - c||^2 = |x_i|^2 - 2 x_i.c + |c|^2, one matrix-vector product per step
                dist = torch.addmv(sq_norms, x, x[current], alpha=-2.0).add_(sq_norms[current])
                min_dist = dist if min_dist is None else torch.minimum(min_dist, dist, out=min_dist)
                current = int(torch.argmax(min_dist))
    return selected
