"""Evaluation metrics for anomaly detection and localization.

Definitions follow docs/protocol.md ("Metrics"): I-AUROC, P-AUROC, AUPRO (MVTec),
pixel AP and F1-max.  Everything is computed exactly from one descending sort of the
scores: after sorting, every threshold ``t`` (a distinct score) splits the samples
into a prefix (``score >= t``) and the rest, so every count a metric needs at every
threshold is a cumulative sum read at the last index of each group of tied scores.
Tied scores are therefore never split, which is what scikit-learn and MVTec's
reference code do, and no loop over thresholds or pixels is needed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "pixel_ap",
    "f1_max",
    "evaluate",
    "roc_curve",
    "pr_curve",
    "pro_curve",
    "pixel_curves",
    "confusion_at",
]

# 8-connectivity inside each image, never across images: a (3, 3, 3) structure whose
# only non-zero plane is the middle one labels a stack of masks in a single call.
# This is MVTec's reference choice (scipy.ndimage.label with np.ones((3, 3))).
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True


# --------------------------------------------------------------------------- helpers
class _Ranking:
    """Scores sorted once (descending) with the end index of every tie group.

    Why: all metrics here are functions of cumulative counts at distinct thresholds;
    sharing one sort between P-AUROC, AP, F1 and AUPRO is what makes ``evaluate``
    fast on millions of pixels.
    """

    def __init__(self, scores: np.ndarray):
        flat = scores.ravel()
        # argsort ascending then reverse: no negated copy, ties grouped below anyway.
        self.order = np.argsort(flat)[::-1]
        s = flat[self.order]
        ends = np.flatnonzero(s[1:] != s[:-1])
        self.ends = np.append(ends, s.size - 1)  # last index of each tie group
        self.thresholds = s[self.ends]  # distinct scores, descending

    def counts(self, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (true positives, false positives) at every distinct threshold."""
        pos_sorted = positive.ravel()[self.order]
        tps = np.cumsum(pos_sorted, dtype=np.int64)[self.ends]
        fps = self.ends + 1 - tps
        return tps, fps


def _as_binary(x, name: str) -> np.ndarray:
    """Bool view of a 0/1 array; other values are refused so 0/255 masks or soft
    masks cannot silently change the metric."""
    a = np.asarray(x)
    if a.dtype == bool:
        return a
    if a.size and not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name} must contain only 0/1 (or bool) values")
    return a.astype(bool)


def _as_scores(x, name: str) -> np.ndarray:
    """Float array of finite scores (NaN would make sorting, hence every metric,
    meaningless)."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _check_1d(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = _as_binary(labels, "labels")
    s = _as_scores(scores, "scores")
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels shape {y.shape} != scores shape {s.shape}")
    return y, s


def _check_pixels(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    m = _as_binary(masks, "masks")
    a = _as_scores(maps, "maps")
    if m.shape != a.shape:
        raise ValueError(f"masks shape {m.shape} != maps shape {a.shape}")
    if m.ndim == 2:  # a single image
        m, a = m[None], a[None]
    if m.ndim != 3:
        raise ValueError(f"masks and maps must be N x H x W, got shape {m.shape}")
    return m, a


def _need_both_classes(tps: np.ndarray, fps: np.ndarray, what: str) -> None:
    if tps[-1] == 0 or fps[-1] == 0:
        raise ValueError(f"{what} needs both classes, got {int(tps[-1])} positive and {int(fps[-1])} negative samples")


def _auroc_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoid area under the ROC curve, in integers until the final division
    (exact; a tie group contributes a diagonal segment, i.e. counts 1/2)."""
    _need_both_classes(tps, fps, "AUROC")
    t = np.concatenate(([0], tps))
    f = np.concatenate(([0], fps))
    twice_area = np.sum(np.diff(f) * (t[1:] + t[:-1]))
    return float(twice_area / (2.0 * float(tps[-1]) * float(fps[-1])))


def _ap_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n, scikit-learn's step-wise (non-interpolated) AP."""
    _need_both_classes(tps, fps, "average precision")
    precision = tps / (tps + fps)
    d_recall = np.diff(np.concatenate(([0], tps))) / tps[-1]
    return float(np.sum(d_recall * precision))


def _f1_from_counts(tps: np.ndarray, fps: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + FP + P) at every threshold; the
    first maximum (highest threshold) is returned."""
    n_pos = tps[-1]
    if n_pos == 0:
        raise ValueError("F1-max needs at least one positive (defective) sample")
    f1 = 2.0 * tps / (tps + fps + n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def _label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of every mask (8-connectivity, per image), with ids
    unique over the whole stack; 0 = normal pixel."""
    regions, n_regions = ndimage.label(masks, structure=_STRUCTURE_8)
    return regions, int(n_regions)


def _pro_points(ranking: _Ranking, regions: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at (0, 0) and then at every distinct threshold, descending, ending at (1, 1).

    PRO(t) = 1/R sum_r |{p in r: s_p >= t}| / |r| = sum over anomalous pixels with
    s_p >= t of 1 / (R |r(p)|), so PRO is a cumulative sum of per-pixel weights,
    read at each tie group's end, exactly like the FPR.
    """
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one anomalous region; all masks are empty")
    region_sorted = regions.ravel()[ranking.order]
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)
    n_normal = int(sizes[0])
    if n_normal == 0:
        raise ValueError("AUPRO needs normal pixels to define the false-positive rate")
    weight = np.zeros(n_regions + 1, dtype=np.float64)
    weight[1:] = 1.0 / (n_regions * sizes[1:].astype(np.float64))

    fp = np.cumsum(region_sorted == 0, dtype=np.int64)[ranking.ends]
    pro = np.cumsum(weight[region_sorted])[ranking.ends]
    # Curve from (0, 0) (threshold above every score) to (1, 1); clip the float
    # cumsum's rounding so PRO never exceeds 1.
    fpr = np.concatenate(([0.0], fp / n_normal))
    pro = np.concatenate(([0.0], np.minimum(pro, 1.0)))
    return fpr, pro


def _aupro_from_ranking(ranking: _Ranking, regions: np.ndarray, n_regions: int, fpr_limit: float) -> float:
    """Exact AUPRO from the shared ranking: the PRO curve (``_pro_points``) up to
    ``fpr_limit``, closed there by linear interpolation, trapezoid area / limit."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = _pro_points(ranking, regions, n_regions)
    # Keep the curve up to fpr_limit, then close it at exactly fpr_limit by linear
    # interpolation between the last point inside and the first point beyond.
    k = int(np.searchsorted(fpr, fpr_limit, side="right"))  # fpr[:k] <= limit
    x, y = fpr[:k], pro[:k]
    if x[-1] < fpr_limit:  # then k < len(fpr), since fpr ends at 1 >= limit
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        x = np.append(x, fpr_limit)
        y = np.append(y, y_lim)
    area = np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5)
    return float(area / fpr_limit)


# ------------------------------------------------------------------------ public API
def image_auroc(labels, scores) -> float:
    """I-AUROC: ROC AUC of image scores, good = 0, defective = 1."""
    y, s = _check_1d(labels, scores)
    return _auroc_from_counts(*_Ranking(s).counts(y))


def pixel_auroc(masks, maps) -> float:
    """P-AUROC: ROC AUC over all pixels of all images pooled together (not a mean
    of per-image AUCs, which would ignore normal images)."""
    m, a = _check_pixels(masks, maps)
    return _auroc_from_counts(*_Ranking(a).counts(m))


def pixel_ap(masks, maps) -> float:
    """Average precision over all pixels, same definition as scikit-learn's
    ``average_precision_score`` (no interpolation of the PR curve)."""
    m, a = _check_pixels(masks, maps)
    return _ap_from_counts(*_Ranking(a).counts(m))


def f1_max(labels, scores) -> tuple[float, float]:
    """Best F1 over all thresholds and the threshold reaching it.

    Predicting ``score >= threshold`` as defective gives exactly the returned F1.
    Works on image labels/scores or on flattened pixel masks/maps (any shape, as
    long as both have the same shape).
    """
    y = _as_binary(labels, "labels")
    s = _as_scores(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels shape {y.shape} != scores shape {s.shape}")
    if y.size == 0:
        raise ValueError("f1_max needs at least one sample")
    ranking = _Ranking(s)
    tps, fps = ranking.counts(y)
    return _f1_from_counts(tps, fps, ranking.thresholds)


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """AUPRO, MVTec's definition.

    Every connected component (8-connectivity, as scipy.ndimage.label with a 3x3
    structure of ones in MVTec's reference code) of every ground-truth mask weighs
    equally, so small defects count as much as large ones. PRO(t) is the mean over
    regions of the fraction of region pixels with ``map >= t``; FPR(t) is the
    fraction of normal pixels (mask == 0, all images) with ``map >= t``. PRO is
    integrated over FPR in [0, fpr_limit] with the trapezoid rule (the curve is
    interpolated linearly at exactly ``fpr_limit``) and divided by ``fpr_limit``.
    No dilation of masks or maps. Raises ValueError if no mask has a defect.
    """
    m, a = _check_pixels(masks, maps)
    regions, n_regions = _label_regions(m)
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one anomalous region; all masks are empty")
    return _aupro_from_ranking(_Ranking(a), regions, n_regions, fpr_limit)


def _stack_masks(masks, n: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Masks as an (M, H, W) bool stack plus the indices of the images they belong
    to; ``None`` entries (images without ground truth) are left out."""
    if isinstance(masks, np.ndarray) or not isinstance(masks, Sequence):
        m = _as_binary(masks, "masks")
        if m.shape[:1] != (n,):
            raise ValueError(f"masks has {m.shape[0] if m.ndim else 0} images, labels has {n}")
        return m, np.arange(n)
    if len(masks) != n:
        raise ValueError(f"masks has {len(masks)} entries, labels has {n}")
    keep = [i for i, mk in enumerate(masks) if mk is not None]
    stack = np.zeros((len(keep),) + shape, dtype=bool)
    for j, i in enumerate(keep):
        mk = _as_binary(masks[i], f"masks[{i}]")
        if mk.shape != shape:
            raise ValueError(f"masks[{i}] shape {mk.shape} != map shape {shape}")
        stack[j] = mk
    return stack, np.asarray(keep, dtype=np.int64)


def evaluate(labels, image_scores, masks=None, maps=None, valid=None) -> dict:
    """All protocol metrics in one call, as fractions in [0, 1].

    Image metrics: image_auroc, image_f1_max, image_f1_threshold. With ``masks`` and
    ``maps`` (N x H x W, same images as ``labels``) also pixel_auroc, aupro,
    pixel_ap, pixel_f1_max, pixel_f1_threshold, computed from a single sort of the
    pixel scores. ``masks`` may be a sequence with ``None`` for images that have no
    ground truth; pixel metrics use only images that have a mask (good images have
    all-zero masks, i.e. only normal pixels). ``valid`` (N x H x W bool, optional):
    only these pixels enter the pixel pool; the rest (padding added to keep an aspect
    ratio, or to stack maps of different sizes) is neither normal nor defective.
    """
    y, s = _check_1d(labels, image_scores)
    ranking = _Ranking(s)
    tps, fps = ranking.counts(y)
    f1, thr = _f1_from_counts(tps, fps, ranking.thresholds)
    out = {
        "image_auroc": _auroc_from_counts(tps, fps),
        "image_f1_max": f1,
        "image_f1_threshold": thr,
    }
    if masks is None and maps is None:
        return out
    if masks is None or maps is None:
        raise ValueError("give both masks and maps, or neither")

    a = _as_scores(maps, "maps")
    if a.ndim != 3 or a.shape[0] != y.shape[0]:
        raise ValueError(f"maps must be N x H x W with N = {y.shape[0]} images, got shape {a.shape}")
    m, keep = _stack_masks(masks, y.shape[0], a.shape[1:])
    if m.shape[1:] != a.shape[1:]:
        raise ValueError(f"masks shape {m.shape} != maps shape {a.shape}")
    if keep.size == 0:
        raise ValueError("no image has a mask; pixel metrics are undefined")
    if keep.size != y.shape[0]:
        a = a[keep]
    bad = np.flatnonzero(~y[keep] & m.reshape(m.shape[0], -1).any(axis=1))
    if bad.size:
        raise ValueError(f"good images (label 0) with defective mask pixels: indices {keep[bad].tolist()}")

    regions = None
    if valid is not None:
        v = _as_binary(valid, "valid")
        if v.shape != (y.shape[0],) + a.shape[1:]:
            raise ValueError(f"valid shape {v.shape} != maps shape {(y.shape[0],) + a.shape[1:]}")
        v = v[keep]
        m = m & v
        regions, n_regions = _label_regions(m)
        a, m, regions = a[v], m[v], regions[v]
    pix = _Ranking(a)
    ptps, pfps = pix.counts(m)
    pf1, pthr = _f1_from_counts(ptps, pfps, pix.thresholds)
    if regions is None:
        regions, n_regions = _label_regions(m)
    out.update(
        pixel_auroc=_auroc_from_counts(ptps, pfps),
        aupro=_aupro_from_ranking(pix, regions, n_regions, 0.3),
        pixel_ap=_ap_from_counts(ptps, pfps),
        pixel_f1_max=pf1,
        pixel_f1_threshold=pthr,
    )
    return out


# ------------------------------------------------------------------------------ curves
# The curves behind the scalar metrics, from the same ranking and counts, so a plotted
# curve and the number printed beside it cannot disagree. Every curve has one point
# per distinct threshold, in descending threshold order; ROC and PRO start with the
# point of a threshold above every score (threshold +inf), as scikit-learn's roc_curve.
def _labels_scores(labels, scores, what: str) -> tuple[np.ndarray, np.ndarray]:
    y = _as_binary(labels, f"{what} labels")
    s = _as_scores(scores, f"{what} scores")
    if y.shape != s.shape:
        raise ValueError(f"labels shape {y.shape} != scores shape {s.shape}")
    if y.size == 0:
        raise ValueError(f"{what} needs at least one sample")
    return y, s


def _roc_from_counts(tps, fps, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _need_both_classes(tps, fps, "a ROC curve")
    fpr = np.concatenate(([0.0], fps / float(fps[-1])))
    tpr = np.concatenate(([0.0], tps / float(tps[-1])))
    return fpr, tpr, np.concatenate(([np.inf], thresholds))


def _pr_from_counts(tps, fps, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _need_both_classes(tps, fps, "a precision-recall curve")
    return tps / (tps + fps), tps / float(tps[-1]), np.asarray(thresholds, dtype=np.float64)


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (fpr, tpr, thresholds): the ROC curve whose trapezoid area is the AUROC.

    Labels and scores of any same shape (image labels and scores, or masks and maps:
    then it is the pooled pixel curve of P-AUROC). Point k counts ``score >=
    thresholds[k]`` as positive; point 0 is (0, 0) at threshold +inf, the last is (1, 1).
    """
    y, s = _labels_scores(labels, scores, "roc_curve")
    ranking = _Ranking(s)
    return _roc_from_counts(*ranking.counts(y), ranking.thresholds)


def pr_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (precision, recall, thresholds) at every distinct threshold, descending.

    ``sum((recall[n] - recall[n-1]) * precision[n])`` with recall[-1] = 0 is exactly
    the average precision (``pixel_ap`` for masks and maps).
    """
    y, s = _labels_scores(labels, scores, "pr_curve")
    ranking = _Ranking(s)
    return _pr_from_counts(*ranking.counts(y), ranking.thresholds)


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (fpr, pro, thresholds): the whole per-region-overlap curve of ``aupro``.

    From (0, 0) at threshold +inf to (1, 1); ``aupro`` is its area up to the FPR
    limit, closed there by linear interpolation, divided by the limit.
    """
    m, a = _check_pixels(masks, maps)
    regions, n_regions = _label_regions(m)
    ranking = _Ranking(a)
    fpr, pro = _pro_points(ranking, regions, n_regions)
    return fpr, pro, np.concatenate(([np.inf], ranking.thresholds))


def pixel_curves(masks, maps) -> dict:
    """ROC, PR and PRO curves of the pixel pool from one sort of the pixel scores.

    -> {"roc": (fpr, tpr, thr), "pr": (precision, recall, thr), "pro": (fpr, pro, thr)};
    "pro" is absent when no mask has a defect region. Masks and maps: N x H x W.
    """
    m, a = _check_pixels(masks, maps)
    ranking = _Ranking(a)
    tps, fps = ranking.counts(m)
    out = {"roc": _roc_from_counts(tps, fps, ranking.thresholds), "pr": _pr_from_counts(tps, fps, ranking.thresholds)}
    regions, n_regions = _label_regions(m)
    if n_regions:
        fpr, pro = _pro_points(ranking, regions, n_regions)
        out["pro"] = (fpr, pro, np.concatenate(([np.inf], ranking.thresholds)))
    return out


def confusion_at(labels, scores, threshold: float) -> dict:
    """Counts at one threshold, ``score >= threshold`` meaning defective.

    -> {"tp": caught defects, "fn": escapes (defects passed as good), "fp": false
    alarms (good flagged), "tn": good passed}.
    """
    y, s = _labels_scores(labels, scores, "confusion_at")
    flagged = s >= float(threshold)
    return {
        "tp": int(np.sum(flagged & y)),
        "fn": int(np.sum(~flagged & y)),
        "fp": int(np.sum(flagged & ~y)),
        "tn": int(np.sum(~flagged & ~y)),
    }
