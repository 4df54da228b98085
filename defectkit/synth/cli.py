"""``defectkit synth``: write a preview grid of synthetic anomalies for one category.

    defectkit synth --data ../shared/data/mvtec_ad/bottle --kind hoa -n 16 --seed 0 --out grid.png

Also runs standalone: ``python -m defectkit.synth.cli ...``. The main CLI wires it
with :func:`add_synth_subcommand` and dispatches to :func:`run_synth`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
KIND_CHOICES = ("dtd", "hea", "hoa", "ea", "cutpaste", "cutpaste_scar", "confetti", "sdas")


def add_synth_subcommand(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on an argparse subparsers object; returns the sub-parser."""
    p = subparsers.add_parser(
        "synth", help="preview synthetic anomalies (image / mask / overlay grid)", description=__doc__.split("\n\n")[0]
    )
    add_synth_arguments(p)
    p.set_defaults(func=run_synth)
    return p


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="category folder (MVTec layout: train/good) or a folder of normal images"
    )
    p.add_argument("--kind", required=True, choices=KIND_CHOICES, help="generator")
    p.add_argument("-n", type=int, default=16, help="number of examples (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--size", type=int, default=256, help="working resolution in px (default 256)")
    p.add_argument("--cell", type=int, default=128, help="preview cell size in px (default 128)")
    p.add_argument(
        "--textures",
        default=None,
        help="texture folder for dtd (default: $DEFECTKIT_TEXTURES or ../shared/data/dtd_subset)",
    )
    p.add_argument(
        "--mask",
        default="perlin",
        choices=("perlin", "circle", "rectangle", "polygon"),
        help="mask shape for dtd / hoa / sdas",
    )
    p.add_argument("--blend", default="alpha", choices=("alpha", "poisson"))
    p.add_argument(
        "--opacity",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=None,
        help="source opacity range (default per generator)",
    )
    p.add_argument(
        "--target",
        default="auto",
        choices=("auto", "foreground", "prior", "image"),
        help="target area: per-image foreground, a prior from normal images, or the whole image "
        "(auto: whole image for MVTec textures, else per-image foreground)",
    )
    p.add_argument(
        "--target-shapes", action="store_true", help="cut the target area with a random circle/rectangle/polygon (PRN)"
    )
    p.add_argument("--defects", type=int, default=10, help="seen defects for ea, from <data>/test (default 10)")
    p.add_argument("--sdas-model", default=None, help="SDAS checkpoint (default .cache/sdas/<category>_64.pt)")
    p.add_argument("--sdas-pool", default=".cache/sdas_pool", help="SDAS sample cache folder")
    p.add_argument(
        "--sdas-train-minutes",
        type=float,
        default=None,
        help="train an SDAS model (64 px) for this long if the checkpoint is missing",
    )


def _normal_images(data: Path) -> list[Path]:
    from .io import find_images

    folder = data / "train" / "good"
    files = find_images(folder if folder.is_dir() else data)
    if not files:
        raise SystemExit(f"no images found in {folder if folder.is_dir() else data}")
    return files


def _textures(arg) -> Path:
    candidates = [arg] if arg else [os.environ.get("DEFECTKIT_TEXTURES"), "../shared/data/dtd_subset"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise SystemExit("dtd needs a texture folder: pass --textures DIR (e.g. ../shared/data/dtd_subset)")


def _foreground(args, data: Path, files):
    from .io import load_image
    from .masks import estimate_foreground

    target = args.target
    if target == "auto":
        target = "image" if data.name in MVTEC_TEXTURES else "foreground"
    if target == "image":
        return None
    if target == "foreground":
        return "auto"
    return estimate_foreground([load_image(f, args.size) for f in files[:16]])


def _sdas_pool(args, data: Path, files, n: int):
    from .sdas import SamplePool, train_sdas

    path = Path(args.sdas_model or Path(".cache") / "sdas" / f"{data.name}_64.pt")
    if not path.exists():
        if args.sdas_train_minutes is None:
            raise SystemExit(
                f"no SDAS model at {path}: train one with --sdas-train-minutes M "
                "(or python -m defectkit.synth.sdas.train)"
            )
        train_sdas(files, path, size=64, minutes=args.sdas_train_minutes, seed=args.seed)
    return SamplePool(args.sdas_pool, path, seed=args.seed).ensure(max(n, 16), progress=True)


def run_synth(args) -> int:
    """Generate ``args.n`` examples and write the preview grid to ``args.out``."""
    from ..utils.output import check_output_file
    from .io import load_image
    from .preview import preview_grid, save_preview
    from .registry import make_generator
    from .sources import seen_defects_from_dir

    check_output_file(args.out, force=getattr(args, "force", False))  # before any generation
    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"--data: not a folder: {data}")
    files = _normal_images(data)
    kwargs = dict(
        mask=args.mask,
        blend=args.blend,
        foreground=_foreground(args, data, files),
        target_shapes=("circle", "rectangle", "polygon") if args.target_shapes else None,
    )
    if args.opacity is not None:
        kwargs["opacity"] = tuple(args.opacity)
    kind = args.kind
    if kind in ("dtd", "hea"):
        kwargs["textures"] = _textures(args.textures)
    elif kind == "ea":
        kwargs["defects"] = seen_defects_from_dir(data, args.defects, args.size, seed=args.seed)
        if not kwargs["defects"]:
            raise SystemExit(f"ea needs defective images with masks under {data}/test and {data}/ground_truth")
    elif kind == "sdas":
        kwargs["pool"] = _sdas_pool(args, data, files, args.n)
    generator = make_generator(kind, **kwargs)

    pick = np.random.default_rng(args.seed).choice(len(files), size=args.n, replace=args.n > len(files))
    start = time.perf_counter()
    images, results = [], []
    for i, k in enumerate(pick):
        image = load_image(files[int(k)], args.size)
        images.append(image)
        results.append(generator(image, np.random.default_rng([args.seed, i])))
    seconds = time.perf_counter() - start
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    nbytes = save_preview(preview_grid(images, None, results, cell=args.cell), args.out)
    areas = [float(r.mask.mean()) for r in results]
    print(
        f"{kind}: {args.n} examples at {args.size} px in {seconds:.1f} s; mask area mean {np.mean(areas):.3f} "
        f"(min {np.min(areas):.3f}, max {np.max(areas):.3f}); wrote {args.out} ({nbytes // 1024} KB)"
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="defectkit synth", description=__doc__.split("\n\n")[0])
    add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
