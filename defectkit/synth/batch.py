"""Generators applied to float image tensors, the form models hold their images in.

The generators work on one uint8 HxWx3 image at a time; training and validation code
holds N x 3 x S x S float tensors. This is the one bridge between the two.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

from ..utils.images import to_uint8


def synthesise(
    images: torch.Tensor, sources: Sequence[int], generator, seed: int, as_uint8: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Anomalies made from ``images[sources]`` with one seeded stream -> (K x 3 x S x S float, K x S x S float masks).

    ``as_uint8``: the anomalies as the generators return them, uint8 (a quarter of the float
    size, for callers that hold many); ``x.float() / 255.0`` is then exactly the float result."""
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i in sources:
        res = generator(to_uint8(images[i]), rng)
        pixels = torch.from_numpy(np.ascontiguousarray(res.image)).permute(2, 0, 1)
        if as_uint8 and pixels.dtype != torch.uint8:
            raise TypeError(f"as_uint8 needs uint8 anomalies, but {generator!r} returned {res.image.dtype}")
        out.append(pixels if as_uint8 else pixels.float() / 255.0)
        masks.append(torch.from_numpy(np.asarray(res.mask, dtype=np.float32)))
    if not out:
        s = images.shape[-1]
        return images.new_zeros(0, 3, s, s, dtype=torch.uint8 if as_uint8 else images.dtype), images.new_zeros(0, s, s)
    return torch.stack(out), torch.stack(masks)
