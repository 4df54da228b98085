"""The record every data set produces: one image file, its label, its mask file.

Why a tiny frozen dataclass instead of tensors: data sets only list files; decoding
is done later in batches (batches.py), so listing 5,000 images costs nothing and
splits/seeded draws work on cheap hashable records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


class DatasetLayoutError(ValueError):
    """A folder is not the data-set layout it was opened as; the message names the
    path and what was expected there."""


@dataclass(frozen=True)
class Sample:
    """One image.  ``label``: 0 normal, 1 defective.  ``defect_type``: "good" for
    normal images, else the defect folder name.  ``mask_path``: ground-truth mask
    (nonzero = defect); None for normal images and for defective ones without a mask."""

    path: Path
    label: int
    defect_type: str
    mask_path: Optional[Path] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.mask_path is not None:
            object.__setattr__(self, "mask_path", Path(self.mask_path))
        if self.label not in (0, 1):
            raise ValueError(f"label must be 0 (normal) or 1 (defective), got {self.label!r} for {self.path}")
        object.__setattr__(self, "label", int(self.label))

    @property
    def name(self) -> str:
        """File name of the image (e.g. '000.png')."""
        return self.path.name

    @property
    def is_defective(self) -> bool:
        return self.label == 1
