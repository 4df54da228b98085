"""The one validation scorer: how every trained method rates an epoch on the validation split.

Validation maps are read on every ``VAL_PIXEL_STRIDE``-th pixel per axis: the maps are
smooth at that scale and a quarter of the pixels makes each per-epoch validation four
times cheaper. The score that selects the epoch is the plain mean of the chosen metrics
(docs/protocol.md#validation-split); a method states which metrics it averages.
With the validation suite (``synth.validation_suite``, every trained method's default split,
``components.validation_split``) each anomaly has a family, and
:func:`family_scores` reads the same metrics per family (all held-out normals plus that
family's anomalies), so a choice can be checked family by family.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from ...metrics import aupro, image_auroc, pixel_ap, pixel_auroc

VAL_PIXEL_STRIDE = 2
#: what the score averages unless a method says otherwise
DEFAULT_METRICS = ("image_auroc", "pixel_auroc", "aupro")

_METRICS: Dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]] = {
    "image_auroc": lambda labels, scores, masks, maps: image_auroc(labels, scores),
    "pixel_auroc": lambda labels, scores, masks, maps: pixel_auroc(masks, maps),
    "aupro": lambda labels, scores, masks, maps: aupro(masks, maps),
    "pixel_ap": lambda labels, scores, masks, maps: pixel_ap(masks, maps),
}


def subsample(maps):
    """Keep every ``VAL_PIXEL_STRIDE``-th pixel per axis of ... x H x W maps or masks."""
    return maps[..., ::VAL_PIXEL_STRIDE, ::VAL_PIXEL_STRIDE]


def validation_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray,
    maps: np.ndarray,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Dict[str, float]:
    """Metrics of one validation pass plus their mean as ``score`` (higher is better).

    ``masks`` and ``maps`` are at the validation resolution already (see :func:`subsample`).
    """
    unknown = [m for m in metrics if m not in _METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown validation metrics {unknown}; choose from {sorted(_METRICS)}")
    out = {m: float(_METRICS[m](labels, scores, masks, maps)) for m in metrics}
    total = 0.0
    for m in metrics:
        total += out[m]
    out["score"] = total / len(metrics)
    return out


def family_scores(
    labels: np.ndarray,
    scores: np.ndarray,
    masks: np.ndarray,
    maps: np.ndarray,
    families: np.ndarray,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> Dict[str, Dict[str, float]]:
    """:func:`validation_scores` per anomaly family: every normal (label 0) plus the anomalies
    whose ``families`` entry is that family; ``families`` has one entry per row (normals: any)."""
    labels, families = np.asarray(labels), np.asarray(families)
    normal = labels == 0
    out = {}
    for family in sorted(set(families[~normal].tolist())):
        rows = normal | ((labels == 1) & (families == family))
        out[str(family)] = validation_scores(labels[rows], scores[rows], masks[rows], maps[rows], metrics)
    return out
