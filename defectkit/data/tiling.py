"""Large images as tiles at native resolution, and their maps stitched back together.

Why: a 12 px defect on a 2048 x 2048 frame is 1.5 px after resizing to 256 and is
erased by any backbone. Tiling cuts the frame into ``size`` x ``size`` windows of
native pixels (overlapping by ``overlap`` px), a model scores each window as an image,
and the window maps are blended back into one map of the frame: inside an overlap each
pixel is a weighted mean of the windows that cover it, with weights that fall off
linearly towards a window's edge (where a CNN sees zero padding), so seams do not show.

Plain numpy: the same code cuts and stitches for training, ``predict`` and a runtime
without torch. Memory is bounded by one frame, its map and one batch of tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Tuple

import numpy as np


def tile_starts(length: int, size: int, overlap: int) -> List[int]:
    """Start offsets of windows of ``size`` covering ``length`` with at least ``overlap``
    px shared by neighbours. The last window is aligned with the end (so every window is
    whole when ``length >= size``); a side shorter than a window gets one window at 0."""
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def blend_window(size: int, overlap: int) -> np.ndarray:
    """``size`` x ``size`` float32 weights: 1 inside, a linear ramp over ``overlap`` px at
    every edge (never 0, so a pixel covered by one window keeps its value)."""
    if overlap <= 0:
        return np.ones((size, size), dtype=np.float32)
    i = np.arange(size, dtype=np.float32)
    ramp = np.minimum(1.0, np.minimum(i + 0.5, size - i - 0.5) / overlap)
    return np.outer(ramp, ramp).astype(np.float32)


@dataclass(frozen=True)
class Tiling:
    """Windows of ``size`` px with ``overlap`` px shared between neighbours."""

    size: int
    overlap: int = 32

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, (int, np.integer)) or self.size <= 0:
            raise ValueError(f"tile size must be a positive int, got {self.size!r}")
        if (
            isinstance(self.overlap, bool)
            or not isinstance(self.overlap, (int, np.integer))
            or not (0 <= self.overlap < self.size)
        ):
            raise ValueError(f"tile overlap must be an int in [0, tile size {self.size}), got {self.overlap!r}")

    def grid(self, height: int, width: int) -> List[Tuple[int, int]]:
        """(top, left) of every window of a ``height`` x ``width`` image, row by row."""
        return [
            (top, left)
            for top in tile_starts(height, self.size, self.overlap)
            for left in tile_starts(width, self.size, self.overlap)
        ]

    def count(self, height: int, width: int) -> int:
        return len(self.grid(height, width))

    def cut(self, image: np.ndarray, top: int, left: int) -> Tuple[np.ndarray, Tuple[int, int]]:
        """One window of an H x W (x C) array -> (size x size (x C) array, (rows, cols) of real
        pixels). A window that runs past a side shorter than ``size`` is padded with zeros."""
        part = image[top : top + self.size, left : left + self.size]
        h, w = part.shape[:2]
        if (h, w) == (self.size, self.size):
            return np.ascontiguousarray(part), (h, w)
        out = np.zeros((self.size, self.size) + image.shape[2:], dtype=image.dtype)
        out[:h, :w] = part
        return out, (h, w)

    def tiles(self, image: np.ndarray) -> Iterator[Tuple[int, int, np.ndarray, Tuple[int, int]]]:
        """(top, left, window, real size) for every window of ``image``."""
        for top, left in self.grid(*image.shape[:2]):
            window, real = self.cut(image, top, left)
            yield top, left, window, real

    def to_dict(self) -> dict:
        return {"size": int(self.size), "overlap": int(self.overlap)}


class Stitcher:
    """Accumulates window maps into one ``height`` x ``width`` map (weighted mean in overlaps)."""

    def __init__(self, tiling: Tiling, height: int, width: int):
        self.tiling = tiling
        self.height, self.width = int(height), int(width)
        self.total = np.zeros((self.height, self.width), dtype=np.float32)
        self.weight = np.zeros((self.height, self.width), dtype=np.float32)
        self.window = blend_window(tiling.size, tiling.overlap)

    def add(self, amap: np.ndarray, top: int, left: int) -> None:
        """Add a ``size`` x ``size`` window map whose window starts at (top, left)."""
        h = min(self.tiling.size, self.height - top)
        w = min(self.tiling.size, self.width - left)
        wt = self.window[:h, :w]
        self.total[top : top + h, left : left + w] += np.asarray(amap, dtype=np.float32)[:h, :w] * wt
        self.weight[top : top + h, left : left + w] += wt

    def result(self) -> np.ndarray:
        """The stitched map; raises if some pixel was covered by no window."""
        if not np.all(self.weight > 0):
            raise ValueError("stitching left pixels uncovered: every window of the grid must be added")
        return self.total / self.weight
