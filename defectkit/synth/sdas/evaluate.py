"""Does the strength s do what SDAS claims? Distance of samples to the training set.

s = 0 should give normal-looking samples (close to some training image); larger s
should move samples away. We measure, per sample, the mean per-pixel absolute
difference (RGB, in [0, 1]) to its nearest training image at the model resolution.

    python -m defectkit.synth.sdas.evaluate --model .cache/sdas/bottle_64.pt \
        --data ../shared/data/mvtec_ad/bottle --n 64 --report docs/synthesis/sdas_bottle.md
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def nearest_train_distance(samples: np.ndarray, train: np.ndarray, batch: int = 64) -> np.ndarray:
    """Per sample: min over training images of the mean |sample - train| per pixel and channel, in [0, 1]."""
    s = torch.from_numpy(samples.reshape(len(samples), -1).astype(np.float32) / 255.0)
    t = torch.from_numpy(train.reshape(len(train), -1).astype(np.float32) / 255.0)
    best = torch.full((len(s),), float("inf"))
    for start in range(0, len(t), batch):
        d = torch.cdist(s, t[start : start + batch], p=1) / s.shape[1]
        best = torch.minimum(best, d.min(dim=1).values)
    return best.numpy()


def compare_strengths(
    model, train: np.ndarray, n: int = 64, strengths=(0.0, 0.2), seed: int = 0, steps: int = 20, progress: bool = False
) -> dict:
    """Sample ``n`` images per strength (same seed, so the same initial noise) and measure."""
    out = {}
    for s in strengths:
        start = time.perf_counter()
        samples = model.sample(n, strength=s, seed=seed, steps=steps, progress=progress)
        seconds = time.perf_counter() - start
        d = nearest_train_distance(samples, train)
        out[float(s)] = {
            "samples": samples,
            "distance_mean": float(d.mean()),
            "distance_std": float(d.std()),
            "seconds": seconds,
        }
    return out


def main(argv=None) -> None:
    import argparse

    from ..io import find_images, load_image
    from ..preview import save_preview
    from .model import SDASModel

    ap = argparse.ArgumentParser(description="SDAS nearest-training-image distance at s=0 vs s=0.2")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="category folder (train/good is used)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.0, 0.2])
    ap.add_argument("--report", default=None, help="write a markdown report here")
    ap.add_argument("--grid", default=None, help="write a PNG grid of samples here (rows = strengths)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = SDASModel.load(args.model)
    folder = Path(args.data) / "train" / "good"
    train = np.stack([load_image(p, model.image_size) for p in find_images(folder)])
    res = compare_strengths(model, train, args.n, args.strengths, args.seed, args.steps, progress=True)
    for s, r in res.items():
        print(
            f"s={s:g}: nearest-train mean |diff| = {r['distance_mean']:.4f} +- {r['distance_std']:.4f} "
            f"({args.n} samples in {r['seconds']:.1f} s)"
        )
    if args.grid:
        from PIL import Image

        k = min(16, args.n)
        rows = [np.concatenate(list(r["samples"][:k]), axis=1) for r in res.values()]
        grid = Image.fromarray(np.concatenate(rows, axis=0)).resize((k * 96, len(rows) * 96), Image.NEAREST)
        save_preview(grid, args.grid)
    if args.report:
        info = model.info
        lines = [
            f"- model: `{args.model}` (sha256 {model.weights_hash()[:16]}), {info.get('resolution')} px, "
            f"{info.get('steps')} training steps x batch {info.get('batch_size')} in "
            f"{info.get('seconds', 0) / 60:.1f} min, seed {info.get('seed')}, final loss {info.get('final_loss', float('nan')):.4f}",
            f"- sampling: {args.n} images per strength, {args.steps} respaced steps, seed {args.seed}",
        ]
        for s, r in res.items():
            lines.append(
                f"- s = {s:g}: nearest-training-image mean per-pixel |diff| = {r['distance_mean']:.4f} "
                f"(std {r['distance_std']:.4f}); sampling took {r['seconds']:.1f} s"
            )
        Path(args.report).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
