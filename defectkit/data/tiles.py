"""Training tiles on disk: the windows of a large image, written once and reused.

Why files: every method trains from a list of image files (its feature cache is keyed by
file content), so a tiled model hands it the windows as PNG files. One image is decoded
and cut at a time, so memory stays at one frame however many frames there are. The
windows of an image live in a folder named by the hash of the image's bytes and the
tiling, written atomically, with an index written last: an interrupted run leaves no
half set, and a second run (another seed, another method) reuses them.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import List, Union

import numpy as np
from PIL import Image

from ..utils.atomic import atomic_write_bytes, atomic_write_text
from .images import read_image, read_mask, resize_mask
from .samples import Sample
from .tiling import Tiling

PathLike = Union[str, Path]
INDEX = "tiles.json"


def content_hash(path: PathLike) -> str:
    """SHA-1 of a file's bytes (hex)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _folder(path: Path, tiling: Tiling, root: Path, kind: str) -> Path:
    return Path(root) / f"{content_hash(path)[:20]}-{kind}-t{tiling.size}-o{tiling.overlap}"


def _cached(folder: Path) -> Union[List[dict], None]:
    index = folder / INDEX
    if not index.is_file():
        return None
    try:
        entries = json.loads(index.read_text())
    except (OSError, ValueError):
        return None
    if all((folder / e["image"]).is_file() and (not e.get("mask") or (folder / e["mask"]).is_file()) for e in entries):
        return entries
    return None


def write_tiles(path: PathLike, tiling: Tiling, root: PathLike) -> List[Path]:
    """The windows of image ``path`` as PNG files under ``root`` (written once) -> their paths."""
    path = Path(path)
    folder = _folder(path, tiling, Path(root), "img")
    entries = _cached(folder)
    if entries is None:
        rgb = read_image(path)
        entries = []
        for top, left, window, _ in tiling.tiles(rgb):
            name = f"{path.stem}_y{top:05d}_x{left:05d}.png"
            atomic_write_bytes(folder / name, _png(window))
            entries.append({"image": name, "top": top, "left": left})
        atomic_write_text(folder / INDEX, json.dumps(entries))
    return [folder / e["image"] for e in entries]


def write_defect_tiles(sample: Sample, tiling: Tiling, root: PathLike) -> List[Sample]:
    """The windows of an annotated defect that hold defect pixels, image and mask tiles as
    Samples (same label and defect type). A mask of another size than its image is resized
    to it (nearest neighbour)."""
    if sample.mask_path is None:
        raise ValueError(f"'{sample.path}' has no mask: tiling an annotated defect needs one")
    folder = _folder(sample.path, tiling, Path(root), "defect")
    entries = _cached(folder)
    if entries is None:
        rgb = read_image(sample.path)
        mask = read_mask(sample.mask_path)
        if mask.shape != rgb.shape[:2]:
            mask = resize_mask(mask, rgb.shape[:2])
        entries = []
        for top, left, window, _ in tiling.tiles(rgb):
            m, _ = tiling.cut(mask, top, left)
            if not m.any():
                continue
            stem = f"{sample.path.stem}_y{top:05d}_x{left:05d}"
            atomic_write_bytes(folder / f"{stem}.png", _png(window))
            atomic_write_bytes(folder / f"{stem}_mask.png", _png(m.astype(np.uint8) * 255))
            entries.append({"image": f"{stem}.png", "mask": f"{stem}_mask.png", "top": top, "left": left})
        atomic_write_text(folder / INDEX, json.dumps(entries))
    return [Sample(folder / e["image"], sample.label, sample.defect_type, folder / e["mask"]) for e in entries]
