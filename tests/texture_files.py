"""A folder of random-noise texture images, what the DTD-based generators read in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image


def write_textures(folder: Path, shape: Tuple[int, int] = (48, 48), seed: int = 0, n: int = 3) -> Path:
    """``n`` random RGB PNGs of ``shape`` (height, width) in ``folder`` (created) -> ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"t{i}.png")
    return folder
