"""Nearest-neighbour search over a memory bank: faiss when installed, torch otherwise.

Both are exact (brute-force L2) up to ``EXACT_SEARCH_MAX_ROWS`` bank rows; faiss's blocked
BLAS search is about twice as fast on a CPU, which matters because the search dominates
PatchCore inference. PatchCore's bank is capped well below that size (``max_bank_size``),
so its search stays exact; only a larger bank (the cap lifted) is searched with a faiss
HNSW graph, approximate but sub-linear in the bank size.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

try:  # optional accelerator
    import faiss  # type: ignore

    HAVE_FAISS = True
except Exception:  # noqa: BLE001
    faiss = None
    HAVE_FAISS = False


#: Banks with more rows than this are searched with faiss HNSW (approximate) under "auto".
EXACT_SEARCH_MAX_ROWS = 262_144
#: HNSW graph degree and search breadth (recall@1 above 0.99 on patch features in tests).
HNSW_NEIGHBOURS, HNSW_SEARCH_BREADTH = 32, 128

#: Values of ``search_backend``: faiss when installed (auto), or one of them by name.
SEARCH_BACKENDS = ("auto", "faiss", "torch")


def check_search_backend(backend: str) -> None:
    """ValueError for an unknown backend, or for "faiss" when faiss is not installed."""
    if backend not in SEARCH_BACKENDS:
        raise ValueError(f"search_backend must be one of {', '.join(SEARCH_BACKENDS)}, got {backend!r}")
    if backend == "faiss" and not HAVE_FAISS:
        raise ValueError("search_backend 'faiss' requested but faiss is not installed (pip install faiss-cpu)")


class NearestNeighbourIndex:
    """Euclidean k-NN over a fixed bank (rows of ``bank``); ``exact`` says whether the search is brute force."""

    def __init__(self, bank: torch.Tensor, backend: str = "auto", exact_max_rows: int = EXACT_SEARCH_MAX_ROWS):
        if backend not in ("auto", "faiss", "torch"):
            raise ValueError(f"unknown search backend {backend!r}: auto, faiss or torch")
        if backend == "faiss" and not HAVE_FAISS:
            raise ImportError("backend 'faiss' requested but faiss is not installed (pip install faiss-cpu)")
        self.bank = bank.float().contiguous()
        self.use_faiss = HAVE_FAISS and backend != "torch" and bank.device.type == "cpu"
        self.exact = not (self.use_faiss and backend == "auto" and self.bank.shape[0] > exact_max_rows)
        if self.use_faiss:
            if self.exact:
                self.index = faiss.IndexFlatL2(self.bank.shape[1])
            else:
                self.index = faiss.IndexHNSWFlat(self.bank.shape[1], HNSW_NEIGHBOURS)
                self.index.hnsw.efSearch = HNSW_SEARCH_BREADTH
            self.index.add(self.bank.numpy())
        else:
            self.bank_sq = (self.bank * self.bank).sum(1)

    def search(self, queries: torch.Tensor, k: int = 1, chunk: int = 4096) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> (distances M x k, indices M x k), distances Euclidean (not squared)."""
        queries = queries.float().contiguous()
        if self.use_faiss:
            sq, idx = self.index.search(queries.cpu().numpy(), k)
            dist = torch.from_numpy(np.sqrt(np.maximum(sq, 0.0)))
            return dist.to(queries.device), torch.from_numpy(idx).to(queries.device)
        dists, indices = [], []
        for part in queries.split(chunk):
            sq = torch.addmm(self.bank_sq[None], part, self.bank.T, alpha=-2.0)
            sq.add_((part * part).sum(1, keepdim=True))
            d, i = torch.topk(sq, k, dim=1, largest=False) if k > 1 else sq.min(dim=1, keepdim=True)
            dists.append(d.clamp_min_(0).sqrt_())
            indices.append(i)
        return torch.cat(dists), torch.cat(indices)
