"""The validation split: which normal training images are held out to choose epochs and settings.

PROTOCOL (docs/protocol.md#validation-split): nothing is ever chosen on the test set, so every
trained method holds out a seeded fraction of its normal training images instead.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np


def split_validation(
    n: int,
    fraction: float,
    seed: int,
    min_val: int = 2,
    min_train: int = 2,
    groups: Optional[Sequence[int]] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Seeded split of ``n`` normal training images -> (train indices, validation indices or None).

    No validation split when ``fraction`` is 0 or there are too few images for both parts.
    Indices are returned sorted so the training order does not depend on the draw.

    ``groups`` (one id per item): items of one group go to the same side. Tiled training
    passes the source image of each tile, so a held-out tile never overlaps a trained one;
    fraction and minimums then count groups (source images), not items.
    """
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have one entry per item ({n}), got shape {groups.shape}")
        ids, inverse = np.unique(groups, return_inverse=True)
        g_train, g_val = split_validation(len(ids), fraction, seed, min_val, min_train)
        if g_val is None:
            return np.arange(n), None
        held = np.isin(inverse, g_val)
        return np.flatnonzero(~held), np.flatnonzero(held)
    n_val = int(round(fraction * n))
    if fraction <= 0 or n - max(n_val, min_val) < min_train:
        return np.arange(n), None
    n_val = max(n_val, min_val)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
