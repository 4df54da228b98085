"""Fit time, peak memory and inference speed as the number of good training images grows.

A category's ``train/good`` is enlarged 1x, 4x, 8x, ... with label-preserving copies: copy j
of an image is the j-th element of the square's symmetry group (identity, 90/180/270-degree
rotations, and the flips of each), with a small seeded colour jitter (brightness, contrast
+-4 %) on every copy but the original. The copies are written once to a temporary folder
(removed at the end; never into the repository or the data set) and are for timing only:
no accuracy is read from them.

Each (method, size) is fitted in a fresh subprocess, so its peak resident memory
(``ru_maxrss``) is that fit's own; the subprocess then times ``predict`` on the first
``--infer-images`` test images, preprocessed, in batches of ``batch_size`` (best of 2 passes,
after a warm-up batch). With ``--lock FILE`` every subprocess runs under ``flock FILE`` so
timing runs of a shared machine never overlap; the copies are written at the caller's priority.

    nice -n 15 python benchmarks/scaling.py --data ../shared/data/mvtec_ad/bottle --factors 1 4 8 \\
        --work /tmp/copies --prepare-only --out unused
    python benchmarks/scaling.py --data ../shared/data/mvtec_ad/bottle --work /tmp/copies \\
        --methods patchcore "simplenet[epochs=4]" --factors 1 4 8 --lock /tmp/timing.lock \\
        --out benchmarks/results/scaling-<date>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

#: The 8 symmetries of the square, as (quarter turns, mirror) pairs; copy j uses element j.
SYMMETRIES = [(0, False), (1, False), (2, False), (3, False), (0, True), (1, True), (2, True), (3, True)]


def labelled_copy(image: np.ndarray, j: int, rng: np.random.Generator) -> np.ndarray:
    """Copy ``j`` of an H x W x 3 uint8 image: symmetry ``j``, colour-jittered unless j == 0."""
    turns, mirror = SYMMETRIES[j]
    out = np.rot90(image[:, ::-1] if mirror else image, turns)
    if j == 0:
        return np.ascontiguousarray(out)
    brightness, contrast = rng.uniform(-0.04, 0.04), rng.uniform(0.96, 1.04)
    x = out.astype(np.float32) / 255.0
    x = (x - x.mean()) * contrast + x.mean() + brightness
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def enlarge(train_paths: List[Path], factor: int, folder: Path, seed: int = 0) -> List[Path]:
    """Write ``factor`` copies of every image to ``folder`` -> the paths, copy-major order."""
    from PIL import Image

    if not 1 <= factor <= len(SYMMETRIES):
        raise ValueError(f"factor must be 1..{len(SYMMETRIES)} (one symmetry per copy), got {factor}")
    folder.mkdir(parents=True, exist_ok=True)
    target = lambda j, path: folder / f"copy{j}_{path.stem}.png"  # noqa: E731
    for i, path in enumerate(train_paths):  # one decode per source image
        todo = [j for j in range(factor) if not target(j, path).exists()]
        if todo:
            image = np.asarray(Image.open(path).convert("RGB"))
            for j in todo:
                Image.fromarray(labelled_copy(image, j, np.random.default_rng([seed, i, j]))).save(
                    target(j, path), compress_level=1
                )
    return [target(j, path) for j in range(factor) for path in train_paths]


def worker(args: argparse.Namespace) -> None:
    """One fit and one inference timing in this process; prints one JSON row."""
    import torch

    from defectkit.data import load_dataset
    from defectkit.models.factory import build_model, parse_method_spec

    paths = [Path(p) for p in json.loads(Path(args.paths_file).read_text())]
    name, params = parse_method_spec(args.method)
    model = build_model(name, params, seed=args.seed, device="cpu", use_cache=False)
    start = time.perf_counter()
    model.fit(paths, progress=False)
    fit_s = time.perf_counter() - start
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    test = load_dataset(args.data).test[: args.infer_images]
    images = model.as_tensor([s.path for s in test])
    model.predict(images[: model.batch_size])  # warm-up
    passes = []
    for _ in range(2):
        t = time.perf_counter()
        model.predict(images)
        passes.append(time.perf_counter() - t)
    info = model.fit_info_
    row = {
        "method": args.method,
        "factor": args.factor,
        "train_images": len(paths),
        "seed": args.seed,
        "fit_seconds": fit_s,
        "peak_rss_fit_mb": fit_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "infer_img_s": len(images) / min(passes),
        "infer_images": len(images),
        "torch_threads": torch.get_num_threads(),
        **{
            k: info[k]
            for k in (
                "bank_size",
                "patches",
                "coreset_candidates",
                "feature_seconds",
                "coreset_seconds",
                "epochs_run",
                "best_epoch",
            )
            if k in info
        },
        "load_average_after": os.getloadavg(),
    }
    print("ROW " + json.dumps(row), flush=True)


def plot(rows: List[Dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["train_images"])
        n = [r["train_images"] for r in mine]
        for ax, key in zip(axes, ("fit_seconds", "peak_rss_mb", "infer_img_s")):
            ax.plot(n, [r[key] for r in mine], marker="o", label=method)
    base = [r for r in rows if r["factor"] == 1]
    for r in base:  # the linear-cost reference: 1x fit time scaled with the data
        xs = sorted({q["train_images"] for q in rows})
        axes[0].plot(xs, [r["fit_seconds"] * x / r["train_images"] for x in xs], ls=":", color="grey", lw=0.8)
    for ax, title in zip(
        axes, ("fit seconds (dotted: linear from 1x)", "peak RSS of the fit process, MiB", "inference images/s")
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training images")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scaling.svg")
    fig.savefig(out / "scaling.png", dpi=110)


def summary(rows: List[Dict], runs: List[List[str]], args: argparse.Namespace, started: str) -> str:
    lines = [
        "| method | factor | train images | fit s | fit / 1x | peak RSS MiB | infer img/s | infer / 1x | bank |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one = next((q for q in rows if q["method"] == r["method"] and q["factor"] == 1), r)
        lines.append(
            f"| {r['method']} | {r['factor']}x | {r['train_images']} | {r['fit_seconds']:.1f} | "
            f"{r['fit_seconds'] / one['fit_seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['infer_img_s']:.2f} | "
            f"{r['infer_img_s'] / one['infer_img_s']:.2f} | {r.get('bank_size', '')} |"
        )
    import torch

    from defectkit import __version__

    lines += [
        "",
        *[f"- command: `python benchmarks/scaling.py {' '.join(run)}`" for run in runs],
        f"- started {started}; seed {args.seed}; every fit in a fresh process, feature cache off, "
        f"{'each run under flock ' + args.lock if args.lock else 'no lock'}",
        f"- inference: first {args.infer_images} test images, preprocessed, best of 2 passes after a warm-up batch",
        f"- versions: defectkit {__version__}, torch {torch.__version__}, python {platform.python_version()}",
        f"- machine: {platform.platform()}; {os.cpu_count()} CPUs; load average per run in results.json",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="a category folder (MVTec AD layout)")
    parser.add_argument("--methods", nargs="+", default=["patchcore"], help="method specs, e.g. simplenet[epochs=4]")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--at-1x",
        nargs="*",
        default=[],
        metavar="SPEC",
        help="method specs run at 1x only, as references (e.g. patchcore[max_bank_size=0])",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--infer-images", type=int, default=32)
    parser.add_argument("--subset", type=int, help="use only the first N training images (before the copies)")
    parser.add_argument("--lock", help="run every fit under `flock LOCK` (shared timing lock)")
    parser.add_argument("--work", type=Path, help="folder for the copies (default: a temporary one, removed)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--force", action="store_true", help="replace an existing --out folder's results")
    parser.add_argument("--append", action="store_true", help="add rows to an existing --out folder's results")
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only write the copies into --work (e.g. under nice, before the timing run)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--factor", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paths-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.prepare_only:
        from defectkit.data import load_dataset

        if args.work is None:
            sys.exit("--prepare-only needs --work (the folder the timing run will reuse)")
        enlarge([s.path for s in load_dataset(args.data).train], max(args.factors), args.work / "good")
        return
    if (args.out / "results.json").exists() and not (args.force or args.append):
        sys.exit(f"{args.out}/results.json exists; pass --force to replace it")
    from defectkit.data import load_dataset

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    train = [s.path for s in load_dataset(args.data).train][: args.subset]
    previous = json.loads((args.out / "results.json").read_text()) if args.append else {"rows": [], "runs": []}
    rows = previous["rows"]
    runs = previous.get("runs", [previous.get("argv")] if previous.get("argv") else []) + [sys.argv[1:]]
    with tempfile.TemporaryDirectory(prefix="defectkit-scaling-") as tmp:
        work = args.work or Path(tmp)
        for factor in args.factors:
            paths = enlarge(train, factor, work / "good")
            paths_file = work / f"paths-{factor}x.json"
            paths_file.write_text(json.dumps([str(p) for p in paths]))
            for method in args.methods + (args.at_1x if factor == 1 else []):
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--data",
                    str(args.data),
                    "--method",
                    method,
                    "--factor",
                    str(factor),
                    "--paths-file",
                    str(paths_file),
                    "--seed",
                    str(args.seed),
                    "--infer-images",
                    str(args.infer_images),
                    "--out",
                    str(args.out),
                ]
                if args.lock:
                    cmd = ["flock", args.lock] + cmd
                load_before = os.getloadavg()
                begun = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                done = subprocess.run(cmd, capture_output=True, text=True)
                found = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
                if done.returncode or not found:
                    sys.exit(f"{method} at {factor}x failed:\n{done.stderr[-3000:]}")
                row = dict(json.loads(found[0]), load_average_before=load_before, started=begun)
                print(json.dumps(row), flush=True)
                rows.append(row)
                args.out.mkdir(parents=True, exist_ok=True)  # kept after every fit: a later failure loses nothing
                (args.out / "results.json").write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    (args.out / "summary.md").write_text(
        "# Scaling with the number of good images\n\n" + summary(rows, runs, args, started)
    )
    plot(rows, args.out)
    print((args.out / "summary.md").read_text())


if __name__ == "__main__":
    main()
