"""Anomaly maps drawn over their images, with numpy and Pillow only.

Why not matplotlib (which draws the report plots, viz/plots.py): overlays are also
written by ``predict`` on every scored image, where importing it would only cost start-up
time for one colour map. The "jet"-like map
here is matplotlib's jet reduced to its three piecewise-linear ramps (dark blue ->
cyan -> yellow -> dark red), which is what anomaly-detection papers show, so our
pictures read the same way. Colours are fixed by ``vmin``/``vmax`` given by the
caller, so overlays of several images on one scale can be compared with each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

Colour = Tuple[int, int, int]


def jet(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8 RGB of shape ``values.shape + (3,)``."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return np.round(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def to_uint8_rgb(image) -> np.ndarray:
    """A PIL image, an HxW / HxWx3 / HxWx4 array (uint8, or float in [0, 1]) or a
    3xHxW tensor in [0, 1] (as Preprocess returns) -> HxWx3 uint8."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):  # torch tensor, C x H x W
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):
            image = np.moveaxis(image, 0, -1)
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def display_images(batch) -> List[np.ndarray]:
    """The images of a model batch as H x W x 3 uint8, on the grid of their maps: the
    preprocessed (padded) images of an ``ImageBatch`` or a tensor, the full-resolution
    images of a ``NativeBatch`` (tiled models)."""
    if hasattr(batch, "boxes"):
        batch = batch.images
    elif hasattr(batch, "images") and isinstance(batch.images, list):
        return [to_uint8_rgb(a) for a in batch.images]
    return [to_uint8_rgb(t) for t in batch]


def _resize_float(a: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    if a.shape == hw:
        return a.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    return np.asarray(im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _resize_mask(m: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    m = np.asarray(m) > 0
    if m.shape == hw:
        return m
    im = Image.fromarray(m.astype(np.uint8) * 255)
    return np.asarray(im.resize((hw[1], hw[0]), Image.Resampling.NEAREST)) > 0


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a bool mask (pixels of the mask with a 4-neighbour outside it)."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return m & ~inner


def heatmap_overlay(
    rgb_uint8,
    amap: np.ndarray,
    vmin: float,
    vmax: float,
    alpha: float = 0.5,
    mask: Optional[np.ndarray] = None,
    contour_colour: Colour = (255, 255, 255),
) -> Image.Image:
    """Blend the coloured map over the image: ``(1 - alpha) * image + alpha * jet(map)``.

    ``amap`` (any HxW) is resized bilinearly to the image; ``vmin``/``vmax`` map to
    the two ends of the colour scale. With ``mask`` (ground truth, nonzero = defect)
    its outline is drawn in ``contour_colour`` on top, so a reader sees at once
    whether the hot region is the real defect.
    """
    rgb = to_uint8_rgb(rgb_uint8)
    hw = rgb.shape[:2]
    a = np.asarray(amap, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected an HxW anomaly map, got shape {a.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a = _resize_float(np.nan_to_num(a, nan=float(vmin)), hw)
    span = float(vmax) - float(vmin)
    norm = (a - float(vmin)) / span if span > 0 else np.zeros_like(a)
    colours = jet(norm).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * colours
    out = np.round(out).clip(0, 255).astype(np.uint8)
    if mask is not None:
        out[mask_contour(_resize_mask(mask, hw))] = contour_colour
    return Image.fromarray(out)


def side_by_side(images: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Images of one height next to each other on a black strip (image | overlay)."""
    h = max(im.height for im in images)
    w = sum(im.width for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (w, h))
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return canvas


def save_overlay(
    path: Union[str, Path],
    rgb_uint8,
    amap: np.ndarray,
    vmin: float,
    vmax: float,
    alpha: float = 0.5,
    mask: Optional[np.ndarray] = None,
    with_original: bool = False,
) -> Path:
    """Write ``heatmap_overlay(...)`` as a PNG (optionally beside the plain image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = heatmap_overlay(rgb_uint8, amap, vmin, vmax, alpha, mask)
    if with_original:
        im = side_by_side([Image.fromarray(to_uint8_rgb(rgb_uint8)), im])
    im.save(path)
    return path


def select_examples(result, limit: int = 6) -> List[int]:
    """Indices of test images worth looking at: the highest-scoring image of each
    defect type, the highest-scoring good image (likeliest false alarm) and the
    lowest-scoring defective one (likeliest miss); at most ``limit``, no repeats."""
    order = np.argsort(-result.scores, kind="stable")
    per_type: List[int] = []
    seen = set()
    for i in order:
        s = result.samples[i]
        if s.label == 1 and s.defect_type not in seen:
            seen.add(s.defect_type)
            per_type.append(int(i))
    good = [int(i) for i in order if result.samples[i].label == 0][:1]
    miss = [int(i) for i in order[::-1] if result.samples[i].label == 1][:1]
    room = max(0, limit - len(good) - len(miss))
    picks: List[int] = per_type[:room]
    for i in good + miss + per_type[room:]:
        if i not in picks:
            picks.append(i)
    return picks[:limit]


def write_example_overlays(result, preprocess, folder: Union[str, Path], limit: int = 6) -> List[Dict[str, str]]:
    """Overlays (image | map, ground truth outlined) of a few test images worth looking at.

    ``preprocess``: the model (its ``load_inputs`` gives the images on the maps' grid) or
    a ``Preprocess``.
    ``result`` is an ``evaluation.EvaluationResult``; images are chosen by
    ``select_examples`` and drawn on one colour scale (min..max of all
    test maps) so their heat can be compared. Returns ``{"image", "caption"}`` dicts
    for ``report.write_report``.
    """
    if limit <= 0 or result.n_images == 0:
        return []
    picks = select_examples(result, limit)
    if hasattr(preprocess, "load_inputs"):  # a model: its own inputs (padded, or full-resolution when tiled)
        loaded, _, _ = preprocess.load_inputs([result.samples[i] for i in picks], on_error="raise")
        images = display_images(loaded)
    else:
        from ..data.batches import load_images

        images = display_images(load_images([result.samples[i] for i in picks], preprocess, on_error="raise")[0])
    vmin, vmax = float(np.min(result.maps)), float(np.max(result.maps))
    thr = result.metrics.get("image_f1_threshold")
    out = []
    for k, (i, img) in enumerate(zip(picks, images)):
        s = result.samples[i]
        amap, mask = result.maps[i], result.masks[i] if result.masks is not None else None
        h, w = img.shape[:2]
        amap = amap[:h, :w]  # maps of several sizes share one padded grid
        mask = None if mask is None else mask[:h, :w]
        path = save_overlay(
            Path(folder) / f"{k:02d}_{s.defect_type}_{s.path.stem}.png",
            img,
            amap,
            vmin,
            vmax,
            mask=mask,
            with_original=True,
        )
        verdict = "" if thr is None else (" -> flagged" if result.scores[i] >= thr else " -> passed")
        out.append(
            {"image": str(path), "caption": f"{s.defect_type}/{s.path.name}: score {result.scores[i]:.4g}{verdict}"}
        )
    return out
