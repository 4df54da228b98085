"""The curves a report plots, as small JSON-ready lists.

Image curves have one point per distinct image score, a few hundred at most, and are
kept exactly. Pixel curves have one point per distinct map value, millions of them;
``thin_curve`` keeps a point each time the curve has travelled ``step`` (in L1
distance, both axes in [0, 1]) since the last kept one, so the stored curve never
strays more than ``step`` from the exact one and a plot of it looks the same. The areas
printed beside the curves are the exact metrics (``metrics.evaluate``), never areas of
thinned curves.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .. import metrics

#: Largest L1 distance between a stored pixel curve and the exact one.
PIXEL_CURVE_STEP = 0.002
#: Points a stored pixel curve may have at most (the step grows when needed).
MAX_CURVE_POINTS = 2000


def thin_curve(
    x, y, step: float = PIXEL_CURVE_STEP, max_points: int = MAX_CURVE_POINTS
) -> Tuple[np.ndarray, np.ndarray]:
    """Points of the curve (x[i], y[i]) kept every ``step`` of path length, first and last kept."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"thin_curve needs two 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    if step <= 0 or max_points < 2:
        raise ValueError(f"thin_curve needs step > 0 and max_points >= 2, got {step} and {max_points}")
    if x.size <= 2:
        return x, y
    length = np.concatenate(([0.0], np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))))
    while True:
        bins = np.floor(length / step)
        keep = np.flatnonzero(np.diff(bins, prepend=-1.0) > 0)
        keep = np.union1d(keep, [0, x.size - 1])
        if keep.size <= max_points:
            return x[keep], y[keep]
        step *= keep.size / max_points * 1.05


def _rounded(a: np.ndarray) -> List[float]:
    return [round(float(v), 6) for v in a]


def _curve(x, y, names: Sequence[str], thin: bool) -> Dict[str, List[float]]:
    if thin:
        x, y = thin_curve(x, y)
    return {names[0]: _rounded(x), names[1]: _rounded(y)}


def _pr_points(precision: np.ndarray, recall: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The PR curve as drawn: from recall 0 at the first precision, so the step sum is its area."""
    return np.concatenate(([0.0], recall)), np.concatenate(([precision[0]], precision))


def image_curves(labels, scores) -> Dict[str, Dict[str, List[float]]]:
    """Exact ROC and PR curves of the image scores."""
    fpr, tpr, _ = metrics.roc_curve(labels, scores)
    precision, recall, _ = metrics.pr_curve(labels, scores)
    r, p = _pr_points(precision, recall)
    return {"roc": _curve(fpr, tpr, ("fpr", "tpr"), False), "pr": _curve(r, p, ("recall", "precision"), False)}


def pixel_curves(masks: np.ndarray, maps: np.ndarray) -> Dict[str, Dict[str, List[float]]]:
    """Thinned ROC, PR and PRO curves of the pooled pixels (N x H x W masks and maps).

    "pro" is absent when no mask has a defect region; its FPR axis runs to 1 (the
    AUPRO integrates it up to 0.3)."""
    c = metrics.pixel_curves(masks, maps)
    fpr, tpr, _ = c["roc"]
    precision, recall, _ = c["pr"]
    r, p = _pr_points(precision, recall)
    out = {"roc": _curve(fpr, tpr, ("fpr", "tpr"), True), "pr": _curve(r, p, ("recall", "precision"), True)}
    if "pro" in c:
        out["pro"] = _curve(c["pro"][0], c["pro"][1], ("fpr", "pro"), True)
    return out
