"""What prediction needs from a model, whichever engine runs it (torch or the runtime).

``predict`` and the service only ever talk to a :class:`Scorer`: read and preprocess a
chunk of files (``load_batch``) or of images already decoded in memory (``load_arrays``,
what ``defectkit serve`` uses for uploads, so nothing is written to disk), score a
batch, and hand back displayable images. The torch estimator is
adapted by :class:`TorchScorer`; the exported runtime provides its own scorer with the
same methods, so outputs and decisions are produced by one code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from .thresholds import Thresholds

#: (files read, errors as (path, reason))
Loaded = Tuple[Any, List[Path], List[Tuple[Path, str]]]
#: (batch, indices of the images in it, errors as (index, reason))
LoadedArrays = Tuple[Any, List[int], List[Tuple[int, str]]]


class Scorer(Protocol):
    """The prediction interface every backend offers."""

    method: str
    output_size: int

    @property
    def thresholds(self) -> Optional[Thresholds]:
        """The decision thresholds the model carries (None when it has none)."""

    def load_batch(self, paths: Sequence[Path]) -> Loaded:
        """Decode and preprocess ``paths`` -> (batch in the backend's own form, readable paths, errors)."""

    def load_arrays(self, images: Sequence[np.ndarray]) -> LoadedArrays:
        """Preprocess decoded images -> (batch, indices of the images kept, errors as (index, reason)).

        Each image is H x W x 3 uint8 RGB, as ``defectkit.data.images.read_image`` returns it
        (the same conversion rules, so a file and its upload score the same). An image the
        model cannot take (smaller than its smallest input side) is left out with a reason."""

    def score(self, batch: Any) -> Tuple[np.ndarray, np.ndarray]:
        """-> (image scores N, anomaly maps N x S x S) as float32 numpy arrays."""

    def display_images(self, batch: Any) -> List[np.ndarray]:
        """The preprocessed images as S x S x 3 uint8 arrays (what overlays are drawn on)."""

    def describe(self) -> Dict[str, Any]:
        """What the model is, as plain JSON values (``GET /model`` of the service): at least
        ``method``, ``backbone``, ``image_size``, ``output_size`` and ``format``."""


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

    def load_arrays(self, images: Sequence[np.ndarray]) -> LoadedArrays:
        from ..data.batches import DEFAULT_WORKERS, ImageBatch, NativeBatch, _map_ordered, check_input_size
        from ..data.images import ImageReadError

        preprocess, tiled = self.model.preprocess, self.model.tiling_ is not None

        def one(item):
            i, rgb = item
            try:
                check_input_size(Path(f"image {i}"), rgb, preprocess)
                return rgb if tiled else preprocess.apply(rgb)
            except ValueError as exc:  # ImageReadError (too small) or a malformed array
                raise ImageReadError(f"image {i}", getattr(exc, "reason", str(exc))) from None

        # Resizing releases the GIL: the same worker threads as load_batch.
        results = _map_ordered(one, list(enumerate(images)), DEFAULT_WORKERS)
        kept = [i for i, r in enumerate(results) if not isinstance(r, ImageReadError)]
        errors = [(i, r.reason) for i, r in enumerate(results) if isinstance(r, ImageReadError)]
        values: List[Any] = [results[i] for i in kept]
        if tiled:
            return NativeBatch(values), kept, errors
        import torch

        s = preprocess.output_size
        tensor = (
            torch.from_numpy(np.stack([a for a, _ in values])).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
            if values
            else torch.empty((0, 3, s, s), dtype=torch.float32)
        )
        return ImageBatch(tensor, [b for _, b in values]), kept, errors

    def score(self, batch) -> Tuple[np.ndarray, np.ndarray]:
        scores, maps = self.model.predict(batch)
        return np.asarray(scores, np.float32), np.asarray(maps, np.float32)

    def describe(self) -> Dict[str, Any]:
        params = self.model.get_params()
        keep = ("backbone", "image_size", "crop_size", "resize", "tile_size", "tile_overlap", "batch_size")
        return {
            "method": self.method,
            "format": "torch",
            "output_size": int(self.output_size),
            **{k: params.get(k) for k in keep if k in params},
        }

    def display_images(self, batch) -> List[np.ndarray]:
        from ..utils.images import to_uint8

        if hasattr(batch, "boxes"):  # ImageBatch
            batch = batch.images
        elif isinstance(getattr(batch, "images", None), list):  # NativeBatch: already uint8
            return list(batch.images)
        return list(to_uint8(batch))
