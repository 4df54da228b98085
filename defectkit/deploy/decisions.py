"""One scored image -> its decision: label, threshold, normalised score, defect mask and boxes.

``defectkit predict`` and ``defectkit serve`` both call :func:`decide`, so a file scored
offline and the same image posted to the service get the same fields from the same code.
Plain numpy (no torch), like the rest of ``deploy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .regions import defect_boxes, defect_mask
from .thresholds import Thresholds

#: Outline colour of predicted defect regions on overlays.
CONTOUR_COLOUR = (255, 255, 255)


@dataclass
class Decision:
    """What the thresholds say about one image. ``mask`` (bool S x S) is set only for a
    defect when a pixel threshold exists, and ``boxes`` are its regions (map pixels)."""

    score: float
    label: Optional[str] = None
    threshold: Optional[float] = None
    pixel_threshold: Optional[float] = None
    normalised_score: Optional[float] = None
    boxes: List[Dict[str, Any]] = field(default_factory=list)
    mask: Optional[np.ndarray] = None


def decide(
    score: float, amap: np.ndarray, thresholds: Optional[Thresholds], normalised: Optional[float] = None
) -> Decision:
    """Label ``score`` against ``thresholds`` (None: no label) and outline the defect regions of ``amap``."""
    decision = Decision(score=float(score), normalised_score=None if normalised is None else float(normalised))
    if thresholds is None:
        return decision
    defect = decision.score >= thresholds.image
    decision.label = "defect" if defect else "good"
    decision.threshold = thresholds.image
    decision.pixel_threshold = thresholds.pixel
    if defect and thresholds.pixel is not None:
        decision.mask = defect_mask(amap, thresholds.pixel)
        decision.boxes = defect_boxes(amap, decision.mask)
    return decision


def overlay_scale(amap: np.ndarray, scale: Optional[Tuple[float, float]]) -> Tuple[float, float]:
    """The colour range of an overlay: the thresholds' fixed scale, else the map's own min..max."""
    return scale if scale is not None else (float(np.min(amap)), float(np.max(amap)))


def overlay_image(
    image: np.ndarray, amap: np.ndarray, mask: Optional[np.ndarray], scale: Optional[Tuple[float, float]]
):
    """The heat map of ``amap`` over ``image`` (S x S x 3 uint8) with the defect regions outlined, as a PIL image."""
    from ..viz.overlay import heatmap_overlay

    vmin, vmax = overlay_scale(amap, scale)
    return heatmap_overlay(image, amap, vmin, vmax, mask=mask, contour_colour=CONTOUR_COLOUR)
