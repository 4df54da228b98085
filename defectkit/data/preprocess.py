"""The one resize/crop step between decoded pixels and a model.

Why a dataclass: the protocol (docs/protocol.md, Preprocessing) makes the image size
and crop explicit options that must be recorded with results and model files.
``to_dict``/``from_dict`` give a model file exactly what it needs to preprocess new
images the same way it was trained.  Default: 256x256, no crop (RealNet, PRN);
PatchCore-style 256->224 is ``Preprocess(256, 224)``.

No ImageNet mean/std normalisation here: each backbone normalises its own input,
so tensors from here are plain RGB in [0, 1] and can also be written back as images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from PIL import Image

from .images import resize_mask


@dataclass
class Preprocess:
    """Resize to ``image_size`` x ``image_size`` (bilinear, antialiased by Pillow when
    shrinking), then optionally center-crop to ``crop_size`` x ``crop_size``.

    ``min_input_side``: image files smaller than this on a side are refused by
    ``load_images`` (0: any size). Models set it (``AnomalyModel.preprocess``); it is a
    guard, not part of the preprocessing, so ``to_dict`` leaves it out."""

    image_size: int = 256
    crop_size: Optional[int] = None
    min_input_side: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or int(self.image_size) != self.image_size or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        self.image_size = int(self.image_size)
        if self.crop_size is not None:
            if isinstance(self.crop_size, bool) or int(self.crop_size) != self.crop_size or self.crop_size <= 0:
                raise ValueError(f"crop_size must be a positive int or None, got {self.crop_size!r}")
            self.crop_size = int(self.crop_size)
            if self.crop_size > self.image_size:
                raise ValueError(
                    f"crop_size {self.crop_size} is larger than image_size {self.image_size}"
                )

    @property
    def output_size(self) -> int:
        """Side length of the tensors this produces (crop_size, else image_size)."""
        return self.crop_size if self.crop_size is not None else self.image_size

    def _crop(self, arr: np.ndarray) -> np.ndarray:
        if self.crop_size is None or self.crop_size == self.image_size:
            return arr
        top = (self.image_size - self.crop_size) // 2
        return arr[top : top + self.crop_size, top : top + self.crop_size]

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB array -> float32 tensor 3xSxS in [0, 1] (S = output_size)."""
        if isinstance(rgb, Image.Image):
            rgb = np.asarray(rgb.convert("RGB"))
        arr = np.asarray(rgb)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(
                f"Preprocess expects an HxWx3 uint8 RGB array (see read_image), got "
                f"dtype {arr.dtype} shape {arr.shape}"
            )
        s = self.image_size
        if arr.shape[:2] != (s, s):
            im = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
            arr = np.asarray(im.resize((s, s), Image.Resampling.BILINEAR))
        arr = np.array(self._crop(arr), dtype=np.uint8, order="C")  # own, writable copy
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0).contiguous()

    def mask(self, mask: np.ndarray) -> torch.Tensor:
        """HxW mask (bool, or numbers with >0 = defect) -> float32 tensor 1xSxS of {0, 1},
        nearest-neighbour resized and cropped exactly like the image."""
        m = np.asarray(mask)
        if m.ndim != 2:
            raise ValueError(f"Preprocess.mask expects an HxW mask, got shape {m.shape}")
        m = resize_mask(m, self.image_size)
        m = np.ascontiguousarray(self._crop(m))
        return torch.from_numpy(m.astype(np.float32))[None]

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict, for model files and results rows."""
        return {"image_size": self.image_size, "crop_size": self.crop_size}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        """Inverse of to_dict.  Unknown keys raise: a model file written by a newer
        version with extra preprocessing must not be silently mis-read."""
        unknown = set(d) - {"image_size", "crop_size"}
        if unknown:
            raise ValueError(f"unknown Preprocess fields {sorted(unknown)} in {dict(d)!r}")
        return cls(image_size=d.get("image_size", 256), crop_size=d.get("crop_size"))
