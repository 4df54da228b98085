"""On-disk cache of frozen backbone features, keyed by backbone, preprocessing and image content.

Frozen features never change for a given image, backbone and preprocessing, yet every
method (and every seed of a benchmark) would recompute them. The cache stores each
image's per-stride feature maps in one file named by a hash of the image bytes, inside a
folder named by a hash of (backbone, weights, preprocessing, strides). Editing an image,
or changing any of those settings, therefore misses the cache instead of returning
stale features. Files are written atomically, so an interrupted run leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..backbones import Backbone
from ..data.batches import load_images
from ..data.preprocess import Preprocess
from ..utils.atomic import atomic_torch_save
from ..utils.device import autocast_off
from ..utils.progress import progress as progress_bar

PathLike = Union[str, Path]
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$DEFECTKIT_CACHE_DIR``, else ``~/.cache/defectkit``."""
    env = os.environ.get("DEFECTKIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "defectkit"


def file_digest(path: PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class FeatureExtractor:
    """Computes (or reads from the cache) a backbone's per-stride features for image files."""

    def __init__(
        self,
        backbone: Backbone,
        preprocess: Preprocess,
        strides: Sequence[int],
        device: torch.device,
        batch_size: int = 8,
        cache_dir: Optional[PathLike] = None,
        use_cache: bool = True,
    ):
        self.backbone = backbone.to(device)
        self.preprocess = preprocess
        self.strides = tuple(sorted(strides))
        self.device = device
        self.batch_size = batch_size
        self.use_cache = use_cache
        key = {
            "format": CACHE_FORMAT,
            "backbone": backbone.name,
            "weights": backbone.weights_id,
            "revision": backbone.revision,
            "preprocess": preprocess.to_dict(),
            "strides": list(self.strides),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_dir or default_cache_dir()) / "features" / f"{backbone.name}-{digest}"

    @torch.inference_mode()
    def run_backbone(self, images: torch.Tensor) -> Dict[int, torch.Tensor]:
        """Features of an in-memory batch (e.g. synthetic anomalies); never cached."""
        with autocast_off():
            out = self.backbone(images.to(self.device), self.strides)
        return {s: f.float() for s, f in out.items()}

    def __call__(self, paths: Sequence[PathLike], desc: str = "features") -> Dict[int, torch.Tensor]:
        """Features of image files, stacked per stride (on the CPU): ``{stride: N x C x h x w}``."""
        parts = [feats for _, feats in self.stream(paths, chunk_images=max(1, len(paths)), desc=desc)]
        if not parts:
            raise ValueError("no image files to extract features from")
        return parts[0]

    def stream(
        self, paths: Sequence[PathLike], chunk_images: int = 32, desc: str = "features"
    ) -> Iterator[Tuple[List[int], Dict[int, torch.Tensor]]]:
        """Features of image files in chunks: yields ``(indices, {stride: n x C x h x w})``, in order.

        A caller that reduces each chunk (PatchCore keeps coreset candidates, SimpleNet fused
        vectors) then holds one chunk of raw backbone maps at a time, not those of every
        image. Cached images are read from the cache, the others computed and written to it.
        """
        paths = [Path(p) for p in paths]
        files = [self.cache_dir / f"{file_digest(p)}.pt" for p in paths] if self.use_cache else None
        missing = len(paths) if files is None else sum(not f.is_file() for f in files)
        with progress_bar(total=len(paths), desc=desc, unit="img", enabled=missing > 0) as bar:
            for start in range(0, len(paths), chunk_images):
                indices = list(range(start, min(start + chunk_images, len(paths))))
                loaded = self._load_or_compute(paths, files, indices)
                chunk = [loaded[i] for i in indices]
                bar.update(len(indices))
                yield indices, {s: torch.stack([one[s] for one in chunk]) for s in self.strides}

    def _load_or_compute(
        self, paths: List[Path], files: Optional[List[Path]], indices: List[int]
    ) -> Dict[int, Dict[int, torch.Tensor]]:
        """``{index: {stride: C x h x w}}`` for ``indices``: read from the cache files or computed in batches."""
        results: Dict[int, Dict[int, torch.Tensor]] = {}
        missing = []
        for i in indices:
            cached = None if files is None else files[i]
            if cached is not None and cached.is_file():
                try:
                    results[i] = torch.load(cached, map_location="cpu", weights_only=True)
                    continue
                except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                    cached.unlink(missing_ok=True)
            missing.append(i)
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            images, _, _ = load_images([paths[i] for i in batch], self.preprocess, on_error="raise")
            feats = self.run_backbone(images)
            for j, i in enumerate(batch):
                one = {s: f[j].cpu().clone() for s, f in feats.items()}
                results[i] = one
                if files is not None:
                    atomic_torch_save(one, files[i])
        return results
