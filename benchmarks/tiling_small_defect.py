"""Tiling vs. resizing on large frames with one small defect: which finds it, at what memory.

Generates (seeded, nothing downloaded) ``--train`` normal frames of ``--size`` x ``--size`` px
of a multi-scale grain texture, and three test frames: one with a dark pit ``--defect`` px
across, two normal. One method (default PatchCore, seed 0) is fitted twice on the same
frames:

* ``tiled``: ``tile_size=--tile`` at native resolution (``image_size`` = tile), overlap
  ``--overlap``, maps stitched back to the frame;
* ``resized``: every frame resized to ``--tile`` x ``--tile`` (the default preprocessing).

For each it reports whether the defect's region holds the highest value of the defect
frame's map (for the resized model the region is every map pixel whose footprint touches
the defect, the most lenient reading), the ratio of the highest value inside the region to
the highest outside it, and whether the defect frame gets the highest image score. Fit and
prediction each run in a fresh process, so their peak resident memory (VmHWM) is
their own; prediction of the tiled model is also measured on a frame of twice the side,
to show that memory follows the frame, not the number of tiles.

    python benchmarks/tiling_small_defect.py --out benchmarks/results/tiling-2048px-12px-<date>
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def frame(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grey metal-like surface: grain at 128, 32 and 8 px plus pixel noise, uint8 RGB."""
    from defectkit.synth.perlin import perlin_noise

    g = 128.0
    for periods, amp in ((size // 128, 22.0), (size // 32, 14.0), (size // 8, 9.0)):
        g = g + amp * perlin_noise((size, size), (periods, periods), rng)
    g = g + rng.normal(0.0, 5.0, (size, size))
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def add_pit(img: np.ndarray, cy: int, cx: int, diameter: int) -> np.ndarray:
    """A dark round pit ``diameter`` px across; returns its mask."""
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    r = diameter / 2.0
    mask = (yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= r * r
    img[mask] = (img[mask].astype(np.int16) - 70).clip(0, 255).astype(np.uint8)
    return mask


def make_data(work: Path, size: int, n_train: int, diameter: int, seed: int) -> dict:
    from PIL import Image

    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(n_train):
        p = work / "train" / f"frame_{i:02d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame(rng, size)).save(p)
        train.append(str(p))
    test = []
    bad = frame(rng, size)
    cy, cx = int(size * 0.61), int(size * 0.37)
    mask = add_pit(bad, cy, cx, diameter)
    (work / "test").mkdir(exist_ok=True)
    Image.fromarray(bad).save(work / "test" / "defect.png")
    np.save(work / "test" / "defect_mask.npy", mask)
    test.append(str(work / "test" / "defect.png"))
    for i in range(2):
        p = work / "test" / f"normal_{i}.png"
        Image.fromarray(frame(rng, size)).save(p)
        test.append(str(p))
    big = work / "test" / "normal_double_side.png"
    Image.fromarray(frame(rng, 2 * size)).save(big)
    return {
        "train": train,
        "test": test,
        "mask": str(work / "test" / "defect_mask.npy"),
        "big": str(big),
        "defect_centre": [cy, cx],
    }


def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM). Unlike ru_maxrss, which Linux carries
    over from the parent across exec, it starts afresh in a spawned process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fit_child(q, args: dict) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    from defectkit.models.factory import build_model

    t0 = time.perf_counter()
    model = build_model(
        args["method"],
        {},
        image_size=args["tile"],
        device="cpu",
        seed=args["seed"],
        cache_dir=args["cache"],
        use_cache=False,
        **({"tile_size": args["tile"], "tile_overlap": args["overlap"]} if args["tiled"] else {}),
    )
    model.fit(args["train"], progress=False)
    model.save(args["model"], overwrite=True)
    q.put(
        {
            "fit_seconds": time.perf_counter() - t0,
            "fit_peak_rss_mb": _peak_mb(),
            "fit_info": {k: v for k, v in model.fit_info_.items() if isinstance(v, (int, float, str, dict))},
        }
    )


def _predict_child(q, args: dict) -> None:
    import torch

    torch.set_num_threads(args["threads"])
    from defectkit.models import load_model

    model = load_model(args["model"], device="cpu")
    t0 = time.perf_counter()
    scores, maps = [], []
    for p in args["paths"]:
        s, m = model.predict([p])
        scores.append(float(s[0]))
        maps.append(m[0])
    out = {"predict_seconds": time.perf_counter() - t0, "predict_peak_rss_mb": _peak_mb(), "scores": scores}
    if args.get("mask"):
        out.update(locate(maps[0], np.load(args["mask"])))
    q.put(out)


def locate(amap: np.ndarray, mask: np.ndarray) -> dict:
    """Does the defect's region hold the map's maximum? (map at any resolution; the mask is
    brought to it by footprint: a map pixel belongs to the region when its area touches the defect)."""
    h, w = amap.shape
    H, W = mask.shape
    if (h, w) != (H, W):
        fy, fx = H // h, W // w
        region = mask[: h * fy, : w * fx].reshape(h, fy, w, fx).any(axis=(1, 3))
    else:
        region = mask
    peak = np.unravel_index(int(np.argmax(amap)), amap.shape)
    inside, outside = float(amap[region].max()), float(amap[~region].max())
    return {
        "map_shape": [h, w],
        "region_pixels": int(region.sum()),
        "peak_in_defect": bool(region[peak]),
        "max_inside": inside,
        "max_outside": outside,
        "inside_over_outside": inside / outside,
        "peak_yx": [int(peak[0]), int(peak[1])],
    }


def run(target, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(q, args))
    p.start()
    out = q.get()
    p.join()
    if p.exitcode:
        raise RuntimeError(f"{target.__name__} failed with exit code {p.exitcode}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="results folder (results.json, summary.md)")
    ap.add_argument("--work", help="folder for the generated frames and models (default: a temporary folder)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--defect", type=int, default=12, help="pit diameter in px")
    ap.add_argument("--train", type=int, default=3, help="normal training frames")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--method", default="patchcore")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if (out / "results.json").exists() and not a.force:
        raise SystemExit(f"{out / 'results.json'} exists; pass --force to replace it")
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="tiling-check-"))
    start = time.perf_counter()
    data = make_data(work, a.size, a.train, a.defect, a.seed)
    results = {}
    for mode in ("tiled", "resized"):
        common = {
            "method": a.method,
            "tile": a.tile,
            "overlap": a.overlap,
            "seed": a.seed,
            "threads": a.threads,
            "tiled": mode == "tiled",
            "model": str(work / f"{mode}.pt"),
            "cache": str(work / "cache"),
        }
        r = run(_fit_child, {**common, "train": data["train"]})
        r.update(run(_predict_child, {**common, "paths": data["test"], "mask": data["mask"]}))
        if mode == "tiled":
            big = run(_predict_child, {**common, "paths": [data["big"]]})
            r["double_side_predict_peak_rss_mb"] = big["predict_peak_rss_mb"]
            r["double_side_predict_seconds"] = big["predict_seconds"]
        r["defect_frame_scores_highest"] = bool(np.argmax(r["scores"]) == 0)
        results[mode] = r
        print(mode, json.dumps({k: v for k, v in r.items() if k != "fit_info"}), flush=True)

    from defectkit.engine.environment import environment_info

    env = environment_info("cpu")
    given = list(argv or sys.argv[1:])
    if "--work" in given:  # a scratch folder for the generated frames: not part of the result
        i = given.index("--work")
        del given[i : i + 2]
    payload = {
        "command": " ".join(["python", "benchmarks/tiling_small_defect.py"] + given),
        "settings": {k: v for k, v in vars(a).items() if k not in ("out", "work", "force")},
        "defect_centre_yx": data["defect_centre"],
        "results": results,
        "environment": env,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        "total_seconds": time.perf_counter() - start,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    t, r = results["tiled"], results["resized"]
    lines = [
        f"# Tiling vs resizing: {a.size} x {a.size} px frames, one {a.defect} px defect",
        "",
        f"{a.method}, seed {a.seed}, {a.train} normal training frames, 3 test frames (1 with the defect). "
        f"Tiled: {a.tile} px tiles at native resolution, {a.overlap} px overlap. Resized: frames resized to "
        f"{a.tile} x {a.tile}.",
        "",
        "| | tiled | resized |",
        "|---|---|---|",
        f"| map size | {t['map_shape'][0]} x {t['map_shape'][1]} | {r['map_shape'][0]} x {r['map_shape'][1]} |",
        f"| map maximum inside the defect region | {'yes' if t['peak_in_defect'] else 'no'} | "
        f"{'yes' if r['peak_in_defect'] else 'no'} |",
        f"| max inside / max outside the region | {t['inside_over_outside']:.3f} | {r['inside_over_outside']:.3f} |",
        f"| defect frame has the highest image score | {'yes' if t['defect_frame_scores_highest'] else 'no'} | "
        f"{'yes' if r['defect_frame_scores_highest'] else 'no'} |",
        f"| image scores (defect, normal, normal) | {', '.join(f'{s:.3f}' for s in t['scores'])} | "
        f"{', '.join(f'{s:.3f}' for s in r['scores'])} |",
        f"| fit s / peak RSS MB | {t['fit_seconds']:.1f} / {t['fit_peak_rss_mb']:.0f} | "
        f"{r['fit_seconds']:.1f} / {r['fit_peak_rss_mb']:.0f} |",
        f"| predict 3 frames s / peak RSS MB | {t['predict_seconds']:.1f} / {t['predict_peak_rss_mb']:.0f} | "
        f"{r['predict_seconds']:.1f} / {r['predict_peak_rss_mb']:.0f} |",
        f"| predict one {2 * a.size} x {2 * a.size} frame s / peak RSS MB | "
        f"{t['double_side_predict_seconds']:.1f} / {t['double_side_predict_peak_rss_mb']:.0f} | - |",
        "",
        "The resized model's defect region is every map pixel whose footprint touches the defect "
        f"({r['region_pixels']} px of its {r['map_shape'][0]} x {r['map_shape'][1]} map). Fit and prediction each ran "
        "in a fresh process; peak RSS is that process's peak resident memory (VmHWM; Python, torch and the backbone "
        "included).",
        "",
        f"- tiles: {t['fit_info'].get('tiles')}",
        f"- machine: {env.get('machine', '')}; torch threads {a.threads}; shared with other jobs while it ran, "
        "so seconds are indicative",
        f"- versions: defectkit {env.get('defectkit_version', '')}, torch {env.get('torch_version', '')}, "
        f"numpy {env.get('numpy_version', '')}, python {env.get('python_version', '')}",
        f"- command: `{payload['command']}`",
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
