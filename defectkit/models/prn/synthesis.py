"""PRN's anomaly generation (paper sec. 3.4 and appendix A.1) as a pool of synthetic images.

EA: a seen defect cut out with its mask, colour- and shape-augmented, placed inside a
target area (TA) of the object; SA: Perlin masks filled with a DTD texture (HEA) or an
augmented, 8x8-grid-shuffled normal image (HOA), also inside a TA. The generators are
``defectkit.synth.make_generator`` ("ea", "dtd", "hoa").

Why a pool instead of fresh images every step (documented deviation): on a CPU the
backbone pass of every synthetic image dominates training. We generate ``size`` images
at once, run the frozen backbone on them once, keep their features (float16) and
masks, and draw batches from the pool; the pool is regenerated every few epochs so the
model still sees new anomalies over training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...synth import make_generator

DEFAULT_TARGET_SHAPES = ("circle", "rectangle", "polygon")
MAX_ATTEMPTS = 10  # redraws (new base image, new placement) when a generator cannot place an anomaly


class AnomalyGenerators:
    """The EA and SA generators of one fit; SA alternates HEA / HOA (HOA only without textures)."""

    def __init__(
        self,
        seen: Sequence[Tuple[np.ndarray, np.ndarray]],
        textures: Optional[Path],
        foreground: Optional[str] = "auto",
        target_shapes: Optional[Sequence[str]] = DEFAULT_TARGET_SHAPES,
    ):
        common = dict(foreground=foreground, target_shapes=tuple(target_shapes) if target_shapes else None)
        seen = [(img, mask) for img, mask in seen if np.asarray(mask).any()]
        self.ea = make_generator("ea", defects=seen, **common) if seen else None
        self.sa = [make_generator("hoa", **common)]
        self.sa_kinds = ["hoa"]
        if textures is not None:
            self.sa.insert(0, make_generator("dtd", textures=str(textures), **common))
            self.sa_kinds.insert(0, "hea")

    def make(self, kind: str, normals: np.ndarray, count: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """``count`` anomalies of ``kind`` ("ea" or "sa") on seeded random normals -> (N x S x S x 3, N x S x S)."""
        if count == 0:
            s = normals.shape[1]
            return np.zeros((0, s, s, 3), np.uint8), np.zeros((0, s, s), bool)
        images, masks = [], []
        for i in range(count):
            gen = self.ea if kind == "ea" else self.sa[i % len(self.sa)]
            for attempt in range(MAX_ATTEMPTS):
                rng = np.random.default_rng([seed, i, 0 if kind == "ea" else 1, attempt])
                base = normals[int(rng.integers(len(normals)))]
                try:
                    res = gen(base, rng)
                    break
                except RuntimeError:  # e.g. EA found no place inside a degenerate target area: redraw
                    if attempt == MAX_ATTEMPTS - 1:
                        raise
            images.append(res.image)
            masks.append(res.mask > 0.5)
        return np.stack(images), np.stack(masks)


def backbone_features(extractor, images_uint8: np.ndarray, batch_size: int) -> Dict[int, torch.Tensor]:
    """Frozen features of in-memory uint8 images -> {stride: N x C x h x w} float16 on the CPU."""
    out: Dict[int, List[torch.Tensor]] = {}
    for start in range(0, len(images_uint8), batch_size):
        chunk = torch.from_numpy(images_uint8[start : start + batch_size]).permute(0, 3, 1, 2).float() / 255.0
        for s, f in extractor.run_backbone(chunk).items():
            out.setdefault(s, []).append(f.cpu().half())
    return {s: torch.cat(v) for s, v in out.items()}


class FeaturePool:
    """Features (float16) and masks (bool, S x S) of a set of anomalous images, drawn by index."""

    def __init__(self, feats: Dict[int, torch.Tensor], masks: torch.Tensor):
        self.feats, self.masks = feats, masks.bool()

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @classmethod
    def concat(cls, pools: Sequence["FeaturePool"]) -> "FeaturePool":
        pools = [p for p in pools if len(p)]
        strides = pools[0].feats.keys()
        return cls({s: torch.cat([p.feats[s] for p in pools]) for s in strides}, torch.cat([p.masks for p in pools]))

    def take(self, idx: torch.Tensor) -> Tuple[Dict[int, torch.Tensor], torch.Tensor]:
        return {s: f[idx].float() for s, f in self.feats.items()}, self.masks[idx].float()
