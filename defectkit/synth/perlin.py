"""Vectorised 2-D Perlin noise with rotation, the shape prior of DRAEM-style masks.

Rotation is applied to the sampling coordinates rather than to the rendered noise
image, so rotated noise has no empty corners and needs no interpolation.
"""

from __future__ import annotations

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin_noise(
    shape: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator, angle: float = 0.0
) -> np.ndarray:
    """Perlin noise of ``shape`` (h, w) with ``scale`` = (periods along y, along x).

    ``angle`` (degrees) rotates the lattice about the image centre. Values lie in
    about [-1, 1] (the raw gradient noise times sqrt 2, as in DRAEM), float32.
    """
    h, w = shape
    sy, sx = float(scale[0]), float(scale[1])
    ys = (np.arange(h) + 0.5) / h * sy
    xs = (np.arange(w) + 0.5) / w * sx
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    if angle:
        a = np.deg2rad(angle)
        cy, cx = sy / 2, sx / 2
        # rotate in pixel-proportional units so lattice cells stay square when sy/h == sx/w
        ry, rx = (yy - cy) * h / sy, (xx - cx) * w / sx
        ry, rx = np.cos(a) * ry - np.sin(a) * rx, np.sin(a) * ry + np.cos(a) * rx
        yy, xx = ry * sy / h + cy, rx * sx / w + cx
    yy = yy - np.floor(yy.min())
    xx = xx - np.floor(xx.min())
    gy, gx = int(np.floor(yy.max())) + 2, int(np.floor(xx.max())) + 2
    theta = rng.uniform(0.0, 2 * np.pi, size=(gy, gx))
    grad_y, grad_x = np.sin(theta), np.cos(theta)

    iy, ix = np.floor(yy).astype(np.int64), np.floor(xx).astype(np.int64)
    fy, fx = yy - iy, xx - ix

    def corner(dy: int, dx: int) -> np.ndarray:
        return grad_y[iy + dy, ix + dx] * (fy - dy) + grad_x[iy + dy, ix + dx] * (fx - dx)

    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return (np.sqrt(2.0) * (top * (1 - uy) + bottom * uy)).astype(np.float32)


def random_perlin(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale_exp: int = 0,
    max_scale_exp: int = 6,
    rotate: bool = True,
) -> np.ndarray:
    """DRAEM's draw: scales 2**k, k ~ U{min..max-1} per axis, rotation ~ U(-90, 90) degrees."""
    sy = 2 ** int(rng.integers(min_scale_exp, max_scale_exp))
    sx = 2 ** int(rng.integers(min_scale_exp, max_scale_exp))
    angle = float(rng.uniform(-90.0, 90.0)) if rotate else 0.0
    return perlin_noise(shape, (sy, sx), rng, angle)
