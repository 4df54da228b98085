"""A bounded memory bank chosen by two-level greedy k-center over patches that arrive in chunks.

Exact greedy k-center over all N patches costs N x k distance evaluations with k = 10 % of
N, so it grows with N squared (714 bottle-sized images took 8x the time of 239). Here the
bank size is capped (``k = min(ratio x N, max_size)``) and the selection runs in two levels:

1. each block of ``block_rows`` rows (the feature extractor streams chunks of images,
   cut into blocks) keeps its share of a candidate pool of ``pool_factor x k`` rows,
   picked by greedy k-center inside the block (rare patterns of a block survive, as they
   would not under random subsampling);
2. greedy k-center over the pooled candidates picks the ``k`` bank rows.

Level 1 costs (pool x block rows) evaluations in all, level 2 pool x k: both are bounded
by the cap, so the selection is near-linear in N (the projection is one pass) and fit
memory holds the pool and one chunk, not every patch. When the pool would hold every
patch (small data, or no cap), level 1 keeps everything and level 2 is exactly
``greedy_coreset`` with the same seed.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch

from .coreset import greedy_k_center


def bank_size(total: int, ratio: float, max_size: int) -> int:
    """``ratio`` x ``total`` rows (at least 1), capped at ``max_size`` (0: no cap)."""
    k = max(1, int(round(total * ratio)))
    return min(k, max_size) if max_size > 0 else k


class StreamingCoreset:
    """Feed chunks of patch features with :meth:`add`, then :meth:`finish` returns the bank.

    ``total``: how many rows will be added in all (known from the image count and the patch
    grid), so each chunk's share of the pool is fixed when it arrives.
    ``distance_evaluations`` counts the (row, centre) pairs compared, the selection's cost.
    """

    def __init__(
        self,
        total: int,
        ratio: float = 0.1,
        max_size: int = 4096,
        projection_dim: int = 32,
        seed: int = 0,
        pool_factor: float = 2.0,
        block_rows: int = 8192,
    ):
        if not 0 < ratio <= 1:
            raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
        if total < 1:
            raise ValueError(f"a coreset needs at least one row, got total={total}")
        self.total = total
        self.size = bank_size(total, ratio, max_size)
        # no cap: every row is a candidate, and the selection is today's exact greedy coreset
        pooled = max(self.size, int(math.ceil(pool_factor * self.size)))
        self.pool_size = total if max_size <= 0 else min(total, pooled)
        self.projection_dim = projection_dim
        self.block_rows = block_rows
        self.generator = torch.Generator().manual_seed(seed)
        self.chunk_generator = torch.Generator().manual_seed(seed + 1)
        self.matrix: Optional[torch.Tensor] = None
        self.seen = 0
        self.distance_evaluations = 0
        self._features: List[torch.Tensor] = []
        self._projected: List[torch.Tensor] = []

    @property
    def candidates(self) -> int:
        """Rows held so far (the fit's memory, beside one chunk)."""
        return sum(len(f) for f in self._features)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The seeded Gaussian projection of ``coreset.random_projection``, drawn on the first chunk."""
        dim = features.shape[1]
        if self.projection_dim <= 0 or self.projection_dim >= dim:
            return features.float().contiguous()
        if self.matrix is None:
            self.matrix = torch.randn(dim, self.projection_dim, generator=self.generator) / math.sqrt(
                self.projection_dim
            )
        return (features.float() @ self.matrix.to(features.device)).contiguous()

    def add(self, features: torch.Tensor) -> None:
        """Keep the share of the candidate pool of every block of this chunk (every row while the pool holds all)."""
        for block in features.split(self.block_rows):
            self._add_block(block)

    def _add_block(self, features: torch.Tensor) -> None:
        n = features.shape[0]
        if self.seen + n > self.total:
            raise ValueError(f"more rows added ({self.seen + n}) than announced (total={self.total})")
        projected = self.project(features)
        # shares by cumulative count, so the pool ends at exactly pool_size rows
        share = round(self.pool_size * (self.seen + n) / self.total) - round(self.pool_size * self.seen / self.total)
        self.seen += n
        if share < n:
            keep = greedy_k_center(projected, max(1, share), self.chunk_generator)
            self.distance_evaluations += n * max(1, share)
            features, projected = features[keep], projected[keep]
        self._features.append(features.contiguous())
        self._projected.append(projected)

    def finish(self, progress: bool = False) -> torch.Tensor:
        """The ``size`` bank rows (full features, in selection order) chosen from the pool."""
        if self.seen != self.total:
            raise ValueError(f"{self.seen} rows added, {self.total} announced")
        pool = torch.cat(self._features)
        projected = torch.cat(self._projected)
        self._features, self._projected = [], []
        if self.size >= len(pool):
            return pool
        keep = greedy_k_center(projected, self.size, self.generator, progress)
        self.distance_evaluations += len(pool) * self.size
        return pool[keep].contiguous()
