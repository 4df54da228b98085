"""The one conversion between float image tensors and uint8 arrays.

Models work on float tensors in [0, 1]; synthesis generators, Pillow and overlays work
on uint8 HxWx3 arrays. Rounding the same way everywhere keeps a synthetic image that
goes through both worlds identical, whichever method made it.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W (or 3 x H x W) float in [0, 1] -> N x H x W x 3 (or H x W x 3) uint8, rounded."""
    arr = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1) if arr.ndim == 4 else arr.permute(1, 2, 0)
    return np.ascontiguousarray(arr.cpu().numpy())


def from_uint8(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 (or H x W x 3) uint8 -> N x 3 x H x W (or 3 x H x W) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    return t.float() / 255.0
