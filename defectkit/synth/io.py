"""Image I/O for synthesis: thin wrappers over ``defectkit.data.images``.

Synthesis works at one square working size, so every image and mask is read and
resized here, once, instead of in each generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from defectkit.data.images import is_image_file, read_image, read_mask


def _wh(size) -> tuple[int, int]:
    """(width, height) for PIL from an int (square) or an (h, w) pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(w), int(h)


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """Resize an HxWx3 uint8 image (bicubic, antialiased when shrinking)."""
    w, h = _wh(size)
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BICUBIC))


def resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """Resize a float or bool HxW mask, keeping its dtype (bilinear, then re-binarised if bool)."""
    w, h = _wh(size)
    if mask.shape[:2] == (h, w):
        return mask
    out = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.BILINEAR))
    return out >= 0.5 if mask.dtype == bool else out.astype(mask.dtype)


def load_image(path, size=None) -> np.ndarray:
    """Read an RGB uint8 image, optionally resized to ``size`` (int = square)."""
    image = read_image(path)
    return image if size is None else resize_image(image, size)


def load_mask(path, size=None) -> np.ndarray:
    """Read a binary mask as bool, optionally resized to ``size`` (int = square)."""
    return read_mask(path, size=None if size is None else _wh(size)[::-1])


def find_images(folder) -> list[Path]:
    """All image files under ``folder``, recursively (texture sets nest classes in
    sub-folders), sorted so seeded draws are the same everywhere."""
    return sorted(p for p in Path(folder).rglob("*") if is_image_file(p))
