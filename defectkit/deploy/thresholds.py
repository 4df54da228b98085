"""Decision thresholds chosen without defect images, carried inside the model.

A line needs a good/defect decision per part from the first day, when no defect images
exist yet. The image threshold is a quantile of the scores of held-out normal images
(those the model never trained on): the score that a stated fraction of normals
(``fpr``, default 1 %) exceeds. Never chosen on test data (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional

#: default false-positive rate on held-out normals for the image threshold
DEFAULT_FPR = 0.01


@dataclass
class Thresholds:
    """Image (and pixel) thresholds with how they were chosen.

    ``image``: score at or above which an image is a defect. ``pixel``: map value at or
    above which a pixel is defective (None when not calibrated). ``rule``: "fpr" (a
    quantile of held-out normal scores), "f1" (F1-max on validation defects) or "user".
    ``normal_scores``: the held-out normal image scores the rule was applied to, kept
    so the threshold can be re-set without retraining. ``stats``: summary numbers of
    those scores (min, median, max, ...), used e.g. to normalise scores.
    """

    image: float
    pixel: Optional[float] = None
    rule: str = "fpr"
    fpr: Optional[float] = DEFAULT_FPR
    source: str = ""
    normal_scores: List[float] = field(default_factory=list)
    normal_pixel_quantiles: List[float] = field(default_factory=list)
    stats: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Thresholds":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
