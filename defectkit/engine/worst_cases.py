"""Which test images a person should look at first, at a given threshold.

A false alarm is a good image with ``score >= threshold``; the worst are the highest
scores. An escape is a defective image with ``score < threshold``; the worst are the
lowest scores. When a threshold makes no false alarm (or no escape), the images closest
to making one are shown instead, marked as such: the highest-scoring good images and
the lowest-scoring defective ones.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np


def worst_cases(labels, scores, threshold: float, limit: int = 6) -> Dict[str, Dict[str, object]]:
    """-> {"false_alarms": {"indices", "n", "nearest"}, "escapes": {...}}.

    ``indices``: at most ``limit`` image indices, worst first; ``n``: how many false
    alarms (escapes) there are at ``threshold``; ``nearest``: True when there are none
    and ``indices`` are the images closest to becoming one.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D of one length, got {y.shape} and {s.shape}")
    limit = max(0, int(limit))
    good = np.flatnonzero(y == 0)
    bad = np.flatnonzero(y == 1)
    good_desc = good[np.argsort(-s[good], kind="stable")]
    bad_asc = bad[np.argsort(s[bad], kind="stable")]
    fa = good_desc[s[good_desc] >= threshold]
    esc = bad_asc[s[bad_asc] < threshold]

    def pick(hits: np.ndarray, ranked: np.ndarray) -> Dict[str, object]:
        chosen: List[int] = [int(i) for i in (hits if hits.size else ranked)[:limit]]
        return {"indices": chosen, "n": int(hits.size), "nearest": bool(hits.size == 0 and chosen)}

    return {"false_alarms": pick(fa, good_desc), "escapes": pick(esc, bad_asc)}
