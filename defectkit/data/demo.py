"""A small procedurally generated category in MVTec AD layout, for demos and tests.

Why: the real data is not always beside the repository (CI, users' first run), yet
the demo and end-to-end tests need a category with real structure: a textured
machined disc on a dark table, with per-image jitter (shift, rotation, brightness,
noise) so "normal" is a distribution rather than one picture, and three defect types
with exact masks:

* ``scratch``: thin bright or dark polylines,
* ``stain``: blotches of a different colour blended over the texture,
* ``hole``: dark ellipses.

Deterministic for a seed (each image has its own seeded generator, so changing one
count does not change the other images), numpy + Pillow only, about a second.
Written into a temporary folder that is renamed into place after its marker file is
written, so a half-written data set is never mistaken for a complete one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .images import PathLike

MARKER = ".defectkit_demo.json"
DEFECT_TYPES = ("hole", "scratch", "stain")
_GENERATOR_VERSION = 1
_SPLIT_CODES = {"train": 1, "test_good": 2, "test_defect": 3}


def _normal_image(rng: np.random.Generator, size: int) -> Tuple[np.ndarray, dict]:
    """One defect-free part: float32 HxWx3 in [0, 255] plus its geometry."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cx = s / 2 + rng.uniform(-0.03, 0.03) * s
    cy = s / 2 + rng.uniform(-0.03, 0.03) * s
    radius = 0.36 * s * rng.uniform(0.98, 1.02)
    theta = math.radians(rng.uniform(-15.0, 15.0))
    brightness = rng.uniform(0.93, 1.07)

    # Dark table: bluish gray, a soft gradient and sensor noise.
    g = rng.uniform(-0.5, 0.5, size=2)
    table = 34 + 6 * (g[0] * (xx / s - 0.5) + g[1] * (yy / s - 0.5))
    img = np.stack([table, table + 2, table + 6], axis=2)

    dx, dy = xx - cx, yy - cy
    r = np.sqrt(dx * dx + dy * dy)
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = -dx * math.sin(theta) + dy * math.cos(theta)
    period = s / 32.0  # fine knurl, 8 px at 256
    knurl = 0.5 * (np.sin(2 * np.pi * u / period) + np.sin(2 * np.pi * v / period))
    shade = 1.0 - 0.18 * (r / radius) ** 2  # brighter centre, like a lit dome
    gray = (150 + 16 * knurl) * shade * brightness
    part = np.stack([gray, gray * 0.97, gray * 0.91], axis=2)
    # Machined features: a dark bore, a groove ring and an orientation notch.
    bore = r < 0.18 * radius
    groove = np.abs(r - 0.62 * radius) < max(1.0, s / 256)
    notch = (u > 0.86 * radius) & (np.abs(v) < 0.05 * radius)
    part[bore] = (18, 17, 16)
    part[groove] *= 0.55
    part[notch] = (28, 27, 26)
    alpha = np.clip(radius - r + 0.5, 0.0, 1.0)[..., None]  # anti-aliased rim
    img = img * (1 - alpha) + part * alpha
    img += rng.normal(0.0, 2.5, size=img.shape)
    geom = {"cx": cx, "cy": cy, "radius": radius, "r": r, "xx": xx, "yy": yy}
    return img.astype(np.float32), geom


def _point_on_surface(rng: np.random.Generator, geom: dict, lo=0.3, hi=0.82) -> Tuple[float, float]:
    rad = geom["radius"] * rng.uniform(lo, hi)
    ang = rng.uniform(0, 2 * np.pi)
    return geom["cx"] + rad * math.cos(ang), geom["cy"] + rad * math.sin(ang)


def _ellipse(geom: dict, x0: float, y0: float, a: float, b: float, phi: float) -> np.ndarray:
    dx, dy = geom["xx"] - x0, geom["yy"] - y0
    p = dx * math.cos(phi) + dy * math.sin(phi)
    q = -dx * math.sin(phi) + dy * math.cos(phi)
    return (p / a) ** 2 + (q / b) ** 2 <= 1.0


def _add_defect(rng: np.random.Generator, img: np.ndarray, geom: dict, kind: str, size: int) -> np.ndarray:
    """Draw one defect of ``kind`` on the part, in place; returns its exact bool mask."""
    s = size
    k = s / 256.0
    # Textured surface only (not the dark bore), so every mask pixel is visible.
    on_part = (geom["r"] < geom["radius"] - 1.5) & (geom["r"] > 0.18 * geom["radius"] + 1.0)
    if kind == "scratch":
        canvas = Image.new("L", (s, s), 0)
        x, y = _point_on_surface(rng, geom)
        phi = rng.uniform(0, 2 * np.pi)
        length = geom["radius"] * rng.uniform(0.3, 0.55)
        pts = [(x, y)]
        for _ in range(3):
            phi += rng.uniform(-0.35, 0.35)
            x += length / 3 * math.cos(phi)
            y += length / 3 * math.sin(phi)
            pts.append((x, y))
        width = max(1, int(round(rng.integers(2, 4) * k)))
        ImageDraw.Draw(canvas).line(pts, fill=255, width=width)
        mask = (np.asarray(canvas) > 0) & on_part
        colour = (235, 235, 230) if rng.random() < 0.5 else (45, 42, 40)
        img[mask] = 0.15 * img[mask] + 0.85 * np.array(colour, np.float32)
    elif kind == "stain":
        x0, y0 = _point_on_surface(rng, geom)
        mask = np.zeros((s, s), bool)
        for _ in range(int(rng.integers(3, 6))):
            mask |= _ellipse(
                geom,
                x0 + rng.uniform(-8, 8) * k,
                y0 + rng.uniform(-8, 8) * k,
                rng.uniform(5, 13) * k,
                rng.uniform(4, 9) * k,
                rng.uniform(0, np.pi),
            )
        mask &= on_part
        colour = np.array([(150, 95, 40), (70, 120, 60), (60, 70, 150)][int(rng.integers(0, 3))], np.float32)
        img[mask] = 0.45 * img[mask] + 0.55 * colour
    elif kind == "hole":
        x0, y0 = _point_on_surface(rng, geom)
        mask = _ellipse(geom, x0, y0, rng.uniform(5, 12) * k, rng.uniform(4, 9) * k, rng.uniform(0, np.pi))
        mask &= on_part
        img[mask] = np.array((14, 12, 11), np.float32) + rng.normal(0, 2.0, size=(int(mask.sum()), 3))
    else:
        raise ValueError(f"unknown defect type {kind!r}")
    return mask


def _save_png(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8)).save(path, compress_level=1)


def _params(seed, n_train, n_test_good, n_test_defect, size, name) -> dict:
    return {
        "generator_version": _GENERATOR_VERSION,
        "seed": int(seed),
        "n_train": int(n_train),
        "n_test_good": int(n_test_good),
        "n_test_defect": int(n_test_defect),
        "size": int(size),
        "name": name,
        "defect_types": list(DEFECT_TYPES),
    }


def _read_marker(folder: Path) -> Optional[dict]:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _looks_generated(folder: Path) -> bool:
    """Only folders that hold nothing but what this module writes may be deleted."""
    for child in folder.iterdir():
        if child.name == MARKER:
            continue
        if child.name not in ("train", "test", "ground_truth") or not child.is_dir():
            return False
    for _dirpath, _dirs, files in os.walk(folder):
        for f in files:
            if not (f.endswith(".png") or f == MARKER):
                return False
    return True


def _generate(folder: Path, p: dict) -> None:
    seed, size = p["seed"], p["size"]

    def rng_for(split: str, i: int) -> np.random.Generator:
        return np.random.default_rng([seed, _SPLIT_CODES[split], i])

    (folder / "train" / "good").mkdir(parents=True)
    (folder / "test" / "good").mkdir(parents=True)
    for i in range(p["n_train"]):
        img, _ = _normal_image(rng_for("train", i), size)
        _save_png(img, folder / "train" / "good" / f"{i:03d}.png")
    for i in range(p["n_test_good"]):
        img, _ = _normal_image(rng_for("test_good", i), size)
        _save_png(img, folder / "test" / "good" / f"{i:03d}.png")
    counts = {k: 0 for k in DEFECT_TYPES}
    for i in range(p["n_test_defect"]):
        kind = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        rng = rng_for("test_defect", i)
        img, geom = _normal_image(rng, size)
        mask = _add_defect(rng, img, geom, kind, size)
        j = counts[kind]
        counts[kind] += 1
        (folder / "test" / kind).mkdir(exist_ok=True)
        (folder / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        _save_png(img, folder / "test" / kind / f"{j:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            folder / "ground_truth" / kind / f"{j:03d}_mask.png", compress_level=1
        )
    # Marker last: its presence means everything above is complete.
    (folder / MARKER).write_text(json.dumps(p, indent=1, sort_keys=True))


def make_demo_dataset(
    root: PathLike,
    seed: int = 0,
    n_train: int = 60,
    n_test_good: int = 12,
    n_test_defect: int = 18,
    size: int = 256,
    name: str = "textured_part",
) -> Path:
    """Write (if not already there) the demo category ``<root>/<name>`` in MVTec AD
    layout and return its path; open it with ``MVTecCategory``/``load_dataset``.

    Defective images cycle through DEFECT_TYPES, so ``n_test_defect=18`` gives 6
    each.  An existing folder with a matching marker is reused as is; one without a
    valid marker (interrupted run, other parameters) is regenerated, but only if it
    holds nothing except files this function writes -- otherwise it raises.
    """
    if min(n_train, n_test_good) < 1 or n_test_defect < len(DEFECT_TYPES):
        raise ValueError(
            f"need n_train >= 1, n_test_good >= 1 and n_test_defect >= {len(DEFECT_TYPES)} "
            f"(one per defect type), got {n_train}, {n_test_good}, {n_test_defect}"
        )
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    root = Path(root)
    final = root / name
    params = _params(seed, n_train, n_test_good, n_test_defect, size, name)
    if final.is_dir() and _read_marker(final) == params:
        return final
    if final.exists():
        if not final.is_dir() or not _looks_generated(final):
            raise FileExistsError(
                f"'{final}' exists and is not a demo data set written by defectkit "
                f"(no matching '{MARKER}'); choose another root or name"
            )
        shutil.rmtree(final)
    root.mkdir(parents=True, exist_ok=True)
    # Clean temporary folders of runs that died more than an hour ago.
    for old in root.glob(f".{name}.tmp-*"):
        try:
            if time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _generate(tmp, params)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first: use its copy if it is the same data set.
            if final.is_dir() and _read_marker(final) == params:
                return final
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
