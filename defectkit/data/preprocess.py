"""The one resize/crop step between decoded pixels and a model.

Why a dataclass: the protocol (docs/protocol.md, Preprocessing) makes the image size,
the resize mode and the crop explicit options that must be recorded with results and
model files. ``to_dict``/``from_dict`` give a model file exactly what it needs to
preprocess new images the same way it was trained. Default: 256x256, no crop (RealNet,
PRN); PatchCore-style 256->224 is ``Preprocess(256, 224)``.

Two resize modes:

* ``square`` (default, the benchmark protocol): resize to ``image_size`` x ``image_size``;
  the aspect ratio is not kept.
* ``keep``: scale so the long side is ``image_size``, keep the aspect ratio, and pad the
  short side with black to a square, the image centred. The real pixels are the
  ``Box`` that ``valid_box`` / ``apply`` return; models mask everything outside it
  out of their maps, scores and metrics (padding is never anomalous).

The geometry is plain numpy + Pillow (``apply``), so a runtime without torch can
preprocess exactly as training did; ``__call__`` wraps it as a torch tensor.

No ImageNet mean/std normalisation here: each backbone normalises its own input,
so tensors from here are plain RGB in [0, 1] and can also be written back as images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from PIL import Image

from .images import ImageReadError, read_image, resize_mask

#: Smallest image side (px) a model accepts, for its input and for image files. The
#: coarsest stage every method reads has stride 16, so 32 px is 2x2 cells there; a smaller
#: image holds too little to judge a defect by, and scaling a smaller file up to the model's
#: input size would invent its detail. Models pass it to ``load_images`` through
#: ``Preprocess.min_input_side``.
MIN_IMAGE_SIDE = 32

#: ``Preprocess.resize`` values.
RESIZE_MODES = ("square", "keep")


@dataclass(frozen=True)
class Box:
    """The real (not padded) pixels of a preprocessed image: rows ``top:top+height``,
    columns ``left:left+width`` of the ``size`` x ``size`` output."""

    top: int
    left: int
    height: int
    width: int
    size: int

    @property
    def full(self) -> bool:
        """True when the box covers the whole output (nothing is padding)."""
        return self.top == 0 and self.left == 0 and self.height == self.size and self.width == self.size

    def mask(self) -> np.ndarray:
        """``size`` x ``size`` bool array, True on real pixels."""
        m = np.zeros((self.size, self.size), dtype=bool)
        m[self.top : self.top + self.height, self.left : self.left + self.width] = True
        return m

    def crop(self, a: np.ndarray) -> np.ndarray:
        """The real pixels of an array whose last two axes are ``size`` x ``size``."""
        return a[..., self.top : self.top + self.height, self.left : self.left + self.width]

    def to_list(self) -> list:
        return [self.top, self.left, self.height, self.width]


def _positive_int(value: Any, name: str, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value or value <= 0:
        raise ValueError(f"{name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


@dataclass
class Preprocess:
    """Resize to ``image_size`` (``resize``: "square" or "keep" the aspect ratio and pad),
    bilinear and antialiased by Pillow when shrinking, then optionally centre-crop to
    ``crop_size`` x ``crop_size``.

    ``min_input_side``: image files smaller than this on a side are refused by
    ``load_images`` (0: any size). Models set it (``AnomalyModel.preprocess``); it is a
    guard, not part of the preprocessing, so ``to_dict`` leaves it out."""

    image_size: int = 256
    crop_size: Optional[int] = None
    resize: str = "square"
    min_input_side: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.image_size = _positive_int(self.image_size, "image_size")
        self.crop_size = _positive_int(self.crop_size, "crop_size", allow_none=True)
        if self.crop_size is not None and self.crop_size > self.image_size:
            raise ValueError(f"crop_size {self.crop_size} is larger than image_size {self.image_size}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    @property
    def output_size(self) -> int:
        """Side length of the tensors this produces (crop_size, else image_size)."""
        return self.crop_size if self.crop_size is not None else self.image_size

    # ---- geometry -------------------------------------------------------------------
    def scaled_size(self, height: int, width: int) -> Tuple[int, int]:
        """(height, width) of an image after the resize step, before padding and crop."""
        s = self.image_size
        if self.resize == "square":
            return s, s
        scale = s / max(height, width)
        return max(1, min(s, int(round(height * scale)))), max(1, min(s, int(round(width * scale))))

    def valid_box(self, height: int, width: int) -> Box:
        """Where an ``height`` x ``width`` image's real pixels end up in the output."""
        s, out = self.image_size, self.output_size
        h, w = self.scaled_size(height, width)
        top, left = (s - h) // 2, (s - w) // 2
        c = (s - out) // 2  # crop offset (0 without a crop)
        t0, l0 = max(top, c), max(left, c)
        t1, l1 = min(top + h, c + out), min(left + w, c + out)
        return Box(t0 - c, l0 - c, max(0, t1 - t0), max(0, l1 - l0), out)

    def _place(self, arr: np.ndarray, h: int, w: int) -> np.ndarray:
        """Put an already resized h x w (x C) array on the black s x s canvas, centred."""
        s = self.image_size
        if (h, w) == (s, s):
            return arr
        canvas = np.zeros((s, s) + arr.shape[2:], dtype=arr.dtype)
        top, left = (s - h) // 2, (s - w) // 2
        canvas[top : top + h, left : left + w] = arr
        return canvas

    def _crop(self, arr: np.ndarray) -> np.ndarray:
        if self.crop_size is None or self.crop_size == self.image_size:
            return arr
        top = (self.image_size - self.crop_size) // 2
        return arr[top : top + self.crop_size, top : top + self.crop_size]

    # ---- images and masks -------------------------------------------------------------
    def apply(self, rgb: np.ndarray) -> Tuple[np.ndarray, Box]:
        """HxWx3 uint8 RGB -> (S x S x 3 uint8, the Box of real pixels), numpy only.

        This is the whole preprocessing; a runtime that does not use torch calls it
        directly and keeps the box to mask its maps (see ``docs/data.md``)."""
        if isinstance(rgb, Image.Image):
            rgb = np.asarray(rgb.convert("RGB"))
        arr = np.asarray(rgb)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(
                f"Preprocess expects an HxWx3 uint8 RGB array (see read_image), got dtype {arr.dtype} shape {arr.shape}"
            )
        height, width = arr.shape[:2]
        h, w = self.scaled_size(height, width)
        if arr.shape[:2] != (h, w):
            im = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
            arr = np.asarray(im.resize((w, h), Image.Resampling.BILINEAR))
        arr = self._place(arr, h, w)
        out = np.array(self._crop(arr), dtype=np.uint8, order="C")  # own, writable copy
        return out, self.valid_box(height, width)

    def __call__(self, rgb: np.ndarray):
        """HxWx3 uint8 RGB array -> float32 tensor 3xSxS in [0, 1] (S = output_size)."""
        import torch

        arr, _ = self.apply(rgb)
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).contiguous()

    def mask_array(self, mask: np.ndarray) -> np.ndarray:
        """HxW mask (bool, or numbers with >0 = defect) -> S x S bool, nearest-neighbour
        resized, padded (never defective) and cropped exactly like the image."""
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ValueError(f"Preprocess.mask expects an HxW mask, got shape {m.shape}")
        h, w = self.scaled_size(*m.shape)
        m = self._place(resize_mask(m, (h, w)), h, w)
        return np.ascontiguousarray(self._crop(m))

    def mask(self, mask: np.ndarray):
        """HxW mask -> float32 tensor 1xSxS of {0, 1} (``mask_array`` as a tensor)."""
        import torch

        return torch.from_numpy(self.mask_array(mask).astype(np.float32))[None]

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict, for model files and results rows. ``resize`` is written
        only when it is not the default "square", so square-mode records (and the feature
        cache keys derived from them) are those of earlier versions."""
        d: Dict[str, Any] = {"image_size": self.image_size, "crop_size": self.crop_size}
        if self.resize != "square":
            d["resize"] = self.resize
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        """Inverse of to_dict.  Unknown keys raise: a model file written by a newer
        version with extra preprocessing must not be silently mis-read."""
        unknown = set(d) - {"image_size", "crop_size", "resize"}
        if unknown:
            raise ValueError(f"unknown Preprocess fields {sorted(unknown)} in {dict(d)!r}")
        return cls(image_size=d.get("image_size", 256), crop_size=d.get("crop_size"), resize=d.get("resize", "square"))


def check_input_size(path: Path, rgb: np.ndarray, preprocess: "Preprocess") -> np.ndarray:
    """``rgb`` if it is at least ``preprocess.min_input_side`` px on each side, else ImageReadError naming the file."""
    h, w = rgb.shape[:2]
    least = int(getattr(preprocess, "min_input_side", 0) or 0)
    if min(h, w) < least:
        raise ImageReadError(
            path,
            f"image is only {w}x{h} pixels; models need at least {least}x{least} "
            f"(scaling it up to {preprocess.image_size} px would invent its detail)",
        )
    return rgb


def read_model_array(path, preprocess: "Preprocess") -> Tuple[np.ndarray, Box]:
    """One file as a model input, numpy only: decoded (read_image), size-checked
    (``preprocess.min_input_side``), preprocessed -> (S x S x 3 uint8, Box of real pixels)."""
    return preprocess.apply(check_input_size(path, read_image(path), preprocess))
