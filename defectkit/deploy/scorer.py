"""What prediction needs from a model, whichever engine runs it (torch or the runtime).

``predict`` and the service only ever talk to a :class:`Scorer`: read and preprocess a
chunk of files, score a batch, and hand back displayable images. The torch estimator is
adapted by :class:`TorchScorer`; the exported runtime provides its own scorer with the
same methods, so outputs and decisions are produced by one code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .thresholds import Thresholds

#: (files read, errors as (path, reason))
Loaded = Tuple[Any, List[Path], List[Tuple[Path, str]]]


class Scorer(Protocol):
    """The prediction interface every backend offers."""

    method: str
    output_size: int

    @property
    def thresholds(self) -> Optional[Thresholds]:
        """The decision thresholds the model carries (None when it has none)."""

    def load_batch(self, paths: Sequence[Path]) -> Loaded:
        """Decode and preprocess ``paths`` -> (batch in the backend's own form, readable paths, errors)."""

    def score(self, batch: Any) -> Tuple[np.ndarray, np.ndarray]:
        """-> (image scores N, anomaly maps N x S x S) as float32 numpy arrays."""

    def display_images(self, batch: Any) -> List[np.ndarray]:
        """The preprocessed images as S x S x 3 uint8 arrays (what overlays are drawn on)."""


class TorchScorer:
    """A fitted ``AnomalyModel`` seen as a :class:`Scorer`."""

    def __init__(self, model):
        self.model = model
        self.method = model.method
        self.output_size = model.preprocess.output_size

    @property
    def thresholds(self) -> Optional[Thresholds]:
        return getattr(self.model, "thresholds_", None)

    def load_batch(self, paths: Sequence[Path]) -> Loaded:
        # The model's own inputs: preprocessed with each image's real-pixel box (resize="keep"
        # padding is masked by predict), or full-resolution images for a tiled model.
        batch, ok, errors = self.model.load_inputs(list(paths), on_error="skip")
        return batch, [Path(p) for p in ok], [(Path(p), r) for p, r in errors]

    def score(self, batch) -> Tuple[np.ndarray, np.ndarray]:
        scores, maps = self.model.predict(batch)
        return np.asarray(scores, np.float32), np.asarray(maps, np.float32)

    def display_images(self, batch) -> List[np.ndarray]:
        from ..utils.images import to_uint8

        if hasattr(batch, "boxes"):  # ImageBatch
            batch = batch.images
        elif isinstance(getattr(batch, "images", None), list):  # NativeBatch: already uint8
            return list(batch.images)
        return list(to_uint8(batch))
