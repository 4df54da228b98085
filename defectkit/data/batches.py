"""Decode + preprocess many files into one tensor.

Why threads: decoding a 900x900 PNG (zlib) and Pillow's resize release the GIL, so
two worker threads nearly halve the wall time of loading a category on a small CPU
box without the start-up cost and memory of worker processes.  Order is always the
input order, whatever finishes first.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, List, Sequence, Tuple, TypeVar, Union

import numpy as np
import torch

from .images import ImageReadError, read_image, read_mask
from .mask_size import check_mask_sizes
from .preprocess import MIN_IMAGE_SIDE, Box, Preprocess, check_input_size  # noqa: F401  (re-exported)
from .samples import Sample

T = TypeVar("T")
Item = Union[Sample, str, "os.PathLike[str]"]

#: Worker threads used by load_images/load_masks (the project runs on 2 cores).
DEFAULT_WORKERS = 2


def _path_of(item: Item) -> Path:
    return item.path if isinstance(item, Sample) else Path(item)


def _map_ordered(fn: Callable[[T], object], items: Sequence[T], workers: int) -> List[object]:
    """fn over items in input order; exceptions are returned, not raised."""

    def safe(x: T):
        try:
            return fn(x)
        except ImageReadError as e:
            return e

    if workers <= 1 or len(items) <= 1:
        return [safe(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="defectkit-load") as pool:
        return list(pool.map(safe, items))


def read_model_input(path: Path, preprocess: Preprocess) -> torch.Tensor:
    """One file as a model input: decoded (read_image), size-checked (``preprocess.min_input_side``),
    preprocessed."""
    return preprocess(check_input_size(path, read_image(path), preprocess))


@dataclass
class ImageBatch:
    """Preprocessed images (N x 3 x S x S float32 in [0, 1]) and, per image, the Box of its
    real pixels (everything else is padding from ``resize="keep"``)."""

    images: torch.Tensor
    boxes: List[Box]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def padded(self) -> bool:
        """True when some image has padding."""
        return any(not b.full for b in self.boxes)

    def valid(self) -> torch.Tensor:
        """N x S x S bool tensor, True on real pixels."""
        s = self.images.shape[-1]
        if not self.boxes:
            return torch.zeros((0, s, s), dtype=torch.bool)
        return torch.from_numpy(np.stack([b.mask() for b in self.boxes]))

    def __getitem__(self, index: slice) -> "ImageBatch":
        return ImageBatch(self.images[index], self.boxes[index])


@dataclass
class NativeBatch:
    """Decoded images at their own resolution (H x W x 3 uint8 each), for tiled models."""

    images: List[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: slice) -> "NativeBatch":
        return NativeBatch(self.images[index])


def _split_results(items: list, results: list, on_error: str) -> Tuple[list, list, List[Tuple[Path, str]]]:
    values, kept, errors = [], [], []
    for item, res in zip(items, results):
        if isinstance(res, ImageReadError):
            if on_error == "raise":
                raise res
            errors.append((res.path, res.reason))
        else:
            values.append(res)
            kept.append(item)
    return values, kept, errors


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def load_batch(
    items: Iterable[Item],
    preprocess: Preprocess,
    on_error: str = "raise",
    workers: int = DEFAULT_WORKERS,
) -> Tuple[ImageBatch, list, List[Tuple[Path, str]]]:
    """``load_images``, keeping where each image's real pixels are: ``(ImageBatch, kept, errors)``."""
    _check_on_error(on_error)
    items = list(items)

    def one(item):
        path = _path_of(item)
        arr, box = preprocess.apply(check_input_size(path, read_image(path), preprocess))
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).contiguous(), box

    values, kept, errors = _split_results(items, _map_ordered(one, items, workers), on_error)
    s = preprocess.output_size
    tensor = torch.stack([v[0] for v in values]) if values else torch.empty((0, 3, s, s), dtype=torch.float32)
    return ImageBatch(tensor, [v[1] for v in values]), kept, errors


def load_native(
    items: Iterable[Item], on_error: str = "raise", workers: int = DEFAULT_WORKERS
) -> Tuple[NativeBatch, list, List[Tuple[Path, str]]]:
    """Decode images without resizing (tiled models cut them into windows themselves)."""
    _check_on_error(on_error)
    items = list(items)
    values, kept, errors = _split_results(
        items, _map_ordered(lambda it: read_image(_path_of(it)), items, workers), on_error
    )
    return NativeBatch(values), kept, errors


def load_images(
    items: Iterable[Item],
    preprocess: Preprocess,
    on_error: str = "raise",
    workers: int = DEFAULT_WORKERS,
) -> Tuple[torch.Tensor, list, List[Tuple[Path, str]]]:
    """Read and preprocess images (Samples or paths) into an Nx3xSxS float32 tensor.

    Returns ``(tensor, kept, errors)``: ``kept`` are the input items whose image is
    in the tensor (same order), ``errors`` a list of ``(path, reason)`` for the
    others (unreadable files, and images smaller than ``preprocess.min_input_side``).  ``on_error="raise"`` raises the first ImageReadError (in input order)
    instead; ``"skip"`` leaves unreadable files out so one corrupt file in a folder of
    thousands does not stop training, while the caller can still report them.
    (``load_batch`` also returns where each image's real pixels are.)
    """
    batch, kept, errors = load_batch(items, preprocess, on_error, workers)
    return batch.images, kept, errors


def load_masks(
    samples: Iterable[Sample],
    preprocess: Preprocess,
    workers: int = DEFAULT_WORKERS,
    strict: bool = False,
    check_sizes: bool = True,
) -> torch.Tensor:
    """Ground-truth masks of ``samples`` as an Nx1xSxS float32 tensor of {0, 1},
    resized nearest and cropped like the images; all zeros where ``mask_path`` is
    None (normal images).  An unreadable mask raises ImageReadError: scoring against
    a mask that silently became empty would be wrong, so there is no skip mode.

    A mask whose size differs from its image's gives a MaskSizeWarning naming both files
    and sizes, or a MaskSizeError with ``strict`` (data/mask_size.py); ``check_sizes=False``
    skips that check for a caller that has just made it."""
    samples = list(samples)
    if check_sizes:
        check_mask_sizes(samples, strict)
    s = preprocess.output_size

    def one(sample: Sample) -> torch.Tensor:
        if sample.mask_path is None:
            return torch.zeros((1, s, s), dtype=torch.float32)
        return preprocess.mask(read_mask(sample.mask_path))

    results = _map_ordered(one, samples, workers)
    for res in results:
        if isinstance(res, ImageReadError):
            raise res
    if not results:
        return torch.empty((0, 1, s, s), dtype=torch.float32)
    return torch.stack(results)
