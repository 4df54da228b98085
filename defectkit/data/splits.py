"""The validation split: which normal training images are held out to choose epochs and settings.

PROTOCOL (docs/protocol.md#validation-split): nothing is ever chosen on the test set, so every
trained method holds out a seeded fraction of its normal training images instead.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

def split_validation(
    n: int, fraction: float, seed: int, min_val: int = 2, min_train: int = 2
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Seeded split of ``n`` normal training images -> (train indices, validation indices or None).

    No validation split when ``fraction`` is 0 or there are too few images for both parts.
    Indices are returned sorted so the training order does not depend on the draw.
    """
    n_val = int(round(fraction * n))
    if fraction <= 0 or n - max(n_val, min_val) < min_train:
        return np.arange(n), None
    n_val = max(n_val, min_val)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
