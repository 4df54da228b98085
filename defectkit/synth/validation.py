"""Synthetic anomalies for the validation split: the only "defects" model selection ever sees.

Every trained method chooses its epoch on held-out normal training images plus anomalies
made from them here (docs/protocol.md#validation-split), never on test images. The makers:

* :func:`builtin_anomalies`: a self-contained mix of blended smooth-noise blobs, CutPaste
  patches and scars (SimpleNet's ``val_kinds=("builtin",)`` and PRN);
* :func:`library_anomalies`: generators of :mod:`defectkit.synth` by name, keeping only the
  visibly changed pixels (SimpleNet's default);
* :func:`mixed_generator`: the training synthesis, CutPaste and CutPaste-scar in equal parts
  (RealNet), so the epoch is not chosen only for the kind the model was trained on;
* :func:`masked_anomalies`: any generator applied once per source image, draws that changed
  nothing are not anomalies (MLFF).

Everything is deterministic in its seed.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.images import to_uint8
from .batch import synthesise
from .generators import Choice
from .registry import make_generator

#: a validation anomaly keeps the pixels that changed by more than this (in [0, 1] units)
VISIBLE_CHANGE = 0.05


def _rect(rng: np.random.Generator, size: int, area: Tuple[float, float]) -> Tuple[int, int]:
    a = rng.uniform(*area) * size * size
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    h = int(round(min(size - 2, max(2, math.sqrt(a * aspect)))))
    w = int(round(min(size - 2, max(2, math.sqrt(a / aspect)))))
    return h, w


def _colour_jitter(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and per-channel shifts, as CutPaste's ColorJitter(0.1) roughly does."""
    mean = patch.mean(axis=(1, 2), keepdims=True)
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-0.15, 0.15)
    shift = rng.uniform(-0.1, 0.1, size=(3, 1, 1))
    return np.clip((patch - mean) * contrast + mean + brightness + shift, 0.0, 1.0)


def _segment_mask(size: int, p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = p1 - p0
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
    return dist <= width / 2.0


def smooth_noise_mask(size: int, rng: np.random.Generator, area: Tuple[float, float] = (0.005, 0.06)) -> np.ndarray:
    """A Perlin-like blob mask: octaves of bilinearly upsampled grid noise, thresholded.

    The threshold is the quantile that leaves a random fraction ``area`` of the image, so the
    mask is one or a few irregular blobs whose size does not depend on the noise draw.
    """
    noise = np.zeros((size, size), dtype=np.float32)
    res = int(rng.choice([2, 4, 8]))
    for octave in range(3):
        cells = res * 2**octave
        grid = torch.from_numpy(rng.standard_normal((1, 1, cells + 1, cells + 1)).astype(np.float32))
        up = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)[0, 0].numpy()
        noise += up / 2**octave
    threshold = np.quantile(noise, 1.0 - rng.uniform(*area))
    return noise > threshold


def _grid_shuffle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut a 3 x S x S image into g x g tiles (g in 2, 4, 8) and shuffle them."""
    size = image.shape[-1]
    g = int(rng.choice([2, 4, 8]))
    t = size // g
    if t == 0:
        return image
    tiles = [image[:, i * t : (i + 1) * t, j * t : (j + 1) * t] for i in range(g) for j in range(g)]
    order = rng.permutation(len(tiles))
    out = image.copy()
    for k, src in enumerate(order):
        i, j = divmod(k, g)
        out[:, i * t : (i + 1) * t, j * t : (j + 1) * t] = tiles[src]
    return out


def _one_anomaly(kind: str, img: np.ndarray, other: np.ndarray, rng: np.random.Generator):
    size = img.shape[-1]
    img = img.copy()
    mask = np.zeros((size, size), dtype=bool)
    if kind == "blend":
        mask = smooth_noise_mask(size, rng)
        source = _colour_jitter(_grid_shuffle(other, rng), rng)
        opacity = rng.uniform(0.2, 1.0)
        img = np.where(mask[None], (1 - opacity) * img + opacity * source, img)
    elif kind == "patch":
        h, w = _rect(rng, size, (0.005, 0.04))
        sy, sx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        ty, tx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        img[:, ty : ty + h, tx : tx + w] = _colour_jitter(other[:, sy : sy + h, sx : sx + w], rng)
        mask[ty : ty + h, tx : tx + w] = True
    else:
        p0 = rng.uniform(0.1, 0.9, size=2) * size
        angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.3) * size
        p1 = np.clip(p0 + length * np.array([math.sin(angle), math.cos(angle)]), 0, size - 1)
        mask = _segment_mask(size, p0, p1, max(1.5, rng.uniform(0.02, 0.05) * size))
        shift = rng.integers(-size // 4, size // 4 + 1, size=2)
        filler = _colour_jitter(np.roll(other, tuple(int(s) for s in shift), axis=(1, 2)), rng)
        img = np.where(mask[None], filler, img)
    return img, mask


def builtin_anomalies(
    images: torch.Tensor, per_image: int = 2, seed: int = 0, change_threshold: float = 0.05
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Synthetic anomalies for the validation split, made from held-out normal images only.

    A minimal, self-contained version of the project's image-space synthesis (docs/methods/shared.md),
    used only to choose the epoch and the weights kept -- never to train.
    Outputs cycle through three kinds:

    * ``blend``: a Perlin-like smooth-noise mask (0.5-6 % of the image) where the image is
      blended, ``out = (1 - b M) I + b M S`` with opacity b ~ U(0.2, 1), with a source S that
      is a grid-shuffled, colour-jittered copy of another held-out image;
    * ``patch`` (CutPaste): a rectangle (0.5-4 % of the image) cut from another held-out
      image at another place, colour-jittered, pasted at a random place;
    * ``scar`` (CutPaste-scar): a thin segment (2-5 % of the side wide) filled with a
      colour-jittered, shifted copy of another image.

    The mask keeps only pixels that visibly changed (some channel by more than
    ``change_threshold``), so e.g. background pasted onto background is not called an
    anomaly; draws that change fewer than 0.1 % of the pixels are redrawn.

    ``images``: N x 3 x S x S in [0, 1]. Returns ``(anomalies, masks)`` of shapes
    ``N*per_image x 3 x S x S`` and ``N*per_image x S x S`` (bool). Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    src = images.detach().cpu().numpy().astype(np.float32)
    n, _, size, _ = src.shape
    out, masks = [], []
    kinds = ("blend", "patch", "blend", "scar")
    min_pixels = max(4, int(0.001 * size * size))
    for k in range(n * per_image):
        i = k % n
        kind = kinds[k % len(kinds)]
        for _attempt in range(20):
            img, mask = _one_anomaly(kind, src[i], src[int(rng.integers(n))] if n > 1 else src[i], rng)
            # the anomaly is where the image visibly changed (e.g. background pasted on background is not)
            mask &= np.abs(img - src[i]).max(axis=0) > change_threshold
            if mask.sum() >= min_pixels:
                break
        else:  # could not draw a visible anomaly (e.g. a flat image): invert a small square
            img, mask = src[i].copy(), np.zeros((size, size), dtype=bool)
            r = max(1, size // 16)
            mask[size // 2 - r : size // 2 + r, size // 2 - r : size // 2 + r] = True
            img = np.where(mask[None], 1.0 - img, img)
        out.append(img.astype(np.float32))
        masks.append(mask)
    return torch.from_numpy(np.stack(out)), torch.from_numpy(np.stack(masks))


def library_anomalies(
    images: torch.Tensor,
    per_image: int,
    kinds: Union[str, Sequence[str]],
    seed: int,
    change_threshold: float = VISIBLE_CHANGE,
) -> Tuple[torch.Tensor, torch.Tensor, str]:
    """``per_image`` anomalies of the library generators ``kinds`` per image -> (images, bool masks, source).

    The mask keeps only visibly changed pixels (> ``change_threshold`` in some channel):
    background pasted on background is no defect. A draw that changes almost nothing is
    redrawn (20 tries), then that anomaly is skipped.
    """
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    gen = make_generator(kinds if len(kinds) > 1 else kinds[0])
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for i in np.repeat(np.arange(len(images)), per_image):
        normal = to_uint8(images[i])
        for _attempt in range(20):
            res = gen(normal, rng)
            anomalous = np.asarray(res.image, dtype=np.float32) / 255.0
            change = np.abs(anomalous - normal.astype(np.float32) / 255.0).max(axis=2)
            mask = (np.asarray(res.mask) > 0.5) & (change > change_threshold)
            if mask.sum() >= max(4, int(0.001 * mask.size)):
                break
        else:
            continue
        out.append(torch.from_numpy(np.ascontiguousarray(anomalous)).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask))
    if not out:
        raise RuntimeError(f"the validation generators {kinds} produced no visible anomaly")
    return torch.stack(out), torch.stack(masks), "defectkit.synth:" + "+".join(kinds)


def mixed_generator(train_generator, foreground="auto") -> Choice:
    """The training synthesis, CutPaste and CutPaste-scar in equal parts."""
    return Choice(
        [
            train_generator,
            make_generator("cutpaste", foreground=foreground),
            make_generator("cutpaste_scar", foreground=foreground),
        ]
    )


def masked_anomalies(
    images: torch.Tensor, per_image: int, kinds: Union[str, Sequence[str]], seed: int, textures=None
) -> Tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``per_image`` anomalies of ``kinds`` per image -> (images, float masks, kept) where ``kept``
    marks the draws whose mask is not empty (the others changed nothing and are no anomaly)."""
    kinds = list(kinds) if not isinstance(kinds, str) else [kinds]
    gen = make_generator(kinds if len(kinds) > 1 else kinds[0], textures=textures)
    sources = np.repeat(np.arange(len(images)), per_image)
    anomalies, masks = synthesise(images, sources, gen, seed)
    keep = (masks.flatten(1).amax(dim=1) > 0.5).numpy() if len(masks) else np.zeros(0, bool)
    return anomalies, masks, keep
