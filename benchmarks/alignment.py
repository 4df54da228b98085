"""Are a model's anomaly maps offset from their evidence? Shift validation maps and re-score them.

The EfficientNet-Lite backbone pads like TensorFlow ("SAME": the extra row and column at the
bottom/right), while every resize assumes cell centres at ``s*i + (s-1)/2``; if that shifted
the maps, moving them back by a few pixels would raise the localisation metrics. This script
checks it on the *validation* split only (held-out normal training images plus the synthetic
anomalies each method chooses its epoch on), never on test images:

1. rebuild the model's validation split from the held-out files named in the model file and
   the anomaly maker of the method's ``val_split`` and its seed (PatchCore has none: the shared self-contained
   maker ``synth.validation.builtin_anomalies`` is used, as PRN does);
2. score those images once with ``model.predict`` (the maps a user gets);
3. shift the maps by (dy, dx) for every integer pair in [-r, r]^2 and along the axes and
   diagonals out to R (``--inner`` r, ``--radius`` R; edge-replicated, in the
   map's own frame: ``shifted[y, x] = map[y - dy, x - dx]``, so dy > 0 moves content down)
   and compute P-AUROC and AUPRO with ``defectkit.metrics`` at every shift.

Maps and masks are read on every ``VAL_PIXEL_STRIDE``-th pixel after shifting, exactly as the
methods' epoch selection reads them. Output: ``<out>/<name>.json``, a markdown table (axes and
diagonals), and a heat map per metric when matplotlib is installed.

    python benchmarks/alignment.py --model bottle_patchcore.pt --name patchcore_bottle \
        --out benchmarks/results/alignment-2026-12-02
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from defectkit import __version__
from defectkit.data.batches import load_images
from defectkit.metrics import aupro, pixel_auroc
from defectkit.models import load_model
from defectkit.models.components.validation import VAL_PIXEL_STRIDE, subsample
from defectkit.synth.validation import builtin_anomalies
from defectkit.utils.images import from_uint8, to_uint8


def validation_split(model) -> Tuple[torch.Tensor, np.ndarray, np.ndarray, str]:
    """(images N x 3 x S x S in [0, 1], masks N x S x S bool, labels N, how) of ``model``'s validation split.

    The held-out normals are the files the model file names (``fit_info_["held_out_files"]``);
    the anomalies are made from them with the maker of the method's ``val_split`` and its seed.
    """
    files = model.fit_info_.get("held_out_files")
    if not files:
        raise SystemExit(f"the {model.method} model names no held-out files: it was fitted without a validation split")
    images, _, _ = load_images([Path(f) for f in files], model.preprocess, on_error="raise")
    if hasattr(model, "validation_anomalies"):  # the trained methods: their val_split, suite or own
        made = model.validation_anomalies(images)
        anomalies, masks, how = made.images, made.masks, made.source
    else:  # patchcore / padim, which select nothing on validation
        anomalies, masks = builtin_anomalies(images, 2, seed=model.seed + 1)
        how = "builtin"
    anomalies = from_uint8(to_uint8(anomalies))  # as the methods feed them: 8-bit images
    s = images.shape[-1]
    all_images = torch.cat([images, anomalies.to(images.dtype)])
    all_masks = torch.cat([torch.zeros(len(images), s, s, dtype=torch.bool), masks.bool()]).numpy()
    labels = np.r_[np.zeros(len(images), int), np.ones(len(anomalies), int)]
    return all_images, all_masks, labels, how


def predict_maps(model, images: torch.Tensor, chunk: int = 16) -> np.ndarray:
    """``model.predict`` maps (N x S x S) of an in-memory batch, in chunks."""
    parts = []
    for start in range(0, len(images), chunk):
        _, maps = model.predict(images[start : start + chunk])
        parts.append(np.asarray(maps, dtype=np.float32))
    return np.concatenate(parts)


def shift_maps(maps: np.ndarray, dy: int, dx: int, padded: np.ndarray, radius: int) -> np.ndarray:
    """``maps`` moved by (dy, dx) px with edge replication: ``out[y, x] = maps[y - dy, x - dx]``.

    ``padded`` is ``maps`` edge-padded by ``radius`` on both sides of both axes (made once)."""
    h, w = maps.shape[-2:]
    return padded[:, radius - dy : radius - dy + h, radius - dx : radius - dx + w]


def grid_offsets(radius: int, inner: int) -> List[Tuple[int, int]]:
    """Every (dy, dx) with both in [-inner, inner], plus the axes and diagonals out to ``radius``."""
    offsets = [(dy, dx) for dy in range(-inner, inner + 1) for dx in range(-inner, inner + 1)]
    for k in range(inner + 1, radius + 1):
        for sy, sx in ((1, 0), (0, 1), (1, 1), (1, -1)):
            for sign in (1, -1):
                offsets.append((sign * sy * k, sign * sx * k))
    return sorted(set(offsets))


def shift_grid(maps: np.ndarray, masks: np.ndarray, offsets: List[Tuple[int, int]]) -> List[Dict[str, float]]:
    """P-AUROC and AUPRO (validation pixel stride) of ``maps`` shifted by every (dy, dx) of ``offsets``."""
    radius = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    padded = np.pad(maps, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    sub_masks = subsample(masks)
    rows = []
    for dy, dx in offsets:
        shifted = np.ascontiguousarray(subsample(shift_maps(maps, dy, dx, padded, radius)))
        rows.append(
            {"dy": dy, "dx": dx, "pixel_auroc": pixel_auroc(sub_masks, shifted), "aupro": aupro(sub_masks, shifted)}
        )
    return rows


def best_shift(rows: List[Dict[str, float]], metric: str) -> Dict[str, float]:
    """The row with the highest ``metric`` (ties: the smallest shift)."""
    return max(rows, key=lambda r: (round(r[metric], 6), -(abs(r["dy"]) + abs(r["dx"]))))


def markdown_table(name: str, rows: List[Dict[str, float]], radius: int) -> str:
    """Axes and diagonals of the grid as a markdown table (metrics in %, change vs. no shift)."""
    by = {(r["dy"], r["dx"]): r for r in rows}
    zero = by[(0, 0)]
    lines = [
        f"### {name}",
        "",
        "| shift (dy, dx) px | P-AUROC | d | AUPRO | d |",
        "|---|---|---|---|---|",
    ]
    picked = []
    for k in range(-radius, radius + 1):
        for key in ((k, k), (k, 0), (0, k), (k, -k)):
            if key in by and key not in picked:
                picked.append(key)
    picked.sort(key=lambda t: (max(abs(t[0]), abs(t[1])), t))
    for key in picked:
        r = by[key]
        lines.append(
            f"| {key} | {100 * r['pixel_auroc']:.2f} | {100 * (r['pixel_auroc'] - zero['pixel_auroc']):+.2f} "
            f"| {100 * r['aupro']:.2f} | {100 * (r['aupro'] - zero['aupro']):+.2f} |"
        )
    for metric in ("pixel_auroc", "aupro"):
        b = best_shift(rows, metric)
        lines.append("")
        lines.append(
            f"best {metric} over the full grid: ({b['dy']}, {b['dx']}) = {100 * b[metric]:.2f} "
            f"({100 * (b[metric] - zero[metric]):+.2f} vs. no shift)"
        )
    return "\n".join(lines) + "\n"


def heat_maps(name: str, rows: List[Dict[str, float]], radius: int, out: Path) -> None:
    """One PNG: change of P-AUROC and AUPRO vs. no shift over the (dy, dx) grid."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    offsets = list(range(-radius, radius + 1))
    by = {(r["dy"], r["dx"]): r for r in rows}
    nan = {"pixel_auroc": np.nan, "aupro": np.nan}  # shifts outside the grid stay blank
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, metric in zip(axes, ("pixel_auroc", "aupro")):
        grid = np.array(
            [[100 * (by.get((dy, dx), nan)[metric] - by[(0, 0)][metric]) for dx in offsets] for dy in offsets]
        )
        lim = max(1e-3, float(np.nanmax(np.abs(grid))))
        lo, hi = offsets[0] - 0.5, offsets[-1] + 0.5
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, extent=(lo, hi, hi, lo))  # row 0 (dy = -R) on top
        ax.set_xlabel("dx (px, + = right)")
        ax.set_ylabel("dy (px, + = down)")
        ax.set_title(f"{metric}: change (points)")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{name}: validation maps shifted by (dy, dx)")
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="fitted defectkit model file (with a validation hold-out)")
    parser.add_argument("--name", required=True, help="name of the result files, e.g. patchcore_bottle")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--radius", type=int, default=8, help="largest shift in px (default 8)")
    parser.add_argument(
        "--inner",
        type=int,
        default=None,
        help="full grid out to this shift, axes and diagonals beyond (default: --radius)",
    )
    parser.add_argument("--note", default="", help="free text stored with the result (how the model was fitted)")
    parser.add_argument("--force", action="store_true", help="replace existing result files")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{args.name}.json"
    if target.exists() and not args.force:
        raise SystemExit(f"{target} exists: pass --force to replace it")
    t0 = time.perf_counter()
    model = load_model(args.model, device="cpu")
    images, masks, labels, how = validation_split(model)
    maps = predict_maps(model, images)
    t_pred = time.perf_counter() - t0
    inner = args.radius if args.inner is None else min(args.inner, args.radius)
    rows = shift_grid(maps, masks, grid_offsets(args.radius, inner))
    result = {
        "name": args.name,
        "model": str(Path(args.model).resolve()),
        "method": model.method,
        "seed": model.seed,
        "params": {k: v for k, v in model.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
        "note": args.note,
        "validation": {
            "normals": int((labels == 0).sum()),
            "anomalies": int((labels == 1).sum()),
            "anomaly_maker": how,
            "pixel_stride": VAL_PIXEL_STRIDE,
            "map_size": int(maps.shape[-1]),
            "anomalous_pixel_fraction": float(masks[labels == 1].mean()),
        },
        "shift_convention": "shifted[y, x] = map[y - dy, x - dx], edge-replicated (dy > 0: content moves down)",
        "grid": {"radius": args.radius, "full_grid_radius": inner, "beyond": "axes and diagonals"},
        "rows": rows,
        "best": {m: best_shift(rows, m) for m in ("pixel_auroc", "aupro")},
        "seconds": {"predict": round(t_pred, 1), "total": round(time.perf_counter() - t0, 1)},
        "defectkit": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.platform(),
        "command": " ".join(["python", "benchmarks/alignment.py"] + (argv if argv is not None else sys.argv[1:])),
    }
    target.write_text(json.dumps(result, indent=1))
    table = markdown_table(args.name, rows, args.radius)
    (out / f"{args.name}.md").write_text(table)
    heat_maps(args.name, rows, args.radius, out)
    print(table)
    print(f"{len(rows)} shifts, {result['seconds']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
