"""Anomaly sources: what fills the mask.

A *source* maps ``(image, rng)`` to an HxWx3 uint8 image of the same size; the
generator then blends it through the mask. Texture images (DRAEM / PRN's HEA /
RealNet-DTD), grid-shuffled augmented copies of the normal image (PRN's HOA) and
cached SDAS samples are sources. Seen defects (PRN's EA), CutPaste and confetti
bring their own masks, so they are generators (see :mod:`.generators`) built on the
helpers here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from .augment import color_augment
from .io import find_images, load_image, load_mask, resize_image


@lru_cache(maxsize=512)
def _cached_texture(path: str, h: int, w: int) -> np.ndarray:
    image = load_image(path, (h, w))
    image.setflags(write=False)
    return image


class TextureSource:
    """Random texture image from a folder (e.g. DTD), resized to the image, colour-augmented
    (PRN applies Aug_1 to DTD textures for HEA)."""

    def __init__(self, folder, color_ops: int = 2):
        self.files = find_images(folder)
        if not self.files:
            raise FileNotFoundError(f"no texture images under {folder}")
        self.color_ops = color_ops

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        path = self.files[int(rng.integers(len(self.files)))]
        texture = _cached_texture(str(path), *image.shape[:2])
        return color_augment(texture, rng, self.color_ops)


def shuffle_tiles(image: np.ndarray, grid: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut the image into ``grid x grid`` equal tiles and permute them.

    Returns (shuffled, perm) with tile k of the output = tile perm[k] of the input
    (row-major). When the size is not a multiple of ``grid``, the remainder strip
    at the bottom/right is left in place.
    """
    h, w = image.shape[:2]
    th, tw = h // grid, w // grid
    if th == 0 or tw == 0:
        raise ValueError(f"image {h}x{w} too small for a {grid}x{grid} grid")
    core = image[: th * grid, : tw * grid]
    tiles = core.reshape(grid, th, grid, tw, -1).transpose(0, 2, 1, 3, 4).reshape(grid * grid, th, tw, -1)
    perm = rng.permutation(grid * grid)
    shuffled = tiles[perm].reshape(grid, grid, th, tw, -1).transpose(0, 2, 1, 3, 4).reshape(th * grid, tw * grid, -1)
    out = image.copy()
    out[: th * grid, : tw * grid] = shuffled
    return out, perm


class HOASource:
    """PRN's homologous source: the normal image colour-augmented (Aug_1), cut into an
    8x8 grid and shuffled, so the anomaly has the object's own colours but wrong structure."""

    def __init__(self, grid: int = 8, color_ops: int = 2):
        self.grid = grid
        self.color_ops = color_ops

    def sample(self, image: np.ndarray, rng: np.random.Generator):
        """(shuffled source, augmented image, tile permutation)."""
        augmented = color_augment(image, rng, self.color_ops)
        shuffled, perm = shuffle_tiles(augmented, self.grid, rng)
        return shuffled, augmented, perm

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.sample(image, rng)[0]


class SDASSource:
    """A random cached SDAS sample (see :class:`.sdas.SamplePool`), upsampled to the image."""

    def __init__(self, pool):
        self.pool = pool

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return resize_image(self.pool.draw(rng), image.shape[:2])


# -- pasting helpers (EA, CutPaste) -------------------------------------------------------


def paste(image: np.ndarray, patch: np.ndarray, patch_mask: np.ndarray, center) -> tuple[np.ndarray, np.ndarray]:
    """Place ``patch`` with its centre at ``center`` (y, x) on a copy of ``image``.

    Returns (canvas, mask) where mask is the pasted ``patch_mask`` clipped to the
    image; the canvas equals the image wherever the mask is 0.
    """
    h, w = image.shape[:2]
    ph, pw = patch_mask.shape
    top, left = int(center[0]) - ph // 2, int(center[1]) - pw // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph, h), min(left + pw, w)
    canvas = image.copy()
    mask = np.zeros((h, w), bool)
    if y1 <= y0 or x1 <= x0:
        return canvas, mask
    sub_mask = patch_mask[y0 - top : y1 - top, x0 - left : x1 - left] > 0.5
    sub = patch[y0 - top : y1 - top, x0 - left : x1 - left]
    region = canvas[y0:y1, x0:x1]
    region[sub_mask] = sub[sub_mask]
    mask[y0:y1, x0:x1] = sub_mask
    return canvas, mask


def random_target_pixel(target: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    ys, xs = np.nonzero(target > 0.5)
    i = int(rng.integers(len(ys)))
    return int(ys[i]), int(xs[i])


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.1) -> np.ndarray:
    """CutPaste's jitter: brightness, contrast and saturation factors in 1 +- strength."""
    im = Image.fromarray(image)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhancer(im).enhance(float(rng.uniform(1 - strength, 1 + strength)))
    return np.asarray(im, np.uint8)


def crop_to_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of ``mask`` in image and mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("empty defect mask")
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return image[sl], mask[sl]


def seen_defects_from_dir(category_dir, n: int = 10, size=None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to ``n`` (image, mask) pairs from an MVTec-style test set, round-robin over defect
    types (PRN's supervised protocol uses 10). For previews and experiments; methods should
    pass the defects of their own training split instead."""
    root = Path(category_dir)
    rng = np.random.default_rng(seed)
    per_type = []
    for d in sorted(p for p in (root / "test").iterdir() if p.is_dir() and p.name != "good"):
        files = find_images(d)
        files = [files[i] for i in rng.permutation(len(files))]
        per_type.append([(f, root / "ground_truth" / d.name / f"{f.stem}_mask.png") for f in files])
    chosen = []
    while len(chosen) < n and any(per_type):
        for files in per_type:
            if files and len(chosen) < n:
                chosen.append(files.pop(0))
    return [(load_image(f, size), load_mask(m, size)) for f, m in chosen if m.exists()]
