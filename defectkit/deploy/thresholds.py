"""Decision thresholds chosen without defect images, carried inside the model.

A line needs a good/defect decision per part from the first day, when no defect images
exist yet. The image threshold is set on the scores of held-out normal images (those
the model never trained on) so that at most a stated fraction of them (``fpr``, default
1 %) is flagged. The pixel threshold is the matching quantile of their map values. Never chosen on test data (docs/protocol.md).

The rules, all in plain numpy so the runtime can re-use them:

* **At most ``fpr`` of the held-out normals (``rule="fpr"``).** With the n scores sorted,
  ``s[0] <= ... <= s[n-1]``, and ``k = floor(fpr * n)`` the number of held-out normals
  the rate allows to be flagged, the threshold lies halfway between ``s[n-k-1]`` (the
  largest score that passes) and ``s[n-k]`` (the smallest that is flagged). An image is
  a defect when its score is **at or above** the threshold, so the k largest held-out
  scores are flagged, never more than ``fpr`` of them. With fewer than ``1 / fpr``
  normals k is 0 and ``s[n]`` does not exist: it is extrapolated from the top gap,
  ``s[n] = 2 s[n-1] - s[n-2]``, so the threshold sits half the top gap above the largest
  held-out score. (Ties at the boundary: just above ``s[n-k-1]``.) New normals are
  flagged at about ``(k + 1) / (n + 1)`` on average (an order-statistic fact), so a small
  held-out set cannot promise a small rate.
* **Pixel quantile.** ``numpy.quantile`` at ``1 - pixel_fpr`` of all pixels of the
  held-out normal maps (with millions of pixels the two rules differ by less than one
  pixel's score step). The model
  keeps a compact table of those pixel quantiles (``PIXEL_LEVELS``, 121 levels, dense in
  the upper tail), so a pixel threshold can be re-set without the maps: at a level of the
  table it is exact, between two levels it is interpolated linearly.
* **F1-max (``rule="f1"``).** With real defect images (and masks) for validation, the
  image threshold that maximises F1 over the held-out normals and those defects, and
  the pixel threshold that maximises pixel F1 over the defects' pixels plus the normal
  pixels (counted through the quantile table).
* **Normalised score.** ``0.5 + 0.5 (score - threshold) / (threshold - median)``, clipped
  to [0, 1], where ``median`` is the median held-out normal score: a typical normal image
  reads 0, the threshold 0.5, and a score as far above the threshold as the threshold is
  above a typical normal reads 1. The same map, with the pixel threshold and the median
  normal pixel, fixes the colour scale of overlays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

#: default false-positive rate on held-out normals for the image threshold
DEFAULT_FPR = 0.01

#: quantile levels of the normal-pixel table kept in the model (dense in the upper tail,
#: where pixel thresholds live): 0.00..0.99 by 0.01, 0.991..0.999 by 0.001,
#: 0.9991..0.9999 by 0.0001, 0.99995, 0.99999 and 1
PIXEL_LEVELS: Tuple[float, ...] = tuple(
    sorted(
        {round(i / 100, 6) for i in range(100)}
        | {round(0.99 + i / 1000, 6) for i in range(1, 10)}
        | {round(0.999 + i / 10000, 6) for i in range(1, 10)}
        | {0.99995, 0.99999, 1.0}
    )
)

RULES = ("fpr", "f1", "user")


def check_fpr(fpr: Any, name: str = "fpr") -> float:
    """``fpr`` as a float in (0, 1); ValueError naming ``name`` otherwise (NaN and inf included)."""
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in (0, 1), got {fpr!r}")
    value = float(fpr)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError(f"{name} must be in (0, 1) (a fraction of held-out normal images), got {fpr!r}")
    return value


def check_threshold(value: Any, name: str = "threshold") -> float:
    """``value`` as a finite float; ValueError naming ``name`` for NaN, inf or non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}: with it every image would get the same label")
    return v


def _finite_1d(values: Any, what: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError(f"no {what} to set a threshold from")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or inf; cannot set a threshold from them")
    return a


# ------------------------------------------------------------------------- the rules
def quantile_threshold(normal_scores: Union[Sequence[float], np.ndarray], fpr: float = DEFAULT_FPR) -> float:
    """A threshold that flags (at or above it) at most ``floor(fpr * n)`` of the n ``normal_scores``:
    halfway between the largest score it passes and the smallest it flags (module docstring).

    Why not ``numpy.quantile``: an interpolated quantile flags one of n normals whenever
    n < 1 / fpr (bottle's 31 held-out normals at 1 %: 3.2 %), more than the rate asked for.
    Why halfway: a threshold just above a held-out score would flip that image's label on
    a rounding difference (the exported model's parity check scores those images)."""
    fpr = check_fpr(fpr)
    s = np.sort(_finite_1d(normal_scores, "normal scores"))
    n = s.size
    allowed = int(math.floor(fpr * n + 1e-9))  # the tolerance keeps 0.1 * 10 at 1
    passed = s[n - allowed - 1]
    if allowed:
        flagged = s[n - allowed]
    else:  # none may be flagged: the next order statistic extrapolated from the top gap
        flagged = 2.0 * s[-1] - s[-2] if n >= 2 else s[-1]
    threshold = 0.5 * (passed + flagged)
    return float(threshold if threshold > passed else np.nextafter(passed, np.inf))


def pixel_quantile_table(normal_maps: Any, levels: Sequence[float] = PIXEL_LEVELS) -> List[float]:
    """Quantiles of all pixel values of ``normal_maps`` (any shape) at ``levels``."""
    values = _finite_1d(normal_maps, "normal pixel scores")
    return [float(v) for v in np.quantile(values, np.asarray(levels, dtype=np.float64))]


def table_threshold(levels: Sequence[float], quantiles: Sequence[float], fpr: float) -> float:
    """The value exceeded by ``fpr`` of the pixels a quantile table describes (linear between levels)."""
    fpr = check_fpr(fpr, "pixel fpr")
    return float(np.interp(1.0 - fpr, np.asarray(levels, np.float64), np.asarray(quantiles, np.float64)))


def table_exceedance(levels: Sequence[float], quantiles: Sequence[float], values: Any) -> np.ndarray:
    """Fraction of the table's pixels at or above each of ``values`` (the inverse of :func:`table_threshold`)."""
    q = np.asarray(quantiles, np.float64)
    lv = np.asarray(levels, np.float64)
    # np.interp needs increasing x; a flat stretch of the table (ties) keeps its highest level.
    q_unique, last = np.unique(q[::-1], return_index=True)
    lv_unique = lv[::-1][last]
    cdf = np.interp(np.asarray(values, np.float64), q_unique, lv_unique, left=0.0, right=1.0)
    return 1.0 - cdf


def _best_f1(
    values: np.ndarray, positive: np.ndarray, extra_fp: Optional[Callable[[np.ndarray], np.ndarray]] = None
) -> Tuple[float, float]:
    """(threshold, F1) maximising F1 of ``values >= threshold`` against ``positive``.

    Candidates are the distinct values; ``extra_fp(thresholds)`` adds false positives
    counted elsewhere (normal pixels described by a quantile table). The highest
    threshold reaching the maximum is returned.
    """
    order = np.argsort(-values, kind="stable")
    v = values[order]
    pos = positive[order].astype(bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        raise ValueError("F1-max needs at least one defective sample (or defective pixel)")
    tp = np.cumsum(pos, dtype=np.float64)
    fp = np.cumsum(~pos, dtype=np.float64)
    ends = np.r_[np.nonzero(v[1:] != v[:-1])[0], len(v) - 1]  # last index of each tie group
    tp, fp, thr = tp[ends], fp[ends], v[ends]
    if extra_fp is not None:
        fp = fp + extra_fp(thr)
    f1 = 2.0 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))
    return float(thr[best]), float(f1[best])


def f1_image_threshold(normal_scores: Sequence[float], defect_scores: Sequence[float]) -> Tuple[float, float]:
    """(threshold, F1) of the image threshold maximising F1 over normals (negatives) and defects."""
    normal = _finite_1d(normal_scores, "normal scores")
    defect = _finite_1d(defect_scores, "defect scores")
    values = np.concatenate([normal, defect])
    positive = np.r_[np.zeros(len(normal), bool), np.ones(len(defect), bool)]
    return _best_f1(values, positive)


def f1_pixel_threshold(
    levels: Sequence[float], quantiles: Sequence[float], n_normal_pixels: int, defect_maps: Any, defect_masks: Any
) -> Tuple[float, float]:
    """(threshold, F1) of the pixel threshold maximising pixel F1 over the defect images' pixels
    plus ``n_normal_pixels`` normal pixels whose distribution the quantile table describes."""
    maps = np.asarray(defect_maps, np.float64).ravel()
    masks = np.asarray(defect_masks).astype(bool).ravel()
    if maps.shape != masks.shape:
        raise ValueError(f"defect maps ({maps.size} values) and masks ({masks.size} values) differ in size")
    _finite_1d(maps, "defect pixel scores")
    n = float(n_normal_pixels)
    return _best_f1(maps, masks, lambda t: n * table_exceedance(levels, quantiles, t))


def normalise(scores: Any, threshold: float, reference: float) -> np.ndarray:
    """``0.5 + 0.5 (x - threshold) / |threshold - reference|`` clipped to [0, 1] (scale 1 when equal)."""
    scale = abs(float(threshold) - float(reference))
    if not scale > 0 or not math.isfinite(scale):
        scale = 1.0
    x = np.asarray(scores, dtype=np.float64)
    return np.clip(0.5 + 0.5 * (x - float(threshold)) / scale, 0.0, 1.0)


def _stats(scores: np.ndarray) -> Dict[str, float]:
    return {
        "n_normals": int(len(scores)),
        "min": float(scores.min()),
        "median": float(np.median(scores)),
        "mean": float(scores.mean()),
        "std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
        "max": float(scores.max()),
    }


# ------------------------------------------------------------------------- the record
@dataclass
class Thresholds:
    """Image (and pixel) thresholds with how they were chosen.

    ``image``: score at or above which an image is a defect. ``pixel``: map value at or
    above which a pixel is defective (None when not calibrated). ``rule``: "fpr" (a
    quantile of held-out normal scores), "f1" (F1-max on validation defects) or "user".
    ``fpr`` / ``pixel_fpr``: the false-positive rates the quantile rule was given.
    ``source``: in words, which images the rule was applied to; ``normal_source``: which
    held-out normal images the stored scores come from.
    ``normal_scores``: the held-out normal image scores the rule was applied to, kept
    so the threshold can be re-set without retraining; ``normal_pixel_quantiles``: their
    pixel values' quantiles at ``pixel_levels`` (see ``PIXEL_LEVELS``). ``stats``: summary
    numbers of those scores (``n_normals``, ``min``, ``median``, ``mean``, ``std``,
    ``max``, ``n_normal_pixels``, ``pixel_median``, ``pixel_max``; F1 values for "f1"),
    used e.g. to normalise scores.
    """

    image: float
    pixel: Optional[float] = None
    rule: str = "fpr"
    fpr: Optional[float] = DEFAULT_FPR
    source: str = ""
    normal_scores: List[float] = field(default_factory=list)
    normal_pixel_quantiles: List[float] = field(default_factory=list)
    stats: Dict[str, float] = field(default_factory=dict)
    pixel_fpr: Optional[float] = None
    pixel_levels: List[float] = field(default_factory=list)
    normal_source: str = ""

    def __post_init__(self) -> None:
        self.image = check_threshold(self.image, "image threshold")
        if self.pixel is not None:
            self.pixel = check_threshold(self.pixel, "pixel threshold")
        if self.rule not in RULES:
            raise ValueError(f"threshold rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if (
            self.normal_pixel_quantiles
            and not self.pixel_levels
            and len(self.normal_pixel_quantiles) == len(PIXEL_LEVELS)
        ):
            self.pixel_levels = list(PIXEL_LEVELS)
        if len(self.normal_pixel_quantiles) != len(self.pixel_levels):
            raise ValueError(
                f"pixel quantile table has {len(self.normal_pixel_quantiles)} values for "
                f"{len(self.pixel_levels)} levels"
            )

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Thresholds":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    # ---- derived values --------------------------------------------------------------
    @property
    def has_pixel_table(self) -> bool:
        return bool(self.normal_pixel_quantiles)

    def normalised(self, scores: Any) -> Optional[np.ndarray]:
        """Scores mapped so that the threshold reads 0.5 and the median normal 0 (None without normal stats)."""
        median = self.stats.get("median")
        if median is None:
            return None
        return normalise(scores, self.image, median)

    def colour_scale(self) -> Optional[Tuple[float, float]]:
        """(vmin, vmax) of overlays: the median normal pixel to as far above the pixel
        threshold as that is above the median, so the pixel threshold sits mid-scale."""
        if self.pixel is None:
            return None
        low = self.stats.get("pixel_median")
        if low is None or not low < self.pixel:
            low = self.pixel - 1.0
        return float(low), float(2 * self.pixel - low)

    def flagged_normals(self) -> Optional[float]:
        """Fraction of the stored held-out normal scores at or above the image threshold."""
        if not self.normal_scores:
            return None
        return float(np.mean(np.asarray(self.normal_scores) >= self.image))

    def summary(self) -> Dict[str, Any]:
        """The thresholds and how they were chosen, as JSON values (without the normals' scores)."""
        return {
            "image": self.image,
            "pixel": self.pixel,
            "rule": self.rule,
            "fpr": self.fpr,
            "pixel_fpr": self.pixel_fpr,
            "source": self.source,
        }

    def describe(self) -> str:
        """One line saying what the thresholds are and where they come from."""
        pixel = "none" if self.pixel is None else f"{self.pixel:.4g}"
        head = f"image threshold {self.image:.4g}, pixel threshold {pixel}"
        if self.rule == "fpr":
            pixel_fpr = "" if self.pixel_fpr in (None, self.fpr) else f" (pixels: {self.pixel_fpr:g})"
            how = f"flags at most a fraction {self.fpr:g}{pixel_fpr} of {self.source or 'held-out normals'}"
            n = self.stats.get("n_normals")
            if n and self.fpr is not None and n * self.fpr < 1:
                how += (
                    f"; with {n} normals that is none of them, and new normals are flagged at about {1 / (n + 1):.1%}"
                )
        elif self.rule == "f1":
            how = f"F1-max on {self.source}"
        else:
            how = self.source or "given by the user"
        return f"{head} ({how})"

    # ---- re-setting --------------------------------------------------------------------
    def with_fpr(self, fpr: float, pixel_fpr: Optional[float] = None) -> "Thresholds":
        """The same normals, another false-positive rate (``pixel_fpr`` defaults to ``fpr``)."""
        if not self.normal_scores:
            raise ValueError("these thresholds keep no held-out normal scores; calibrate on normal images instead")
        fpr = check_fpr(fpr)
        pixel_fpr = fpr if pixel_fpr is None else check_fpr(pixel_fpr, "pixel fpr")
        pixel = None
        if self.has_pixel_table:
            pixel = table_threshold(self.pixel_levels, self.normal_pixel_quantiles, pixel_fpr)
        return replace(
            self,
            image=quantile_threshold(self.normal_scores, fpr),
            pixel=pixel,
            rule="fpr",
            fpr=fpr,
            pixel_fpr=pixel_fpr if self.has_pixel_table else None,
            source=self.normal_source or self.source,
            stats={k: v for k, v in self.stats.items() if not k.endswith("_f1")},
        )

    def with_f1(
        self, defect_scores: Any, defect_maps: Any = None, defect_masks: Any = None, source: str = "annotated defects"
    ) -> "Thresholds":
        """F1-max thresholds on validation defects, the held-out normals as negatives."""
        if not self.normal_scores:
            raise ValueError("F1-max needs the held-out normal scores, which these thresholds do not keep")
        image, image_f1 = f1_image_threshold(self.normal_scores, defect_scores)
        stats = dict(self.stats, image_f1=image_f1)
        pixel = self.pixel
        if defect_maps is not None and defect_masks is not None and self.has_pixel_table:
            pixel, stats["pixel_f1"] = f1_pixel_threshold(
                self.pixel_levels,
                self.normal_pixel_quantiles,
                int(self.stats.get("n_normal_pixels", 0)),
                defect_maps,
                defect_masks,
            )
        n_def = int(np.asarray(defect_scores).size)
        normals = self.normal_source or "held-out normals"
        return replace(
            self,
            image=image,
            pixel=pixel,
            rule="f1",
            fpr=None,
            pixel_fpr=None,
            source=f"{n_def} {source} and {normals}",
            stats=stats,
        )

    def with_values(
        self, image: Optional[float] = None, pixel: Optional[float] = None, source: str = "given on the command line"
    ) -> "Thresholds":
        """User-given thresholds (None keeps the stored one); normal statistics are kept for normalising."""
        new_image = self.image if image is None else check_threshold(image, "--threshold")
        new_pixel = self.pixel if pixel is None else check_threshold(pixel, "--pixel-threshold")
        return replace(self, image=new_image, pixel=new_pixel, rule="user", source=source)


def user_thresholds(
    image: float, pixel: Optional[float] = None, source: str = "given on the command line"
) -> Thresholds:
    """Thresholds typed by the user for a model that stores none (no normal statistics)."""
    return Thresholds(
        image=check_threshold(image, "--threshold"),
        pixel=None if pixel is None else check_threshold(pixel, "--pixel-threshold"),
        rule="user",
        fpr=None,
        source=source,
    )


def calibrate(
    normal_scores: Any,
    normal_maps: Any = None,
    fpr: float = DEFAULT_FPR,
    pixel_fpr: Optional[float] = None,
    source: str = "held-out normals",
) -> Thresholds:
    """Thresholds from held-out normal images: the quantile rule on their scores and pixels.

    ``normal_maps`` (N x H x W, optional) gives the pixel threshold and the pixel
    quantile table; ``pixel_fpr`` defaults to ``fpr``.
    """
    fpr = check_fpr(fpr)
    pixel_fpr = fpr if pixel_fpr is None else check_fpr(pixel_fpr, "pixel fpr")
    scores = _finite_1d(normal_scores, "normal scores")
    stats: Dict[str, float] = _stats(scores)
    pixel, table, levels = None, [], []
    if normal_maps is not None:
        maps = np.asarray(normal_maps, dtype=np.float32)
        levels = list(PIXEL_LEVELS)
        table = pixel_quantile_table(maps, levels)
        pixel = table_threshold(levels, table, pixel_fpr)
        stats.update(
            n_normal_pixels=int(maps.size),
            pixel_median=float(np.interp(0.5, levels, table)),
            pixel_max=float(table[-1]),
        )
    return Thresholds(
        image=quantile_threshold(scores, fpr),
        pixel=pixel,
        rule="fpr",
        fpr=fpr,
        source=source,
        normal_scores=[float(s) for s in scores],
        normal_pixel_quantiles=table,
        stats=stats,
        pixel_fpr=pixel_fpr if normal_maps is not None else None,
        pixel_levels=levels,
        normal_source=source,
    )
