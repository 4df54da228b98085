"""The exported model run by ONNX Runtime: a :class:`~defectkit.deploy.scorer.Scorer` without torch.

Files (``load_batch``) and images already decoded in memory (``load_arrays``, the
service's uploads) are preprocessed by the same numpy + Pillow code the torch path uses
(``data.preprocess.read_model_array``: ``read_image``, the size check, ``Preprocess.apply``),
converted to float32 in [0, 1] the same way, and scored by the graph in batches of
``batch_size``. A ``resize="keep"`` model's graph also takes the real-pixel mask of each
image, so its padding is masked exactly as ``AnomalyModel.predict`` masks it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.images import ImageReadError
from ..data.preprocess import MIN_IMAGE_SIDE, Box, Preprocess, check_input_size, read_model_array
from .onnx_model import IMAGE_INPUT, MAP_OUTPUT, SCORE_OUTPUT, VALID_INPUT, OnnxMetadata
from .scorer import Loaded, LoadedArrays

#: decode threads of ``load_batch`` (decoding and Pillow's resize release the GIL)
DEFAULT_DECODE_WORKERS = 2


@dataclass
class ArrayBatch:
    """Preprocessed images (N x S x S x 3 uint8) and the Box of each image's real pixels."""

    images: np.ndarray
    boxes: List[Box]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def padded(self) -> bool:
        return any(not b.full for b in self.boxes)

    def valid(self) -> np.ndarray:
        """N x S x S float32, 1 on real pixels."""
        s = self.images.shape[1]
        if not self.boxes:
            return np.zeros((0, s, s), np.float32)
        return np.stack([b.mask() for b in self.boxes]).astype(np.float32)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """N x S x S x 3 uint8 -> N x 3 x S x S float32 in [0, 1] (the torch path's ``float().div_(255)``)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)


def session_options(threads: Optional[int] = None):
    """ORT session options: all graph optimisations, ``threads`` intra-op threads (None: ORT's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


class OnnxScorer:
    """An exported ``.onnx`` model (or its bytes) as a Scorer; ``predict`` mirrors ``AnomalyModel.predict``."""

    def __init__(
        self,
        model: Union[str, Path, bytes],
        batch_size: int = 8,
        threads: Optional[int] = None,
        decode_workers: int = DEFAULT_DECODE_WORKERS,
        name: Optional[str] = None,
    ):
        import onnxruntime as ort

        self.path = None if isinstance(model, bytes) else Path(model)
        where = name or (str(self.path) if self.path is not None else "<onnx bytes>")
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(
                f"{where}: cannot be opened as an ONNX model ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        self.metadata = OnnxMetadata.from_props(self.session.get_modelmeta().custom_metadata_map, where)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.method = self.metadata.method
        pre = self.metadata.preprocess
        self.preprocess = Preprocess(
            pre.get("image_size", 256), pre.get("crop_size"), pre.get("resize", "square"), min_input_side=MIN_IMAGE_SIDE
        )
        self.output_size = self.preprocess.output_size
        self.thresholds = self.metadata.thresholds
        self.takes_valid = VALID_INPUT in [i.name for i in self.session.get_inputs()]

    # ---- Scorer ---------------------------------------------------------------------------
    def load_batch(self, paths: Sequence[Union[str, Path]]) -> Loaded:
        files = [Path(p) for p in paths]
        batch, kept, errors = self._preprocess_all(files, lambda path: read_model_array(path, self.preprocess))
        return batch, [files[i] for i in kept], [(files[i], reason) for i, reason in errors]

    def load_arrays(self, images: Sequence[np.ndarray]) -> LoadedArrays:
        """Decoded uploads, preprocessed exactly as ``load_batch`` preprocesses a file's pixels."""

        def one(item: Tuple[int, np.ndarray]):
            i, rgb = item
            try:
                return self.preprocess.apply(check_input_size(Path(f"image {i}"), rgb, self.preprocess))
            except ValueError as exc:  # ImageReadError (too small) or a malformed array
                raise ImageReadError(f"image {i}", getattr(exc, "reason", str(exc))) from None

        return self._preprocess_all(list(enumerate(images)), one)

    def describe(self) -> Dict[str, Any]:
        """What the file says it is (its ``defectkit.*`` metadata), as plain JSON values."""
        meta = self.metadata
        backbone = meta.backbone if isinstance(meta.backbone, dict) else {"name": meta.backbone}
        t = self.thresholds
        return {
            "method": self.method,
            "format": "onnx",
            "output_size": int(self.output_size),
            "backbone": backbone.get("name"),
            "backbone_weights": backbone.get("weights_id"),
            "image_size": self.preprocess.image_size,
            "crop_size": self.preprocess.crop_size,
            "resize": self.preprocess.resize,
            "batch_size": self.batch_size,
            "thresholds": None if t is None else t.summary(),
            "thresholds_chosen": meta.thresholds_chosen,
            "exported_by_defectkit": meta.defectkit_version,
            "onnx_metadata_version": meta.format_version,
            "model_format_version": meta.model_format_version,
        }

    def _preprocess_all(
        self, items: Sequence[Any], preprocess_one: Callable[[Any], Tuple[np.ndarray, Box]]
    ) -> LoadedArrays:
        """``preprocess_one`` over ``items`` in the decode threads -> (ArrayBatch, kept indices, (index, reason)).

        The one place both entry points stack images, so a file and its decoded upload give the same batch."""

        def run(item):
            try:
                return preprocess_one(item)
            except ImageReadError as exc:
                return exc

        if self.decode_workers > 1 and len(items) > 1:
            with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="defectkit-decode") as pool:
                results = list(pool.map(run, items))
        else:
            results = [run(item) for item in items]
        kept = [i for i, r in enumerate(results) if not isinstance(r, ImageReadError)]
        errors = [(i, r.reason) for i, r in enumerate(results) if isinstance(r, ImageReadError)]
        s = self.output_size
        images = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, s, s, 3), np.uint8)
        return ArrayBatch(images, [results[i][1] for i in kept]), kept, errors

    def score(self, batch: ArrayBatch) -> Tuple[np.ndarray, np.ndarray]:
        scores, maps = [], []
        for start in range(0, len(batch), self.batch_size):
            part = ArrayBatch(
                batch.images[start : start + self.batch_size], batch.boxes[start : start + self.batch_size]
            )
            s, m = self.run(to_model_input(part.images), part.valid() if self.takes_valid else None)
            scores.append(s)
            maps.append(m)
        if not scores:
            size = self.output_size
            return np.zeros(0, np.float32), np.zeros((0, size, size), np.float32)
        return np.concatenate(scores), np.concatenate(maps)

    def display_images(self, batch: ArrayBatch) -> List[np.ndarray]:
        return list(batch.images)

    # ---- direct use -----------------------------------------------------------------------
    def run(self, images: np.ndarray, valid: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """One graph call: N x 3 x S x S float32 in [0, 1] -> (scores N, maps N x S x S)."""
        feeds = {IMAGE_INPUT: np.ascontiguousarray(images, np.float32)}
        if self.takes_valid:
            feeds[VALID_INPUT] = (
                np.ones((len(images),) + images.shape[2:], np.float32)
                if valid is None
                else np.ascontiguousarray(valid, np.float32)
            )
        scores, maps = self.session.run([SCORE_OUTPUT, MAP_OUTPUT], feeds)
        return scores.astype(np.float32, copy=False), maps.astype(np.float32, copy=False)

    def predict(self, paths: Sequence[Union[str, Path]]) -> Tuple[np.ndarray, np.ndarray]:
        """Files -> (scores, maps); an unreadable file raises ImageReadError (as the torch model's)."""
        batch, _, errors = self.load_batch(paths)
        if errors:
            path, reason = errors[0]
            raise ImageReadError(path, reason)
        return self.score(batch)
