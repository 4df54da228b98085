"""The curves behind the metrics (metrics.roc_curve, pr_curve, pro_curve, pixel_curves,
confusion_at): checked against scikit-learn, a plain per-threshold loop, and the scalar
metrics they must reproduce."""

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics as skm

from defectkit.metrics import (
    aupro,
    confusion_at,
    image_auroc,
    pixel_ap,
    pixel_auroc,
    pixel_curves,
    pr_curve,
    pro_curve,
    roc_curve,
)


def random_case(seed, levels=None, n=5, h=10, w=10):
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(1, n):
        y, x = rng.integers(0, h - 3, size=2)
        masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
        masks[i, rng.integers(0, h), rng.integers(0, w)] = True
    maps = rng.random(masks.shape) + 0.6 * masks
    if levels:
        maps = np.round(maps * levels) / levels
    return masks, maps


def area_up_to(x, y, limit):
    """Trapezoid area of a curve from x = 0 up to ``limit``, closed by linear interpolation."""
    area = 0.0
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 6])
def test_roc_curve_matches_sklearn_and_its_area_is_the_auroc(seed, levels):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = rng.random(60) + 0.4 * labels
    if levels:
        scores = np.round(scores * levels) / levels
    fpr, tpr, thr = roc_curve(labels, scores)
    ref_fpr, ref_tpr, ref_thr = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
    assert np.isinf(thr[0]) and np.allclose(thr[1:], ref_thr[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(image_auroc(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 8])
def test_pr_curve_matches_sklearn_and_gives_the_ap(seed, levels):
    masks, maps = random_case(seed, levels)
    precision, recall, thr = pr_curve(masks, maps)
    assert np.all(np.diff(thr) < 0) and np.all(np.diff(recall) >= 0)
    ap = float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))
    assert ap == pytest.approx(pixel_ap(masks, maps), abs=1e-12)
    assert ap == pytest.approx(skm.average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12)
    ref_p, ref_r, ref_t = skm.precision_recall_curve(masks.ravel(), maps.ravel(), drop_intermediate=False)
    # scikit-learn: ascending thresholds and a final (precision 1, recall 0) point
    np.testing.assert_allclose(precision, ref_p[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(recall, ref_r[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(thr, ref_t[::-1], atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 5])
def test_pro_curve_matches_a_plain_loop_and_gives_the_aupro(seed, levels):
    masks, maps = random_case(seed, levels)
    fpr, pro, thr = pro_curve(masks, maps)
    regions = []
    for mask, amap in zip(masks, maps):
        lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        regions += [amap[lab == k] for k in range(1, n + 1)]
    normal = maps[~masks]
    assert np.isinf(thr[0]) and fpr[0] == 0 and pro[0] == 0
    for t, f, p in zip(thr[1:], fpr[1:], pro[1:]):
        assert f == pytest.approx(np.mean(normal >= t), abs=1e-12)
        assert p == pytest.approx(np.mean([np.mean(r >= t) for r in regions]), abs=1e-12)
    assert fpr[-1] == pytest.approx(1.0) and pro[-1] == pytest.approx(1.0)
    for limit in (0.05, 0.3, 1.0):
        assert area_up_to(fpr, pro, limit) / limit == pytest.approx(aupro(masks, maps, limit), abs=1e-12)


def test_pixel_curves_are_the_single_curves_from_one_sort():
    masks, maps = random_case(3, levels=7)
    c = pixel_curves(masks, maps)
    for got, ref in (
        (c["roc"], roc_curve(masks, maps)),
        (c["pr"], pr_curve(masks, maps)),
        (c["pro"], pro_curve(masks, maps)),
    ):
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a, b)
    fpr, tpr, _ = c["roc"]
    assert np.trapezoid(tpr, fpr) == pytest.approx(pixel_auroc(masks, maps), abs=1e-12)
    empty = pixel_curves(np.zeros((2, 4, 4), bool) | (np.arange(16).reshape(4, 4) == 0), maps[:2, :4, :4])
    assert "pro" in empty  # one 1-px region per image
    with pytest.raises(ValueError, match="both classes"):
        pixel_curves(np.zeros((2, 4, 4), bool), maps[:2, :4, :4])


def test_confusion_at_counts_and_agrees_with_the_roc_points():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.random(40) * 10) / 10
    fpr, tpr, thr = roc_curve(labels, scores)
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    for k in range(1, len(thr)):
        c = confusion_at(labels, scores, thr[k])
        assert c["tp"] + c["fn"] == n_pos and c["fp"] + c["tn"] == n_neg
        assert c["tp"] == round(tpr[k] * n_pos) and c["fp"] == round(fpr[k] * n_neg)
        assert c["tp"] == int(np.sum((scores >= thr[k]) & (labels == 1)))
    assert confusion_at([0, 1], [0.5, 0.5], 0.5) == {"tp": 1, "fn": 0, "fp": 1, "tn": 0}  # >= is flagged
    assert confusion_at([0, 1], [0.5, 0.5], 0.6) == {"tp": 0, "fn": 1, "fp": 0, "tn": 1}
    with pytest.raises(ValueError):
        confusion_at([0, 1], [0.5], 0.1)
