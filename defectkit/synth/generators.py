"""Anomaly generators: ``gen(image, rng) -> SynthResult(image, mask)``.

Every generator follows one recipe -- target area, mask, source, blend -- and draws
all randomness from the ``rng`` it is given, so a seed fixes the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .augment import affine_patch, color_augment
from .blend import blend
from .io import resize_image, resize_mask
from .masks import TargetArea, make_mask
from .sources import color_jitter, crop_to_mask, paste, random_target_pixel


@dataclass(frozen=True)
class SynthResult:
    """A synthetic anomaly: uint8 HxWx3 image and float32 HxW mask in [0, 1]."""

    image: np.ndarray
    mask: np.ndarray


def _opacity(opacity) -> tuple[float, float]:
    lo, hi = (opacity, opacity) if np.isscalar(opacity) else opacity
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"opacity range must satisfy 0 <= lo <= hi <= 1, got {opacity}")
    return float(lo), float(hi)


def _target(target) -> TargetArea:
    return target if isinstance(target, TargetArea) else TargetArea(foreground=target)


class BlendGenerator:
    """Mask (Perlin or shape) inside the target area, filled from ``source`` by the blend formula.

    ``source(image, rng) -> uint8 image``; ``mask``: "perlin", "circle", "rectangle",
    "polygon" or a callable ``(target, rng) -> mask``; ``target``: a
    :class:`TargetArea` or its ``foreground`` argument (None / "auto" / mask).
    """

    def __init__(
        self,
        source,
        mask="perlin",
        target=None,
        opacity=(0.5, 1.0),
        blend: str = "alpha",
        mask_kwargs: dict | None = None,
    ):
        self.source = source
        self.mask = make_mask(mask, **(mask_kwargs or {})) if isinstance(mask, str) else mask
        self.target = _target(target)
        self.opacity = _opacity(opacity)
        self.blend = blend

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> SynthResult:
        target = self.target(image, rng)
        mask = self.mask(target, rng)
        source = self.source(image, rng)
        b = rng.uniform(*self.opacity)
        return SynthResult(blend(image, source, mask, b, self.blend), mask.astype(np.float32))


class ExtendedAnomaly:
    """PRN's EA: a seen defect cut out with its mask, colour-augmented (Aug_1: two of
    equalize/solarize/posterize/sharpness/autocontrast/invert/gamma), rotated / sheared /
    scaled (Aug_2) and placed at a random target pixel; re-drawn until it overlaps the
    target area (by at least ``min_overlap`` of its pixels when possible), then cut by it.

    ``defects``: list of (image uint8 HxWx3, mask bool HxW), resized to each image.
    """

    def __init__(
        self,
        defects,
        target=None,
        opacity=(0.2, 1.0),
        blend: str = "alpha",
        color_ops: int = 2,
        rotate=(-90.0, 90.0),
        shear=(-20.0, 20.0),
        scale=(0.8, 1.2),
        min_overlap: float = 0.25,
        max_tries: int = 20,
    ):
        self.defects = [(np.asarray(img), np.asarray(m) > 0.5) for img, m in defects]
        if not self.defects or not all(m.any() for _, m in self.defects):
            raise ValueError("EA needs at least one defect with a non-empty mask")
        self.target = _target(target)
        self.opacity = _opacity(opacity)
        self.blend = blend
        self.color_ops = color_ops
        self.rotate, self.shear, self.scale = rotate, shear, scale
        self.min_overlap, self.max_tries = min_overlap, max_tries

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> SynthResult:
        target = self.target(image, rng) > 0.5
        d_img, d_mask = self.defects[int(rng.integers(len(self.defects)))]
        if d_img.shape[:2] != image.shape[:2]:
            d_img, d_mask = resize_image(d_img, image.shape[:2]), resize_mask(d_mask, image.shape[:2])
            if not d_mask.any():
                raise ValueError("defect mask vanished when resized; use a larger image size")
        patch, patch_mask = crop_to_mask(d_img, d_mask)
        patch = color_augment(patch, rng, self.color_ops)
        best = None
        for _ in range(self.max_tries):
            p, m = affine_patch(patch, patch_mask, rng, self.rotate, self.shear, self.scale)
            canvas, placed = paste(image, p, m, random_target_pixel(target, rng))
            mask = placed & target
            inside = mask.sum() / max(1, m.sum())
            if best is None or inside > best[0]:
                best = (inside, canvas, mask)
            if inside >= self.min_overlap:
                break
        inside, canvas, mask = best
        if not mask.any():  # pragma: no cover - only with degenerate targets
            raise RuntimeError("could not place the defect inside the target area")
        b = rng.uniform(*self.opacity)
        mask = mask.astype(np.float32)
        return SynthResult(blend(image, canvas, mask, b, self.blend), mask)


class CutPaste:
    """CutPaste (Li et al. 2021): a patch ("patch": 2-15 % of the area, aspect 0.3-3.3) or a
    thin rotated "scar" (2-16 x 10-25 px at 256 px) cut from the image, colour-jittered and
    pasted with its centre on a random target pixel; the mask is the pasted region in the target."""

    def __init__(
        self,
        kind: str = "patch",
        target=None,
        opacity=1.0,
        blend: str = "alpha",
        area=(0.02, 0.15),
        aspect=(0.3, 1 / 0.3),
        scar_width=(2, 16),
        scar_length=(10, 25),
        scar_rotate=(-45.0, 45.0),
        jitter: float = 0.1,
    ):
        if kind not in ("patch", "scar"):
            raise ValueError("CutPaste kind must be 'patch' or 'scar'")
        self.kind = kind
        self.target = _target(target)
        self.opacity = _opacity(opacity)
        self.blend = blend
        self.area, self.aspect = area, aspect
        self.scar_width, self.scar_length, self.scar_rotate = scar_width, scar_length, scar_rotate
        self.jitter = jitter

    def _patch_size(self, h: int, w: int, rng) -> tuple[int, int]:
        if self.kind == "patch":
            area = rng.uniform(*self.area) * h * w
            aspect = np.exp(rng.uniform(np.log(self.aspect[0]), np.log(self.aspect[1])))
            ph, pw = np.sqrt(area / aspect), np.sqrt(area * aspect)
        else:
            k = min(h, w) / 256.0
            pw, ph = rng.uniform(*self.scar_width) * k, rng.uniform(*self.scar_length) * k
        return int(np.clip(round(ph), 1, h)), int(np.clip(round(pw), 1, w))

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> SynthResult:
        target = self.target(image, rng) > 0.5
        h, w = image.shape[:2]
        ph, pw = self._patch_size(h, w, rng)
        y0, x0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        patch = color_jitter(image[y0 : y0 + ph, x0 : x0 + pw], rng, self.jitter)
        patch_mask = np.ones((ph, pw), bool)
        if self.kind == "scar":
            patch, patch_mask = affine_patch(patch, patch_mask, rng, self.scar_rotate, (0.0, 0.0), (1.0, 1.0))
        canvas, placed = paste(image, patch, patch_mask, random_target_pixel(target, rng))
        mask = (placed & target).astype(np.float32)
        if not mask.any():  # centre is a target pixel, so only a vanished scar gets here
            mask[random_target_pixel(target, rng)] = 1.0
        b = rng.uniform(*self.opacity)
        return SynthResult(blend(image, canvas, mask, b, self.blend), mask)


class Confetti:
    """FCDD's confetti noise: a few rectangular blobs (random size, rotation), each shifting
    the colour of the pixels under it by a random RGB offset (additive, clipped)."""

    def __init__(
        self,
        target=None,
        opacity=1.0,
        blend: str = "alpha",
        n_blobs=(1, 8),
        blob_size=(0.02, 0.1),
        max_offset: float = 200.0,
    ):
        self.target = _target(target)
        self.opacity = _opacity(opacity)
        self.blend = blend
        self.n_blobs, self.blob_size, self.max_offset = n_blobs, blob_size, max_offset

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> SynthResult:
        target = self.target(image, rng) > 0.5
        h, w = image.shape[:2]
        source = image.astype(np.float32)
        mask = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(self.n_blobs[0], self.n_blobs[1] + 1))):
            bh, bw = (max(1, int(round(rng.uniform(*self.blob_size) * s))) for s in (h, w))
            blob = np.ones((bh, bw), bool)
            _, blob = affine_patch(np.zeros((bh, bw, 3), np.uint8), blob, rng, (-45.0, 45.0), (0.0, 0.0), (1.0, 1.0))
            _, placed = paste(image, np.zeros(blob.shape + (3,), np.uint8), blob, random_target_pixel(target, rng))
            placed &= ~mask  # each pixel is shifted once
            source[placed] += rng.uniform(-self.max_offset, self.max_offset, 3).astype(np.float32)
            mask |= placed
        mask &= target
        if not mask.any():
            mask[random_target_pixel(target, rng)] = True
        b = rng.uniform(*self.opacity)
        mask = mask.astype(np.float32)
        return SynthResult(blend(image, np.clip(source, 0, 255), mask, b, self.blend), mask)


class Choice:
    """One of several generators per call (e.g. PRN's SA = HEA or HOA; MLFF = confetti or CutPaste)."""

    def __init__(self, generators, weights=None):
        self.generators = list(generators)
        w = np.ones(len(self.generators)) if weights is None else np.asarray(weights, float)
        self.p = w / w.sum()

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> SynthResult:
        return self.generators[int(rng.choice(len(self.generators), p=self.p))](image, rng)
