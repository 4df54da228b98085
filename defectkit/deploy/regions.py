"""Defect regions of one anomaly map: the thresholded mask and one box per connected region.

Boxes are in pixels of the map, which is the model's input resolution (the resized and,
if the model crops, cropped S x S image that overlays show), not of the original file.
Regions are 8-connected, as in the AUPRO metric (``defectkit.metrics``).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def defect_mask(amap: np.ndarray, pixel_threshold: float) -> np.ndarray:
    """Bool H x W: pixels whose map value is at or above ``pixel_threshold``."""
    return np.asarray(amap) >= pixel_threshold


def defect_boxes(amap: np.ndarray, mask: np.ndarray) -> List[Dict[str, Any]]:
    """One box per 8-connected region of ``mask``: ``x0, y0`` (first column/row), ``x1, y1``
    (one past the last), ``area`` (pixels of the region) and ``max_score`` (largest map
    value inside it); largest ``max_score`` first."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=_STRUCTURE_8)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = ndimage.maximum(np.asarray(amap, dtype=np.float64), labels, index)
    boxes = []
    for sl, area, peak in zip(ndimage.find_objects(labels), areas, np.atleast_1d(peaks)):
        ys, xs = sl
        boxes.append(
            {
                "x0": int(xs.start),
                "y0": int(ys.start),
                "x1": int(xs.stop),
                "y1": int(ys.stop),
                "area": int(area),
                "max_score": float(peak),
            }
        )
    boxes.sort(key=lambda b: -b["max_score"])
    return boxes
