"""Patch-grid scores to image-sized anomaly maps: bilinear upsampling and Gaussian smoothing.

Every method turns a coarse grid of scores into a map at the evaluation resolution the
same way, so the operators live here once. ``SeparableUpsampler`` computes the same
linear operator as ``upsample_maps`` with two small matrix products, which is much
cheaper on a CPU than a full-size convolution.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..utils.resize import resize_bilinear


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
    maps = resize_bilinear(maps, (size, size))
    return gaussian_blur(maps, sigma)


class SeparableUpsampler:
    """``features.upsample_maps`` (bilinear upsampling, then Gaussian blur) as two matrix products.

    Both steps are linear and separable, so for an h x w grid and output size S the whole
    operation is ``maps = U_h @ p @ U_w^T`` with S x h and S x w matrices. The matrices are
    read off ``upsample_maps`` itself, applied once to basis maps, so the result is the same
    operator (up to float rounding); a product costs far less than blurring at full size
    with a 33-tap convolution, which would otherwise rival the backbone on a CPU.
    """

    def __init__(self) -> None:
        self._ops: Dict[Tuple[int, int, int, float, str], Tuple[torch.Tensor, torch.Tensor]] = {}

    def operators(self, h: int, w: int, size: int, sigma: float, device: torch.device):
        key = (h, w, size, float(sigma), str(device))
        if key not in self._ops:
            with torch.no_grad():
                rows = torch.zeros(h, 1, h, w)
                rows[torch.arange(h), 0, torch.arange(h), :] = 1.0  # basis map i: row i is ones
                cols = torch.zeros(w, 1, h, w)
                cols[torch.arange(w), 0, :, torch.arange(w)] = 1.0
                op_h = upsample_maps(rows.double(), size, sigma)[:, 0, :, 0].t().float()  # S x h
                op_w = upsample_maps(cols.double(), size, sigma)[:, 0, 0, :].t().float()  # S x w
            self._ops[key] = (op_h.contiguous().to(device), op_w.t().contiguous().to(device))
        return self._ops[key]

    def __call__(self, maps: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
        """N x 1 x h x w -> N x 1 x S x S, equal to ``upsample_maps(maps, size, sigma)``."""
        n, _, h, w = maps.shape
        op_h, op_w_t = self.operators(h, w, size, sigma, maps.device)
        return torch.matmul(torch.matmul(op_h, maps[:, 0]), op_w_t)[:, None]
