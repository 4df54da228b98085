"""Preview grids: what a model will learn from, at a glance.

Four rows -- normal image, synthetic image, mask, overlay (mask in red over the
synthetic image) -- and one column per example.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_write_bytes
from .io import resize_image, resize_mask


def overlay(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.5) -> np.ndarray:
    """The mask tinted over the image (uint8)."""
    m = (mask.astype(np.float32) * alpha)[..., None]
    return np.clip(image * (1 - m) + np.asarray(color, np.float32) * m, 0, 255).astype(np.uint8)


def preview_grid(images, masks, results, cell: int = 128, pad: int = 2) -> Image.Image:
    """Grid with rows normal / synthetic / mask / overlay, one column per example.

    ``images``: the normal inputs; ``masks``: the anomaly masks (HxW in [0, 1]);
    ``results``: the synthetic images (uint8 HxWx3), or SynthResult objects (then
    ``masks`` may be None).
    """
    results = list(results)
    if masks is None:
        masks = [r.mask for r in results]
    results = [getattr(r, "image", r) for r in results]
    n = len(results)
    grid = np.full((4 * cell + 5 * pad, n * cell + (n + 1) * pad, 3), 255, np.uint8)
    for j, (normal, mask, synth) in enumerate(zip(images, masks, results)):
        normal, synth = resize_image(normal, cell), resize_image(synth, cell)
        m = np.clip(resize_mask(np.asarray(mask, np.float32), cell), 0, 1)
        cells = [normal, synth, np.repeat((m[..., None] * 255).astype(np.uint8), 3, axis=2), overlay(synth, m)]
        x = pad + j * (cell + pad)
        for i, c in enumerate(cells):
            y = pad + i * (cell + pad)
            grid[y : y + cell, x : x + cell] = c
    return Image.fromarray(grid)


def save_preview(grid: Image.Image, path, max_bytes: int | None = 300_000) -> int:
    """Save as PNG; if larger than ``max_bytes``, as a 256-colour palette PNG. Returns bytes written."""
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=True)
    if max_bytes is not None and buf.tell() > max_bytes:
        buf = io.BytesIO()
        grid.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, format="PNG", optimize=True
        )
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return len(data)
