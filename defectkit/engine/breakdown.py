"""Metrics per defect type: which kinds of defect a model finds and which it misses.

Each defect type is scored against all good test images, with the same functions as the
overall metrics (``metrics.evaluate``): its I-AUROC says how well that type is told
apart from good parts, its pixel metrics pool the pixels of the good images and of that
type's images. Recall at a threshold is the fraction of the type's images flagged.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from ..metrics import evaluate


def per_defect_type(
    labels: Sequence[int],
    scores: Sequence[float],
    defect_types: Sequence[str],
    masks: Optional[Sequence[Optional[np.ndarray]]] = None,
    maps: Optional[np.ndarray] = None,
) -> Dict[str, Dict[str, float]]:
    """{defect type: metrics} for every type of the defective images, in first-seen order.

    ``masks``: one entry per image, None for an image without ground truth (as in
    ``metrics.evaluate``); with ``maps`` the pixel metrics are added for types whose
    images have masks with defect regions. Every entry has ``n_images``.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    kinds = list(defect_types)
    if not (len(y) == len(s) == len(kinds)):
        raise ValueError(f"labels, scores and defect_types differ in length: {len(y)}, {len(s)}, {len(kinds)}")
    good = np.flatnonzero(y == 0)
    if good.size == 0:
        raise ValueError("per-defect-type metrics need good test images")
    types = list(dict.fromkeys(k for k, lab in zip(kinds, y) if lab == 1))
    out: Dict[str, Dict[str, float]] = {}
    for t in types:
        own = np.flatnonzero((y == 1) & (np.asarray(kinds) == t))
        idx = np.concatenate((good, own))
        m: Dict[str, float] = {"n_images": int(own.size)}
        sub_masks: Optional[List[Optional[np.ndarray]]] = None
        if masks is not None and maps is not None:
            sub_masks = [masks[i] for i in idx]
            has_regions = any(sub_masks[j] is not None and np.any(sub_masks[j]) for j in range(good.size, idx.size))
            if not has_regions:
                sub_masks = None
        if sub_masks is None:
            m.update(evaluate(y[idx], s[idx]))
        else:
            m.update(evaluate(y[idx], s[idx], sub_masks, np.asarray(maps)[idx]))
        out[t] = {k: (float(v) if k != "n_images" else v) for k, v in m.items()}
    return out


def recall_at(labels, scores, defect_types, threshold: float) -> Dict[str, float]:
    """{defect type: fraction of its images with score >= threshold}; "good": the false-alarm rate."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    kinds = np.asarray(list(defect_types))
    out: Dict[str, float] = {}
    for t in dict.fromkeys(kinds[y == 1].tolist()):
        sel = (y == 1) & (kinds == t)
        out[t] = float(np.mean(s[sel] >= threshold))
    if np.any(y == 0):
        out["good"] = float(np.mean(s[y == 0] >= threshold))
    return out
