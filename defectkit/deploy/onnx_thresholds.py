"""``defectkit threshold --model M.onnx``: re-set an exported model's thresholds, torch-free.

The same rules as ``AnomalyModel.calibrate`` (``deploy.thresholds``): without ``normals``
the held-out normal scores stored in the file are re-used at the new false-positive rate;
with ``normals`` they are scored by the runtime; ``defects`` (annotated, with masks) give
F1-max. The graph is untouched; only the metadata is re-written (atomically).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .onnx_model import OnnxMetadata, rewrite_metadata
from .thresholds import Thresholds, calibrate, check_fpr

PathLike = Union[str, Path]
#: files scored per runtime call while calibrating (bounds memory)
CHUNK = 32


def _score_all(scorer, paths: Sequence[Path]) -> Tuple[np.ndarray, np.ndarray]:
    scores, maps = [], []
    for start in range(0, len(paths), CHUNK):
        s, m = scorer.predict(paths[start : start + CHUNK])
        scores.append(s)
        maps.append(m)
    return np.concatenate(scores), np.concatenate(maps)


def rethreshold_onnx(
    path: PathLike,
    out: PathLike,
    fpr: Optional[float] = None,
    pixel_fpr: Optional[float] = None,
    normals: Optional[Sequence[PathLike]] = None,
    defects=None,
    normals_source: Optional[str] = None,
    defects_source: Optional[str] = None,
) -> Tuple[Optional[Thresholds], Thresholds]:
    """Re-set the thresholds of ONNX model ``path`` and write it to ``out`` -> (before, after)."""
    from .onnx_scorer import OnnxScorer

    scorer = OnnxScorer(path)
    meta: OnnxMetadata = scorer.metadata
    before = meta.thresholds
    rate = check_fpr(fpr) if fpr is not None else float(meta.params.get("fpr", 0.01))
    if normals is not None:
        paths = [Path(p) for p in normals]
        scores, maps = _score_all(scorer, paths)
        after = calibrate(scores, maps, rate, pixel_fpr, f"{len(paths)} normal images in {normals_source}")
    else:
        if before is None or not before.normal_scores:
            raise ValueError(
                f"{path} stores no held-out normal scores: give normal images it did not train on (--normals DIR)"
            )
        after = before.with_fpr(rate, pixel_fpr)
    if defects is not None:
        from ..data.images import read_mask

        defects = list(defects)
        if not defects:
            raise ValueError("no defect images given for F1-max")
        d_scores, d_maps = _score_all(scorer, [Path(d.path) for d in defects])
        masks = None
        if all(getattr(d, "mask_path", None) is not None for d in defects):
            masks = np.stack([scorer.preprocess.mask_array(read_mask(d.mask_path)) for d in defects])
        after = after.with_f1(
            d_scores, d_maps if masks is not None else None, masks, f"annotated defects in {defects_source}"
        )
    meta.thresholds = after
    meta.params = dict(meta.params, fpr=rate)
    rewrite_metadata(path, meta, out)
    return before, after
