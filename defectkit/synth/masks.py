"""Anomaly masks and the target area they must stay inside.

* Perlin masks (DRAEM): thresholded rotated Perlin noise, resampled until the area
  is within stated bounds, so no generator ever returns an empty or whole-image mask.
* Geometric shapes (PRN): circle, rectangle, polygon.
* Target area: the object foreground (objects) or the whole image (textures),
  optionally cut by a random geometric shape (PRN's "TA").

All masks are float32 HxW in {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .io import resize_mask
from .perlin import random_perlin

SHAPES = ("circle", "rectangle", "polygon")


# -- Perlin masks ---------------------------------------------------------------------


@dataclass(frozen=True)
class PerlinMask:
    """DRAEM-style mask inside ``target``; area fraction of the target in [min_area, max_area].

    Draws are rejected until the area is in bounds; after ``max_tries`` the last
    noise is thresholded at the quantile that puts the area at the nearest bound,
    so the bounds hold for every returned mask.
    """

    threshold: float = 0.5
    min_area: float = 0.005
    max_area: float = 0.5
    min_scale_exp: int = 0
    max_scale_exp: int = 6
    max_tries: int = 50

    def __call__(self, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = target > 0.5
        n_target = int(target.sum())
        if n_target == 0:
            raise ValueError("empty target area")
        lo = max(1, int(np.ceil(self.min_area * n_target)))
        hi = max(lo, int(np.floor(self.max_area * n_target)))
        for _ in range(self.max_tries):
            noise = random_perlin(target.shape, rng, self.min_scale_exp, self.max_scale_exp)
            mask = (noise > self.threshold) & target
            if lo <= mask.sum() <= hi:
                return mask.astype(np.float32)
        k = int(np.clip(mask.sum(), lo, hi))
        return top_k_mask(noise, target, k)


def top_k_mask(score: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest-scoring pixels of ``target`` (ties broken by position)."""
    flat = np.where(target.ravel(), score.ravel().astype(np.float64), -np.inf)
    idx = np.argpartition(-flat, k - 1)[:k]
    out = np.zeros(flat.shape, np.float32)
    out[idx] = 1.0
    return out.reshape(score.shape)


# -- geometric shapes -----------------------------------------------------------------


def shape_mask(
    shape: tuple[int, int],
    kind: str,
    rng: np.random.Generator,
    size_range: tuple[float, float] = (0.1, 0.4),
    center=None,
) -> np.ndarray:
    """A filled circle, rectangle or polygon; its extent is a fraction ``size_range`` of the
    shorter side, centred at ``center`` (y, x) or at a random pixel."""
    h, w = shape
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")
    cy, cx = (rng.uniform(0, h), rng.uniform(0, w)) if center is None else center
    r = rng.uniform(*size_range) * min(h, w) / 2  # radius-like half extent
    im = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(im)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "rectangle":
        aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5)))
        hw, hh = r * np.sqrt(aspect), r / np.sqrt(aspect)
        a = rng.uniform(0, np.pi)
        corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        draw.polygon(
            [(cx + x * np.cos(a) - y * np.sin(a), cy + x * np.sin(a) + y * np.cos(a)) for x, y in corners], fill=1
        )
    else:  # star-shaped random polygon: sorted angles, jittered radii
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.5, 1.0, n)
        draw.polygon([(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radii, angles)], fill=1)
    return np.asarray(im, dtype=np.float32)


@dataclass(frozen=True)
class ShapeMask:
    """A geometric shape as the anomaly mask itself, centred on a target pixel, cut to the target."""

    kind: str = "circle"
    size_range: tuple[float, float] = (0.1, 0.4)
    max_tries: int = 20

    def __call__(self, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        target = target > 0.5
        ys, xs = np.nonzero(target)
        if len(ys) == 0:
            raise ValueError("empty target area")
        for _ in range(self.max_tries):
            i = int(rng.integers(len(ys)))
            mask = (shape_mask(target.shape, self.kind, rng, self.size_range, (ys[i] + 0.5, xs[i] + 0.5)) > 0) & target
            if mask.any():
                return mask.astype(np.float32)
        out = np.zeros(target.shape, np.float32)
        out[ys[i], xs[i]] = 1.0  # degenerate targets: one pixel rather than nothing
        return out


def make_mask(kind: str = "perlin", **kwargs):
    """Mask sampler by name: "perlin" or one of ``SHAPES``."""
    if kind == "perlin":
        return PerlinMask(**kwargs)
    if kind in SHAPES:
        return ShapeMask(kind, **kwargs)
    raise ValueError(f"unknown mask {kind!r}; choose from ('perlin',) + {SHAPES}")


# -- foreground / target area -----------------------------------------------------------


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centers)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between[:-1]))])


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return x * x + y * y <= radius * radius


def foreground_mask(
    image: np.ndarray,
    sigma: float = 2.0,
    min_fraction: float = 0.02,
    max_fraction: float = 0.98,
    min_separation: float = 0.85,
) -> np.ndarray:
    """Object foreground of one image, as bool HxW.

    Adaptive threshold: the background colour is the median of the image border,
    and pixels whose (blurred) colour distance to it exceeds Otsu's threshold are
    foreground; morphology (open, close, fill holes, largest component) cleans it.
    Returns all-True when no plausible object is found: Otsu's separability
    (between-class / total variance) below ``min_separation`` -- textures score
    0.6-0.8, objects on a plain background above 0.9 -- or an implausible area.
    """
    img = ndimage.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
    h, w = img.shape[:2]
    b = max(1, min(h, w) // 50)
    border = np.concatenate(
        [img[:b].reshape(-1, 3), img[-b:].reshape(-1, 3), img[:, :b].reshape(-1, 3), img[:, -b:].reshape(-1, 3)]
    )
    dist = np.linalg.norm(img - np.median(border, axis=0), axis=2)
    if dist.max() - dist.min() < 1e-6:
        return np.ones((h, w), bool)
    fg = dist > _otsu(dist)
    w0 = fg.mean()
    if w0 in (0.0, 1.0) or (dist[fg].mean() - dist[~fg].mean()) ** 2 * w0 * (1 - w0) < min_separation * dist.var():
        return np.ones((h, w), bool)
    r = max(1, min(h, w) // 64)
    fg = ndimage.binary_opening(fg, _disk(r))
    fg = ndimage.binary_closing(fg, _disk(2 * r), border_value=0)
    fg = ndimage.binary_fill_holes(fg)
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, labels, index=np.arange(1, n + 1))
        fg = labels == (1 + int(np.argmax(sizes)))
    if not (min_fraction <= fg.mean() <= max_fraction):
        return np.ones((h, w), bool)
    return fg


def estimate_foreground(images, vote: float = 0.5) -> np.ndarray:
    """A category-level foreground prior from normal images: pixels that are
    foreground in at least ``vote`` of them (for objects that do not move)."""
    masks = np.stack([foreground_mask(im) for im in images]).astype(np.float32)
    return ndimage.binary_fill_holes(masks.mean(0) >= vote)


@dataclass(frozen=True)
class TargetArea:
    """Where anomalies may go.

    ``foreground``: None = whole image (textures); "auto" = :func:`foreground_mask`
    of each image; or a fixed HxW mask (e.g. :func:`estimate_foreground`), resized
    to the image. ``shapes``: optional PRN target shapes; each call then cuts the
    foreground with one random shape (retrying until the cut is non-empty).
    """

    foreground: object = None
    shapes: tuple[str, ...] | None = None
    shape_size: tuple[float, float] = (0.3, 0.7)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        shape = image.shape[:2]
        if self.foreground is None:
            fg = np.ones(shape, bool)
        elif isinstance(self.foreground, str):
            if self.foreground != "auto":
                raise ValueError("foreground must be None, 'auto' or a mask")
            fg = foreground_mask(image)
        else:
            fg = resize_mask(np.asarray(self.foreground) > 0.5, shape)
        if not fg.any():
            fg = np.ones(shape, bool)
        if not self.shapes:
            return fg.astype(np.float32)
        return ShapeMask(str(rng.choice(list(self.shapes))), self.shape_size)(fg.astype(np.float32), rng)
