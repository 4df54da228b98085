"""RealNet's anomaly synthesis: where the textures / SDAS samples come from, and the image pools.

Training anomalies are made once per fit (a fixed pool, so their frozen features are
computed once and every epoch only runs the trainable parts). Sources: DTD textures
(RealNet-DTD, the default on a CPU) or SDAS samples from a trained diffusion model
(``defectkit.synth.sdas``), blended through Perlin masks on the foreground with opacity
U[0.5, 1] (supp. B, eq. 3).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ...synth import make_generator

OPACITY = (0.5, 1.0)
SDAS_MODEL_ENV = "DEFECTKIT_SDAS_MODEL"


def resolve_sdas_model(sdas_model: Optional[str]) -> Path:
    path = sdas_model or os.environ.get(SDAS_MODEL_ENV)
    if not path or not Path(path).is_file():
        raise FileNotFoundError(
            "RealNet with synthesis='sdas' needs a trained SDAS model: pass sdas_model=FILE or set "
            f"${SDAS_MODEL_ENV} (train one with `python -m defectkit.synth.sdas.train --data <category> "
            f"--out <file>`); got {path!r}"
        )
    return Path(path).resolve()


def make_synthesizer(kind: str, textures: Optional[Path] = None, sdas_pool=None, foreground="auto"):
    """The training generator: DTD or SDAS source, Perlin mask on the foreground, opacity U[0.5, 1]."""
    if kind == "dtd":
        return make_generator("dtd", textures=str(textures), opacity=OPACITY, foreground=foreground)
    if kind == "sdas":
        return make_generator("sdas", pool=sdas_pool, opacity=OPACITY, foreground=foreground)
    raise ValueError(f"synthesis must be 'dtd' or 'sdas', got {kind!r}")


def synthesize_pool(
    normals: Sequence[np.ndarray], count: int, generator, seed: int, min_pixels: int = 4
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` synthetic anomalies from ``normals`` (cycled in a seeded order).

    Returns (images N x 3 x S x S float in [0, 1], masks N x S x S float, source index N).
    The mask keeps only what the blend changed; a draw that changes fewer than
    ``min_pixels`` pixels is redrawn (up to 10 times).
    """
    rng = np.random.default_rng(seed)
    n = len(normals)
    order = np.concatenate([rng.permutation(n) for _ in range(count // n + 1)])[:count]
    images, masks = [], []
    for src in order:
        base = normals[int(src)]
        for _ in range(10):
            res = generator(base, rng)
            changed = np.abs(res.image.astype(np.int16) - base.astype(np.int16)).max(axis=2) > 0
            mask = res.mask * changed
            if (mask > 0.5).sum() >= min_pixels:
                break
        images.append(torch.from_numpy(np.ascontiguousarray(res.image)).permute(2, 0, 1))
        masks.append(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)))
    return (
        torch.stack(images).float() / 255.0,
        torch.stack(masks),
        torch.as_tensor(order, dtype=torch.long),
    )
