"""Where does a backbone cell look? A single bright square on a flat image, traced through the grid.

A stride-s feature map is resized as if cell i were centred on input pixel ``s*i + (s-1)/2``
(``align_corners=False``). With TensorFlow "SAME" padding (extra row/column bottom/right) the
receptive field of cell i is centred lower-right, at ``s*i + (s-1)`` in theory, i.e.
``(s-1)/2`` px later: 1.5 px at stride 4, 3.5 at stride 8, 7.5 at stride 16.

This measures it. For a bright ``square`` x ``square`` spot at every position of a 16 x 16
block (so every phase of every stride is covered), on an otherwise constant grey image:

* ``response``: the L2 norm over channels of feature(spot) - feature(flat), per cell;
* ``grid centroid``: the response-weighted mean cell position, mapped to pixels with the
  resize convention ``s*i + (s-1)/2``; its offset from the spot centre is the misalignment a
  resize gives that stride;
* ``upsampled peak``: the argmax of the response after the project's own map path
  (``features.upsample_maps``, bilinear + Gaussian sigma), and after ``fuse_stages`` for the
  stride-16 part resized onto the stride-8 grid.

Offsets are (spot - located), in px: positive means the located response sits up/left of the
spot, so a map needs shifting down/right by that much.

    python benchmarks/feature_offset.py --out benchmarks/results/alignment-2026-12-02
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from defectkit import __version__
from defectkit.backbones import create_backbone
from defectkit.features import upsample_maps


def spot_images(size: int, square: int, origin: int, block: int, level: float = 0.5) -> tuple:
    """Flat grey images with a white square at each (y, x) of a ``block`` x ``block`` grid from ``origin``.

    Returns (images K x 3 x S x S, spot centres K x 2 in px: ``y + (square-1)/2``)."""
    ys, xs = np.meshgrid(np.arange(block) + origin, np.arange(block) + origin, indexing="ij")
    pos = np.stack([ys.ravel(), xs.ravel()], axis=1)
    images = torch.full((len(pos), 3, size, size), level)
    for k, (y, x) in enumerate(pos):
        images[k, :, y : y + square, x : x + square] = 1.0
    return images, pos + (square - 1) / 2.0


def cell_response(feats: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """K x C x h x w features minus the flat image's -> K x h x w L2 norm over channels."""
    return (feats - flat).norm(dim=1)


def grid_centroid(resp: torch.Tensor, stride: int) -> np.ndarray:
    """Response-weighted mean cell position (K x 2, px) under the resize convention s*i + (s-1)/2."""
    k, h, w = resp.shape
    r = resp.clamp_min(0) ** 2  # squared: the centroid follows the peak, not the faint far tail
    iy = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    ix = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    total = r.double().sum(dim=(1, 2))
    cy = (r.double() * iy).sum(dim=(1, 2)) / total
    cx = (r.double() * ix).sum(dim=(1, 2)) / total
    return torch.stack([cy, cx], dim=1).numpy() * stride + (stride - 1) / 2.0


def peak(maps: torch.Tensor) -> np.ndarray:
    """Argmax (y, x) of K x H x W maps, in px (a flat top: the mean of the tied pixels)."""
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    top = flat >= flat.max(dim=1, keepdim=True).values - 1e-6 * flat.abs().max(dim=1, keepdim=True).values
    ys = torch.arange(h).repeat_interleave(w).double()
    xs = torch.arange(w).repeat(h).double()
    n = top.sum(dim=1).double()
    return torch.stack([(top * ys).sum(1) / n, (top * xs).sum(1) / n], dim=1).numpy()


def summary(offsets: np.ndarray) -> Dict[str, list]:
    """Mean and std of (dy, dx) offsets, px."""
    return {"mean": [round(float(v), 3) for v in offsets.mean(0)], "std": [round(float(v), 3) for v in offsets.std(0)]}


def measure(backbone_name: str, size: int, square: int, sigma: float, strides=(4, 8, 16)) -> Dict:
    backbone = create_backbone(backbone_name).eval()
    origin = size // 2 - 8  # a 16 x 16 block in the middle: far from the borders
    images, centres = spot_images(size, square, origin, 16)
    flat_image = torch.full((1, 3, size, size), 0.5)
    with torch.no_grad():
        flat = backbone(flat_image, strides)
        out: Dict[int, list] = {s: [] for s in strides}
        for start in range(0, len(images), 32):
            feats = backbone(images[start : start + 32], strides)
            for s in strides:
                out[s].append(cell_response(feats[s], flat[s]))
    resp = {s: torch.cat(v) for s, v in out.items()}
    result: Dict = {"per_stride": {}}
    for s in strides:
        up0 = upsample_maps(resp[s][:, None], size, sigma=0.0)[:, 0]
        up = upsample_maps(resp[s][:, None], size, sigma=sigma)[:, 0]
        result["per_stride"][str(s)] = {
            "theory_tf_same_px": (s - 1) / 2.0,
            "grid_centroid_offset": summary(centres - grid_centroid(resp[s], s)),
            "upsampled_peak_offset_sigma0": summary(centres - peak(up0)),
            f"upsampled_peak_offset_sigma{sigma:g}": summary(centres - peak(up)),
        }
    if 8 in strides and 16 in strides:
        # fuse_stages resizes the stride-16 map onto the stride-8 grid bilinearly (align_corners=False)
        r16_on_8 = F.interpolate(resp[16][:, None], size=resp[8].shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        result["fusion_16_on_8"] = {
            "stride16_on_8_centroid_offset": summary(centres - grid_centroid(r16_on_8, 8)),
            "stride8_centroid_offset": summary(centres - grid_centroid(resp[8], 8)),
        }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--squares", type=int, nargs="+", default=[1, 2], help="spot sides in px")
    parser.add_argument("--sigma", type=float, default=4.0, help="Gaussian sigma of the map path (default 4)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "backbone": args.backbone,
        "size": args.size,
        "convention": "offset = spot centre - located response, px (y, x); + means the response sits up/left",
        "squares": {str(q): measure(args.backbone, args.size, q, args.sigma) for q in args.squares},
        "defectkit": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "command": " ".join(["python", "benchmarks/feature_offset.py"] + (argv if argv is not None else sys.argv[1:])),
    }
    (out / f"feature_offset_{args.backbone}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["squares"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
