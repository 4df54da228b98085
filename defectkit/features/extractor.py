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
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..utils.atomic import atomic_torch_save
from ..utils.progress import progress as progress_bar
from ..backbones import Backbone
from ..data.batches import load_images
from ..data.preprocess import Preprocess
from ..utils.device import autocast_off

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
        paths = [Path(p) for p in paths]
        results: List[Optional[Dict[int, torch.Tensor]]] = [None] * len(paths)
        digests = [file_digest(p) for p in paths] if self.use_cache else [None] * len(paths)
        missing = []
        for i, digest in enumerate(digests):
            cached = self.cache_dir / f"{digest}.pt" if digest else None
            if cached is not None and cached.is_file():
                try:
                    results[i] = torch.load(cached, map_location="cpu", weights_only=True)
                    continue
                except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                    cached.unlink(missing_ok=True)
            missing.append(i)
        with progress_bar(total=len(missing), desc=desc, unit="img", enabled=bool(missing)) as bar:
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                images, _, _ = load_images([paths[i] for i in chunk], self.preprocess, on_error="raise")
                feats = self.run_backbone(images)
                for j, i in enumerate(chunk):
                    one = {s: f[j].cpu().clone() for s, f in feats.items()}
                    results[i] = one
                    if self.use_cache:
                        atomic_torch_save(one, self.cache_dir / f"{digests[i]}.pt")
                bar.update(len(chunk))
        return {s: torch.stack([r[s] for r in results]) for s in self.strides}  # type: ignore[index]
