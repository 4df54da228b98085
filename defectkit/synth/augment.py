"""PRN's augmentations: Aug_1 (two colour operations) and Aug_2 (rotate/shear/translate).

Colour variants of seen defects and of normal images are what makes EA and HOA
more than copy-paste; the operation set is PRN's (section 3.4).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

COLOR_OPS = ("equalize", "solarize", "posterize", "sharpness", "autocontrast", "invert", "gamma")


def apply_color_op(image: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One colour operation with a random magnitude, uint8 in and out."""
    im = Image.fromarray(image)
    if op == "equalize":
        im = ImageOps.equalize(im)
    elif op == "solarize":
        im = ImageOps.solarize(im, threshold=int(rng.integers(32, 224)))
    elif op == "posterize":
        im = ImageOps.posterize(im, bits=int(rng.integers(2, 6)))
    elif op == "sharpness":
        im = ImageEnhance.Sharpness(im).enhance(float(rng.uniform(0.1, 3.0)))
    elif op == "autocontrast":
        im = ImageOps.autocontrast(im)
    elif op == "invert":
        im = ImageOps.invert(im)
    elif op == "gamma":
        g = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
        return lut[image]
    else:
        raise ValueError(f"unknown colour op {op!r}; choose from {COLOR_OPS}")
    return np.asarray(im, dtype=np.uint8)


def color_augment(
    image: np.ndarray, rng: np.random.Generator, n_ops: int = 2, ops: tuple[str, ...] = COLOR_OPS
) -> np.ndarray:
    """Aug_1: ``n_ops`` distinct operations drawn from ``ops``, applied in the drawn order."""
    out = image
    if n_ops <= 0:
        return out.copy()
    for op in rng.choice(list(ops), size=min(n_ops, len(ops)), replace=False):
        out = apply_color_op(out, str(op), rng)
    return out


def affine_patch(
    patch: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    rotate: tuple[float, float] = (-90.0, 90.0),
    shear: tuple[float, float] = (-20.0, 20.0),
    scale: tuple[float, float] = (0.8, 1.2),
) -> tuple[np.ndarray, np.ndarray]:
    """Aug_2 without the translation (placement does that): rotate, shear and scale a
    patch and its mask about the centre, on a canvas large enough to keep everything.

    With all ranges at identity the inputs are returned unchanged (pixel-exact).
    """
    angle = np.deg2rad(rng.uniform(*rotate))
    sh = np.deg2rad(rng.uniform(*shear))
    sc = rng.uniform(*scale)
    if angle == 0 and sh == 0 and sc == 1:
        return patch.copy(), mask.copy()
    # forward map A: rotation . shear . scale (x, y coordinates)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a = rot @ np.array([[1.0, np.tan(sh)], [0.0, 1.0]]) * sc
    h, w = mask.shape
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], float) - [w / 2, h / 2]
    mapped = corners @ a.T
    new_w, new_h = np.ceil(mapped.max(0) - mapped.min(0)).astype(int) + 1
    inv = np.linalg.inv(a)
    # PIL wants the inverse map output (x, y) -> input (x, y)
    c_out = np.array([new_w / 2, new_h / 2])
    c_in = np.array([w / 2, h / 2])
    offset = c_in - inv @ c_out
    coeffs = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    size = (int(new_w), int(new_h))
    out = Image.fromarray(patch).transform(size, Image.AFFINE, coeffs, resample=Image.BILINEAR)
    m = Image.fromarray((mask > 0.5).astype(np.uint8) * 255).transform(
        size, Image.AFFINE, coeffs, resample=Image.BILINEAR
    )
    return np.asarray(out, np.uint8), np.asarray(m) >= 128
