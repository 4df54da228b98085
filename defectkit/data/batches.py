"""Decode + preprocess many files into one tensor.

Why threads: decoding a 900x900 PNG (zlib) and Pillow's resize release the GIL, so
two worker threads nearly halve the wall time of loading a category on a small CPU
box without the start-up cost and memory of worker processes.  Order is always the
input order, whatever finishes first.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, List, Sequence, Tuple, TypeVar, Union

import torch

from .images import ImageReadError, read_image, read_mask
from .mask_size import check_mask_sizes
from .preprocess import Preprocess
from .samples import Sample

T = TypeVar("T")
Item = Union[Sample, str, "os.PathLike[str]"]

#: Worker threads used by load_images/load_masks (the project runs on 2 cores).
DEFAULT_WORKERS = 2

#: Smallest image side (px) a model accepts, for its input and for image files. The
#: coarsest stage every method reads has stride 16, so 32 px is 2x2 cells there; a smaller
#: image holds too little to judge a defect by, and scaling a smaller file up to the model's
#: input size would invent its detail. Models pass it to ``load_images`` through
#: ``Preprocess.min_input_side``.
MIN_IMAGE_SIDE = 32


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
    rgb = read_image(path)
    h, w = rgb.shape[:2]
    least = int(getattr(preprocess, "min_input_side", 0) or 0)
    if min(h, w) < least:
        raise ImageReadError(
            path, f"image is only {w}x{h} pixels; models need at least {least}x{least} "
            f"(scaling it up to {preprocess.image_size} px would invent its detail)"
        )
    return preprocess(rgb)


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
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    items = list(items)
    results = _map_ordered(lambda it: read_model_input(_path_of(it), preprocess), items, workers)
    tensors, kept, errors = [], [], []
    for item, res in zip(items, results):
        if isinstance(res, ImageReadError):
            if on_error == "raise":
                raise res
            errors.append((res.path, res.reason))
        else:
            tensors.append(res)
            kept.append(item)
    s = preprocess.output_size
    batch = torch.stack(tensors) if tensors else torch.empty((0, 3, s, s), dtype=torch.float32)
    return batch, kept, errors


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
