"""A ground-truth mask must have its image's size; one that does not is reported, never fixed silently.

Masks are resized with their image to the model's resolution, so a mask of another size
(a 100x60 mask for a 900x900 image) is stretched onto the image and moves the defect:
pixel metrics change without a word (pixel AP 67.8 -> 67.0 in one such case). Every
mismatch therefore gives a :class:`MaskSizeWarning` naming the mask, the image and both
sizes; with ``strict=True`` (CLI: ``--strict``) it is a :class:`MaskSizeError` instead.
Only the file headers are read, so the check costs next to nothing and runs before any
scoring.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, List, Tuple

from PIL import Image

from .images import ImageReadError
from .samples import DatasetLayoutError, Sample


class MaskSizeWarning(UserWarning):
    """A mask's size differs from its image's; it is resized to the image's size."""


class MaskSizeError(DatasetLayoutError):
    """A mask's size differs from its image's, in strict mode."""


def header_size(path: Path) -> Tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; ImageReadError if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # noqa: BLE001 - any failure means the header cannot be read
        raise ImageReadError(path, f"cannot read its size ({type(exc).__name__}: {exc})") from None


def mask_size_mismatches(samples: Iterable[Sample]) -> List[Tuple[Sample, Tuple[int, int], Tuple[int, int]]]:
    """``[(sample, mask (w, h), image (w, h))]`` for every sample whose mask and image sizes differ.

    A file whose header cannot be read is left out: reading its pixels fails later with
    the reason, naming the file.
    """
    out = []
    for s in samples:
        if s.mask_path is None:
            continue
        try:
            mask_wh, image_wh = header_size(s.mask_path), header_size(s.path)
        except ImageReadError:
            continue
        if mask_wh != image_wh:
            out.append((s, mask_wh, image_wh))
    return out


def mismatch_message(sample: Sample, mask_wh: Tuple[int, int], image_wh: Tuple[int, int]) -> str:
    return (
        f"mask '{sample.mask_path}' is {mask_wh[0]}x{mask_wh[1]} pixels but its image '{sample.path}' is "
        f"{image_wh[0]}x{image_wh[1]}"
    )


def check_mask_sizes(samples: Iterable[Sample], strict: bool = False) -> int:
    """Warn (MaskSizeWarning) for each mask whose size differs from its image's; with ``strict``
    raise MaskSizeError for the first instead. Returns the number of mismatches."""
    found = mask_size_mismatches(samples)
    if found and strict:
        more = f" ({len(found)} masks in all differ from their images)" if len(found) > 1 else ""
        raise MaskSizeError(
            f"{mismatch_message(*found[0])}{more}; fix the mask, or drop --strict to "
            "have it resized to its image's size"
        )
    for item in found:
        warnings.warn(
            f"{mismatch_message(*item)}; resized to the image's size, which changes pixel metrics "
            "(--strict makes this an error)",
            MaskSizeWarning,
            stacklevel=2,
        )
    return len(found)
