"""The validation-anomaly suite: several anomaly families, in equal parts, that all visibly change the image.

A validation split made only of the training synthesis is easy for the method trained on it
and rewards fitting that generator (docs/protocol.md#validation-split). The suite mixes:

* ``texture``: DTD textures blended through Perlin masks (the DRAEM / RealNet training family);
* ``cutpaste``: CutPaste patches and scars, half each (CutPaste, MLFF, SimpleNet validation);
* ``stain``: one to three soft Gaussian blobs pulling the colour towards dark, bright or a
  random colour -- no method trains on it;
* ``scratch``: a thin polyline (1-3 px at 256 px) in a colour that contrasts with the
  pixels under it -- no method trains on it;
* ``blur``: a soft elliptic region blurred (sigma 2-6 px at 256 px) where the image has
  structure, a change of sharpness rather than colour -- no method trains on it.

Every anomaly sits on the object foreground (``synth.masks.foreground_mask``; whole image for
textures) and passes the visible-change filter: its mask keeps only pixels that changed by
more than ``change_threshold`` in some channel, and a draw whose kept area is below
``min_area`` of the image or whose mean change inside the mask is below ``min_mean_change``
is redrawn, at most ``max_tries`` times, then skipped and counted. Each anomaly's family is
recorded, so metrics can be read per family. The draw of anomaly ``j`` of a family depends
only on (seed, family, j): dropping a family (no textures) leaves the others unchanged.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from ..utils.images import to_uint8
from .masks import foreground_mask
from .registry import make_generator
from .textures import resolve_textures
from .validation import VISIBLE_CHANGE

FAMILIES = ("texture", "cutpaste", "stain", "scratch", "blur")
#: families that no method of the toolkit trains on
UNSEEN_FAMILIES = ("stain", "scratch", "blur")
#: an anomaly whose mean change (max over channels, [0, 1] units) inside its mask is below this is redrawn
MIN_MEAN_CHANGE = 0.10
#: ... and so is one whose mask keeps less than this fraction of the image (33 px at 256 px)
MIN_AREA = 0.0005
MAX_TRIES = 10
#: each family gets at least this many anomalies (held-out images are reused) so that small
#: categories still have a family large enough to score
MIN_PER_FAMILY = 24


@dataclass
class SuiteAnomalies:
    """The suite's anomalies: ``images`` K x 3 x S x S float in [0, 1], ``masks`` K x S x S bool,
    ``families`` (K,) family names, ``sources`` (K,) index of the held-out image each was made from,
    ``skipped`` per family the draws that failed the filter ``max_tries`` times, ``note`` what
    was left out and why (empty when nothing)."""

    images: torch.Tensor
    masks: torch.Tensor
    families: np.ndarray
    sources: np.ndarray
    skipped: Dict[str, int] = field(default_factory=dict)
    textures: Optional[str] = None
    note: str = ""

    def counts(self) -> Dict[str, int]:
        names, n = np.unique(self.families, return_counts=True)
        return {str(k): int(v) for k, v in zip(names, n)}

    def info(self) -> Dict[str, object]:
        """What a fit records about its validation anomalies."""
        return {"families": self.counts(), "skipped": dict(self.skipped), "textures": self.textures, "note": self.note}


# ---- the families without a library generator ---------------------------------------------


def _centre(target: np.ndarray, rng: np.random.Generator) -> Tuple[float, float]:
    ys, xs = np.nonzero(target)
    i = int(rng.integers(len(ys)))
    return float(ys[i]), float(xs[i])


def stain(image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """1-3 anisotropic Gaussian blobs (sigma 2-8 % of the side) around one target pixel; inside
    them the colour moves towards a dark, bright or random colour by up to 40-90 %."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    cy, cx = _centre(target, rng)
    for _ in range(int(rng.integers(1, 4))):
        sy, sx = (rng.uniform(0.02, 0.08) * min(h, w) for _ in range(2))
        oy, ox = rng.normal(0.0, 0.5 * max(sy, sx), size=2)
        a = rng.uniform(0, math.pi)
        dy, dx = yy - (cy + oy), xx - (cx + ox)
        u, v = dy * math.cos(a) + dx * math.sin(a), -dy * math.sin(a) + dx * math.cos(a)
        alpha = np.maximum(alpha, np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2)))
    kind = rng.choice(["dark", "bright", "colour"])
    if kind == "dark":
        colour = np.full(3, rng.uniform(0, 40))
    elif kind == "bright":
        colour = np.full(3, rng.uniform(215, 255))
    else:
        colour = rng.uniform(0, 255, size=3)
    alpha = (rng.uniform(0.4, 0.9) * alpha * target)[..., None]
    out = (1 - alpha) * image.astype(np.float32) + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def scratch(image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A polyline of 2-5 segments, 15-45 % of the side long in all, 1-3 px wide (at 256 px),
    starting on a target pixel and turning by up to 45 degrees per segment; drawn dark on
    bright surroundings and bright on dark ones, at opacity 0.7-1, on the target only."""
    h, w = image.shape[:2]
    k = min(h, w) / 256.0
    width = max(1, int(round(rng.integers(1, 4) * k)))
    n_seg = int(rng.integers(2, 6))
    seg = rng.uniform(0.15, 0.45) * min(h, w) / n_seg
    y, x = _centre(target, rng)
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(n_seg):
        angle += rng.uniform(-math.pi / 4, math.pi / 4)
        x, y = x + seg * math.cos(angle), y + seg * math.sin(angle)
        points.append((x, y))
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).line(points, fill=1, width=width, joint="curve")
    line = (np.asarray(canvas) > 0) & target
    if not line.any():
        return image.copy()
    under = image[line].astype(np.float32).mean()
    level = rng.uniform(0, 50) if under > 127 else rng.uniform(205, 255)
    colour = np.clip(level + rng.uniform(-20, 20, size=3), 0, 255)
    b = rng.uniform(0.7, 1.0)
    out = image.astype(np.float32)
    out[line] = (1 - b) * out[line] + b * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft-edged ellipse (semi-axes 5-15 % of the side) where the image is replaced by a
    Gaussian blur of itself (sigma 2-6 px at 256 px); centred on a target pixel drawn in
    proportion to the local gradient, since blurring a flat region changes nothing visible."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = image.astype(np.float32).mean(axis=2)
    edges = ndimage.gaussian_filter(np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1)), 2.0) * target
    weights = edges.ravel() / edges.sum() if edges.sum() > 0 else target.ravel() / target.sum()
    cy, cx = divmod(int(rng.choice(h * w, p=weights)), w)
    ry, rx = (rng.uniform(0.05, 0.15) * min(h, w) for _ in range(2))
    a = rng.uniform(0, math.pi)
    dy, dx = yy - cy, xx - cx
    u, v = dy * math.cos(a) + dx * math.sin(a), -dy * math.sin(a) + dx * math.cos(a)
    inside = ((u / ry) ** 2 + (v / rx) ** 2 <= 1.0).astype(np.float32)
    soft = ndimage.gaussian_filter(inside, sigma=max(1.0, 0.15 * min(ry, rx))) * target
    sigma = rng.uniform(2.0, 6.0) * min(h, w) / 256.0
    blurred = ndimage.gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0))
    out = (1 - soft[..., None]) * image.astype(np.float32) + soft[..., None] * blurred
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_DRAWN = {"stain": stain, "scratch": scratch, "blur": blur}


# ---- the suite ------------------------------------------------------------------------------


def _library_family(family: str, textures) -> object:
    if family == "texture":
        return make_generator("dtd", textures=str(textures), foreground="auto")
    return make_generator(["cutpaste", "cutpaste_scar"], foreground="auto")


def visible_mask(
    anomalous: np.ndarray, normal: np.ndarray, region: np.ndarray, change_threshold: float
) -> Tuple[np.ndarray, float]:
    """The pixels of ``region`` whose change exceeds ``change_threshold`` (max over channels,
    [0, 1] units) -> (bool mask, mean change inside it; 0 when empty)."""
    change = np.abs(anomalous.astype(np.float32) - normal.astype(np.float32)).max(axis=2) / 255.0
    mask = region & (change > change_threshold)
    return mask, float(change[mask].mean()) if mask.any() else 0.0


def suite_anomalies(
    images: torch.Tensor,
    per_image: int = 1,
    seed: int = 0,
    textures=None,
    families: Sequence[str] = FAMILIES,
    min_per_family: int = MIN_PER_FAMILY,
    change_threshold: float = VISIBLE_CHANGE,
    min_mean_change: float = MIN_MEAN_CHANGE,
    min_area: float = MIN_AREA,
    max_tries: int = MAX_TRIES,
) -> SuiteAnomalies:
    """The suite's anomalies made from held-out normal ``images`` (N x 3 x S x S float in [0, 1]).

    Every family gets ``max(per_image * N, min_per_family)`` draws, the held-out images taken in
    turn; draws failing the visible-change filter ``max_tries`` times are skipped (counted in
    ``skipped``). ``textures``: DTD folder (None: ``resolve_textures``'s default); when none is
    found the ``texture`` family is left out with a warning and ``note`` says so.
    Deterministic in ``seed``.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown validation families {unknown}; choose from {FAMILIES}")
    if per_image < 1 or max_tries < 1:
        raise ValueError(f"per_image and max_tries must be >= 1, got {per_image} and {max_tries}")
    families = list(dict.fromkeys(families))
    folder, note = None, ""
    if "texture" in families:
        folder = resolve_textures(textures, required=False)
        if folder is None:
            note = "no texture folder found (textures=, $DEFECTKIT_TEXTURES): the 'texture' family is left out"
            warnings.warn(note, stacklevel=2)
            families.remove("texture")
    normals = to_uint8(images)
    n, size = len(normals), normals.shape[1]
    targets = [foreground_mask(im) for im in normals]
    min_pixels = max(4, int(math.ceil(min_area * size * size)))
    count = max(per_image * n, min_per_family)
    out, masks, names, sources = [], [], [], []
    skipped = {f: 0 for f in families}
    for f in families:
        library = None if f in _DRAWN else _library_family(f, folder)
        for j in range(count):
            src = j % n
            rng = np.random.default_rng([seed, FAMILIES.index(f), j])
            for _attempt in range(max_tries):
                if library is not None:
                    res = library(normals[src], rng)
                    anomalous, region = res.image, np.asarray(res.mask) > 0.5
                else:
                    anomalous, region = _DRAWN[f](normals[src], targets[src], rng), targets[src]
                mask, mean_change = visible_mask(anomalous, normals[src], region, change_threshold)
                if mask.sum() >= min_pixels and mean_change >= min_mean_change:
                    break
            else:
                skipped[f] += 1
                continue
            out.append(torch.from_numpy(np.ascontiguousarray(anomalous)).permute(2, 0, 1))
            masks.append(torch.from_numpy(mask))
            names.append(f)
            sources.append(src)
    if not out:
        raise RuntimeError(f"the validation suite {families} produced no visible anomaly")
    return SuiteAnomalies(
        images=torch.stack(out).float() / 255.0,
        masks=torch.stack(masks),
        families=np.array(names),
        sources=np.array(sources, dtype=int),
        skipped=skipped,
        textures=None if folder is None else str(folder),
        note=note,
    )
