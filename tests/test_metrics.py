"""Checks of defectkit.metrics against independent computations (docs/protocol.md#metrics).

AUROC and AP are compared with scikit-learn, F1-max with a brute-force loop over
sklearn.metrics.f1_score, AUPRO with a plain per-threshold, per-region reference
written below, plus one case computed by hand.
"""

import time

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from defectkit.metrics import (
    aupro,
    evaluate,
    f1_max,
    image_auroc,
    pixel_ap,
    pixel_auroc,
)

EIGHT = np.ones((3, 3), dtype=int)  # MVTec's structure: 8-connectivity
FOUR = ndimage.generate_binary_structure(2, 1)  # 4-connectivity, for a wrong variant


# ----------------------------------------------------------------- reference code
def brute_aupro(masks, maps, fpr_limit=0.3, structure=EIGHT, region_weighted=True, label_3d=False):
    """Plain AUPRO: loop over every unique threshold, label each mask separately.

    structure / region_weighted / label_3d exist only to build wrong variants."""
    masks, maps = np.asarray(masks), np.asarray(maps)
    regions = []
    normal = []
    if label_3d:  # wrong on purpose: regions may join across neighbouring images
        lab, n = ndimage.label(masks, structure=np.ones((3, 3, 3), dtype=int))
        regions = [maps[lab == k] for k in range(1, n + 1)]
    for mask, amap in zip(masks, maps):
        if not label_3d:
            lab, n = ndimage.label(mask, structure=structure)
            for k in range(1, n + 1):
                regions.append(amap[lab == k])
        normal.append(amap[mask == 0])
    normal = np.concatenate(normal)
    all_region_pixels = np.concatenate(regions)

    curve = [(0.0, 0.0)]  # threshold above every score
    for t in sorted(np.unique(maps), reverse=True):
        fpr = np.mean(normal >= t)
        if region_weighted:
            pro = np.mean([np.mean(r >= t) for r in regions])
        else:  # wrong on purpose: every defective pixel weighs equally
            pro = np.mean(all_region_pixels >= t)
        curve.append((fpr, pro))

    area = 0.0
    for (x0, y0), (x1, y1) in zip(curve[:-1], curve[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # close the curve at exactly fpr_limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def brute_f1_max(labels, scores):
    best = 0.0
    for t in np.unique(scores):
        best = max(best, f1_score(labels, scores >= t, zero_division=0))
    return best


def random_masks(rng, n=6, h=12, w=12, empty=(0,)):
    """Rectangles and single pixels of different sizes, several per image; the
    images listed in ``empty`` have no defect."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if i in empty:
            continue
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            dy, dx = rng.integers(1, 5, size=2)
            masks[i, y : y + dy, x : x + dx] = True
        masks[i, rng.integers(0, h), rng.integers(0, w)] = True  # often a 1-px region
    return masks


def random_maps(rng, masks, levels=None):
    maps = rng.random(masks.shape) + 0.7 * masks
    if levels:  # coarse quantisation: many ties, also across classes
        maps = np.round(maps * levels) / levels
    return maps


# -------------------------------------------------------------------------- AUROC
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("levels", [None, 4, 20])
def test_image_auroc_matches_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=200)
    s = rng.normal(size=200) + 0.8 * y
    if levels:
        s = np.round(s * levels / 4) / levels
    assert image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_image_auroc_hand_made():
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert image_auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # tie = half credit
    assert image_auroc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert image_auroc([0, 0, 1], [0.3, 0.2, 0.1]) == 0.0
    # 1 good vs 2 defective: (1 + 0.5) / 2
    assert image_auroc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 10])
def test_pixel_auroc_matches_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng)
    maps = random_maps(rng, masks, levels).astype(np.float32)
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------- AP
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 3, 10])
def test_pixel_ap_matches_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng)
    maps = random_maps(rng, masks, levels)
    expected = average_precision_score(masks.ravel(), maps.ravel())
    assert pixel_ap(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_pixel_ap_hand_made():
    # scikit-learn's docstring example: (1/2)(1/1) + (1/2)(2/3) = 0.8333...
    masks = np.array([[[0, 0], [1, 1]]])
    maps = np.array([[[0.1, 0.4], [0.35, 0.8]]])
    assert pixel_ap(masks, maps) == pytest.approx(5 / 6)
    # one tie group with 1 positive and 1 negative, then a positive:
    # recall 1/2 at precision 1/2, then recall 1 at precision 2/3 -> 1/4 + 1/3
    masks = np.array([[[1, 0, 1]]])
    maps = np.array([[[0.9, 0.9, 0.1]]])
    assert pixel_ap(masks, maps) == pytest.approx(1 / 4 + 1 / 3)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()))


# ------------------------------------------------------------------------- F1-max
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [None, 5])
def test_f1_max_matches_brute_force(seed, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=60)
    s = rng.normal(size=60) + 0.7 * y
    if levels:
        s = np.round(s * levels / 3) / levels
    f1, thr = f1_max(y, s)
    assert f1 == pytest.approx(brute_f1_max(y, s), abs=1e-12)
    # the reported threshold reaches the reported F1 with the rule score >= thr
    assert f1_score(y, s >= thr) == pytest.approx(f1, abs=1e-12)


def test_f1_max_pixel_level_flattened():
    rng = np.random.default_rng(7)
    masks = random_masks(rng, n=3, h=8, w=8)
    maps = random_maps(rng, masks, levels=8)
    f1, thr = f1_max(masks, maps)  # same shapes, flattened inside
    assert f1 == pytest.approx(brute_f1_max(masks.ravel(), maps.ravel()), abs=1e-12)
    assert f1_score(masks.ravel(), maps.ravel() >= thr) == pytest.approx(f1, abs=1e-12)


def test_f1_max_hand_made():
    # threshold 0.8 -> TP 1, FP 0, FN 1: F1 2/3; 0.35 -> TP 2, FP 1: F1 4/5;
    # 0.1 -> TP 2, FP 2: F1 2/3.  Best 0.8 at threshold 0.35.
    f1, thr = f1_max([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert f1 == pytest.approx(0.8)
    assert thr == 0.35


# -------------------------------------------------------------------------- AUPRO
def hand_case():
    """Two 2x4 images, 10 normal pixels, 3 regions (8-connectivity).

    Image A: r1 = the diagonal pair (0,0),(1,1) (one region only with 8-connectivity),
             r2 = (1,3) alone.  Image B: r3 = (1,1),(1,2),(1,3).
    B's r3 touches the position of A's r2 in the next image; they must stay apart.
    """
    masks = np.array(
        [
            [[1, 0, 0, 0], [0, 1, 0, 1]],
            [[0, 0, 0, 0], [0, 1, 1, 1]],
        ]
    )
    maps = np.array(
        [
            [[0.7, 0.8, 0.1, 0.1], [0.1, 0.7, 0.7, 0.9]],
            [[0.6, 0.6, 0.1, 0.1], [0.1, 0.7, 0.6, 0.5]],
        ]
    )
    return masks, maps


def test_aupro_hand_computed():
    # Normal scores: 0.8, 0.7, 0.6, 0.6 and six 0.1 (10 pixels).
    # Curve points (FPR, PRO) by decreasing threshold, PRO = mean of r1, r2, r3:
    #   t=+inf: (0,   0)
    #   t=0.9 : (0,   (0 + 1 + 0)/3   = 1/3)
    #   t=0.8 : (0.1, 1/3)
    #   t=0.7 : (0.2, (1 + 1 + 1/3)/3 = 7/9)   tie group holds a normal pixel too,
    #                                          so the segment is a diagonal
    #   t=0.6 : (0.4, (1 + 1 + 2/3)/3 = 8/9)
    # At FPR 0.3 (halfway between 0.2 and 0.4) PRO = (7/9 + 8/9)/2 = 5/6.
    # Area on [0, 0.3]: 0.1*(1/3)          = 12/360
    #                 + 0.1*(1/3 + 7/9)/2  = 20/360
    #                 + 0.1*(7/9 + 5/6)/2  = 29/360   -> 61/360
    # AUPRO = (61/360) / 0.3 = 61/108.
    masks, maps = hand_case()
    assert aupro(masks, maps) == pytest.approx(61 / 108, abs=1e-12)
    assert brute_aupro(masks, maps) == pytest.approx(61 / 108, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 5, 20])
def test_aupro_matches_brute_force(seed, levels):
    rng = np.random.default_rng(seed)
    masks = random_masks(rng, empty=(0, 3))
    maps = random_maps(rng, masks, levels)
    assert aupro(masks, maps) == pytest.approx(brute_aupro(masks, maps), abs=1e-10)


@pytest.mark.parametrize("fpr_limit", [0.01, 0.05, 0.3, 0.5, 1.0])
def test_aupro_other_limits_match_brute_force(fpr_limit):
    rng = np.random.default_rng(11)
    masks = random_masks(rng, n=4, h=10, w=10)
    maps = random_maps(rng, masks, levels=12)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(
        brute_aupro(masks, maps, fpr_limit=fpr_limit), abs=1e-10
    )


def test_aupro_limit_on_a_curve_point():
    # hand case with fpr_limit = 0.2, a curve point: (12/360 + 20/360) / 0.2 = 4/9
    masks, maps = hand_case()
    assert aupro(masks, maps, fpr_limit=0.2) == pytest.approx(4 / 9, abs=1e-12)


def test_aupro_region_weighting_small_defect_counts_as_much_as_large():
    # One 1-px region fully detected, one 15-px region missed: PRO = 1/2 for
    # thresholds above all normal pixels, whereas pixel weighting would give 1/16.
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 0, 0] = True
    masks[0, 5:8, 3:8] = True
    maps = np.zeros((1, 8, 8))
    maps[0, 0, 0] = 1.0
    maps[0, 5:8, 3:8] = -1.0  # below every normal pixel
    # curve: (0, 0) -> (0, 1/2) -> (1, 1/2) -> (1, 1); area on [0, 0.3] = 0.3 * 1/2
    assert aupro(masks, maps) == pytest.approx(0.5, abs=1e-12)


def test_aupro_curve_starts_at_origin_and_ties_are_not_split():
    # One 1-px region tied at the top with one of 5 normal pixels.
    # Curve: (0, 0) -> t=0.9: (0.2, 1) -> t=0.1: (1, 1), the first segment a diagonal.
    # Area on [0, 0.3] = 0.2 * (0 + 1)/2 + 0.1 * 1 = 0.2  -> AUPRO = 2/3.
    # (Splitting the tie anomalous-first would give 1, normal-first 1/3.)
    masks = np.array([[[1, 0, 0, 0, 0, 0]]])
    maps = np.array([[[0.9, 0.9, 0.1, 0.1, 0.1, 0.1]]])
    assert aupro(masks, maps) == pytest.approx(2 / 3, abs=1e-12)
    assert brute_aupro(masks, maps) == pytest.approx(2 / 3, abs=1e-12)


# ------------------------------------------------------------ the tests can fail
def test_wrong_variants_give_different_values():
    """Deliberately wrong AUPRO variants differ from the right value, on the hand
    case and on random data, so the comparisons above have teeth."""
    masks, maps = hand_case()
    right = aupro(masks, maps)
    assert right == pytest.approx(61 / 108)
    wrong = {
        "pixel-weighted PRO": brute_aupro(masks, maps, region_weighted=False),
        "limit 0.5": brute_aupro(masks, maps, fpr_limit=0.5),
        "4-connectivity": brute_aupro(masks, maps, structure=FOUR),
        "labels across images (3-D)": brute_aupro(masks, maps, label_3d=True),
    }
    for name, value in wrong.items():
        assert abs(value - right) > 1e-3, name

    rng = np.random.default_rng(3)
    masks = random_masks(rng, empty=(0,))
    maps = random_maps(rng, masks, levels=10)
    right = aupro(masks, maps)
    assert abs(brute_aupro(masks, maps, region_weighted=False) - right) > 1e-4
    assert abs(brute_aupro(masks, maps, fpr_limit=0.5) - right) > 1e-4


# ------------------------------------------------------------------------- errors
def test_aupro_without_regions_raises():
    masks = np.zeros((2, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="anomalous region"):
        aupro(masks, np.random.default_rng(0).random((2, 4, 4)))


def test_shape_and_value_validation():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shape"):
        pixel_auroc(np.zeros((2, 4, 4)), rng.random((2, 4, 5)))
    with pytest.raises(ValueError, match="shape"):
        image_auroc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        pixel_ap(np.full((1, 2, 2), 255), rng.random((1, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="both classes"):
        image_auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="fpr_limit"):
        masks, maps = hand_case()
        aupro(masks, maps, fpr_limit=0)


# ----------------------------------------------------------------------- evaluate
def test_evaluate_matches_single_metrics():
    rng = np.random.default_rng(5)
    masks = random_masks(rng, n=8, empty=(0, 1, 2))
    labels = masks.reshape(8, -1).any(axis=1).astype(int)
    maps = random_maps(rng, masks, levels=15).astype(np.float32)
    scores = maps.reshape(8, -1).max(axis=1)
    r = evaluate(labels, scores, masks, maps)
    assert set(r) == {
        "image_auroc",
        "image_f1_max",
        "image_f1_threshold",
        "pixel_auroc",
        "aupro",
        "pixel_ap",
        "pixel_f1_max",
        "pixel_f1_threshold",
    }
    assert r["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert r["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))
    assert r["pixel_ap"] == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()))
    assert r["aupro"] == pytest.approx(brute_aupro(masks, maps), abs=1e-10)
    assert (r["image_f1_max"], r["image_f1_threshold"]) == f1_max(labels, scores)
    assert (r["pixel_f1_max"], r["pixel_f1_threshold"]) == f1_max(masks, maps)
    for k in ("image_auroc", "image_f1_max", "pixel_auroc", "aupro", "pixel_ap", "pixel_f1_max"):
        assert 0.0 <= r[k] <= 1.0

    assert set(evaluate(labels, scores)) == {"image_auroc", "image_f1_max", "image_f1_threshold"}


def test_evaluate_uses_only_images_with_masks():
    rng = np.random.default_rng(6)
    masks = random_masks(rng, n=6, empty=(0, 1))
    labels = masks.reshape(6, -1).any(axis=1).astype(int)
    maps = random_maps(rng, masks, levels=10)
    scores = maps.reshape(6, -1).max(axis=1)
    partial = [masks[i] if i != 4 else None for i in range(6)]
    keep = [0, 1, 2, 3, 5]
    r = evaluate(labels, scores, partial, maps)
    assert r["pixel_auroc"] == pytest.approx(pixel_auroc(masks[keep], maps[keep]))
    assert r["aupro"] == pytest.approx(aupro(masks[keep], maps[keep]))


def test_evaluate_validation():
    rng = np.random.default_rng(0)
    masks = random_masks(rng, n=4, empty=(0,))
    labels = np.array([0, 1, 1, 1])
    maps = rng.random(masks.shape)
    with pytest.raises(ValueError, match="N = 4"):
        evaluate(labels, [0.1, 0.2, 0.3, 0.4], masks, maps[:3])
    with pytest.raises(ValueError, match="shape"):
        evaluate(labels, [0.1, 0.2, 0.3, 0.4], masks[:, :, :5], maps)
    with pytest.raises(ValueError, match="both"):
        evaluate(labels, [0.1, 0.2, 0.3, 0.4], masks, None)
    with pytest.raises(ValueError, match=r"good images .*\[0\]"):
        evaluate(np.array([0, 1, 1, 1]), [0.1, 0.2, 0.3, 0.4], np.ones_like(masks), maps)


# -------------------------------------------------------------------------- speed
@pytest.mark.slow
def test_evaluate_speed_100_images_256():
    rng = np.random.default_rng(0)
    n, h, w = 100, 256, 256
    labels = np.r_[np.zeros(40, int), np.ones(60, int)]
    masks = np.zeros((n, h, w), dtype=bool)
    yy, xx = np.ogrid[:h, :w]
    for i in range(40, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(20, 236, size=2)
            r = rng.integers(3, 25)
            masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    maps = (rng.random((n, h, w), dtype=np.float32) + 0.8 * masks).astype(np.float32)
    scores = maps.reshape(n, -1).max(axis=1)

    # CPU time of this process, not wall time: the bound is on the work done, so other jobs
    # sharing the machine's cores cannot fail the test
    t0 = time.process_time()
    r = evaluate(labels, scores, masks, maps)
    elapsed = time.process_time() - t0
    print(f"evaluate(100 x 256 x 256, all metrics): {elapsed:.2f} s CPU")
    assert elapsed < 10.0
    assert 0.5 < r["aupro"] <= 1.0 and 0.5 < r["pixel_auroc"] <= 1.0
