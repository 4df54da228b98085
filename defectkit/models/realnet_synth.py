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
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..synth import Choice, make_generator

OPACITY = (0.5, 1.0)
TEXTURE_ENV_VARS = ("DEFECTKIT_TEXTURES", "DEFECTKIT_DTD_DIR")
SDAS_MODEL_ENV = "DEFECTKIT_SDAS_MODEL"


def default_texture_candidates() -> List[Path]:
    """$DEFECTKIT_TEXTURES, $DEFECTKIT_DTD_DIR, ../shared/data/dtd_subset (cwd), and beside the repo."""
    out = [Path(os.environ[v]) for v in TEXTURE_ENV_VARS if os.environ.get(v)]
    out.append(Path("../shared/data/dtd_subset"))
    out.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "dtd_subset")
    return out


def resolve_textures(textures: Optional[str]) -> Path:
    """The texture folder to use, or a clear error naming what was tried."""
    candidates = [Path(textures)] if textures else default_texture_candidates()
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    raise FileNotFoundError(
        "RealNet with synthesis='dtd' needs a folder of texture images (e.g. DTD): pass "
        f"textures=DIR or set {' / '.join('$' + v for v in TEXTURE_ENV_VARS)}; tried: "
        + ", ".join(str(c) for c in candidates)
    )


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


def make_validation_synthesizer(train_generator, foreground="auto"):
    """Validation anomalies: the training synthesis, CutPaste and CutPaste-scar in equal parts,
    so the epoch is not chosen only for the kind of anomaly the model was trained on."""
    return Choice([
        train_generator,
        make_generator("cutpaste", foreground=foreground),
        make_generator("cutpaste_scar", foreground=foreground),
    ])


def to_uint8(images: torch.Tensor) -> List[np.ndarray]:
    """N x 3 x S x S in [0, 1] -> list of S x S x 3 uint8 arrays."""
    arr = (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)


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
