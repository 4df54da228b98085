"""Does the exported graph score like the torch model? Checked on real images at export.

Both paths start from the same files: the torch model through its own loader and
``predict`` (the numbers users got so far), the runtime through ``OnnxScorer`` (its own
numpy preprocessing and ONNX Runtime), at batch 1 and at batch 8. Differences are taken
relative to the score scale, the largest absolute image score the torch model gives on
those images, so one tolerance fits methods whose scores are ~0.1 and ~30 alike; maps are
measured against the same scale. Labels at the stored image threshold must be identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

#: max |difference| / score scale allowed for scores and maps
PARITY_TOLERANCE = 1e-4
#: batch sizes the runtime is checked at
PARITY_BATCHES = (1, 8)
#: at most this many check images (the held-out normals of a bottle model are ~30)
MAX_CHECK_IMAGES = 16


class ParityError(ValueError):
    """The exported graph does not score like the torch model (the message names the numbers)."""


@dataclass
class BatchParity:
    batch_size: int
    max_score_diff: float
    max_map_diff: float
    relative_score_diff: float
    relative_map_diff: float
    label_mismatches: Optional[int]


@dataclass
class ParityReport:
    images: List[str]
    image_source: str
    score_scale: float
    tolerance: float
    threshold: Optional[float]
    batches: List[BatchParity] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return all(
            b.relative_score_diff <= self.tolerance and b.relative_map_diff <= self.tolerance and not b.label_mismatches
            for b in self.batches
        )

    def summary(self) -> str:
        parts = []
        for b in self.batches:
            labels = "" if b.label_mismatches is None else f", {b.label_mismatches} label mismatches"
            parts.append(
                f"batch {b.batch_size}: max |score diff| {b.max_score_diff:.3g} "
                f"({b.relative_score_diff:.3g} of the score scale), max |map diff| {b.max_map_diff:.3g} "
                f"({b.relative_map_diff:.3g}){labels}"
            )
        return (
            f"{len(self.images)} images ({self.image_source}), score scale {self.score_scale:.4g}, "
            f"tolerance {self.tolerance:g}: " + "; ".join(parts)
        )

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["holds"] = self.holds
        return d


def check_parity(
    model, scorer, paths: Sequence[Path], image_source: str, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Score ``paths`` with the torch ``model`` and the runtime ``scorer`` -> ParityReport."""
    from ..deploy.scorer import TorchScorer

    torch_scorer = TorchScorer(model)
    batch, ok, errors = torch_scorer.load_batch(paths)
    if errors:
        path, reason = errors[0]
        raise ValueError(f"parity check image {path} cannot be read: {reason}")
    ref_scores, ref_maps = torch_scorer.score(batch)
    scale = float(np.max(np.abs(ref_scores))) if len(ref_scores) else 0.0
    scale = scale if scale > 0 else 1.0
    thresholds = getattr(model, "thresholds_", None)
    threshold = None if thresholds is None else float(thresholds.image)
    report = ParityReport([str(p) for p in ok], image_source, scale, tolerance, threshold)
    saved = scorer.batch_size
    try:
        for size in PARITY_BATCHES:
            scorer.batch_size = size
            arrays, ok_rt, errors_rt = scorer.load_batch(ok)
            if errors_rt:
                path, reason = errors_rt[0]
                raise ValueError(f"the runtime cannot read parity check image {path}: {reason}")
            scores, maps = scorer.score(arrays)
            ds = float(np.max(np.abs(scores - ref_scores)))
            dm = float(np.max(np.abs(maps - ref_maps)))
            mismatches = None if threshold is None else int(np.sum((scores >= threshold) != (ref_scores >= threshold)))
            report.batches.append(BatchParity(size, ds, dm, ds / scale, dm / scale, mismatches))
    finally:
        scorer.batch_size = saved
    return report
