"""Scoring new, unlabelled images with a fitted model: files in, scores and overlays out.

Files are read in chunks so a large folder never sits in memory at once; a file that
cannot be read is reported with its reason and skipped, the rest are scored. Every
overlay of one run shares one colour scale, so overlays can be compared by eye.
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..viz.overlay import display_images, save_overlay

#: Files read per step (bounds memory on large folders).
PREDICT_CHUNK = 32


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)


def expand_inputs(inputs: Sequence[str]) -> List[Path]:
    """Files as given, plus every non-hidden file directly inside each folder (sorted).

    Folders are not filtered by extension: a file that is not an image is reported
    with its reason rather than silently ignored.
    """
    files: List[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted((c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")),
                                key=lambda c: c.name))
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"input not found: '{p}'")
    if not files:
        raise FileNotFoundError(f"no files found in {', '.join(repr(str(i)) for i in inputs)}")
    return files


def overlay_names(paths: Sequence[Path]) -> List[str]:
    """``<stem>_overlay.png``, with -2, -3 ... when two inputs share a stem."""
    seen: Dict[str, int] = {}
    names = []
    for p in paths:
        stem = slug(p.stem) or "image"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        names.append(f"{stem}_overlay.png" if n == 1 else f"{stem}-{n}_overlay.png")
    return names


@dataclass
class Prediction:
    """Scores of the readable files, the skipped ones with reasons, and the overlay scale."""

    paths: List[Path]
    scores: List[float]
    overlays: List[str]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    vmin: float = float("nan")
    vmax: float = float("nan")


def predict_files(model, files: Sequence[Path], out: Path, threshold: Optional[float] = None,
                  on_skip: Optional[Callable[[Path, str], None]] = None, progress: bool = True) -> Prediction:
    """Score ``files``, write ``scores.csv`` and one overlay per readable file into ``out``."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept: List[Path] = []
    scores: List[float] = []
    rgbs: List[np.ndarray] = []
    maps: List[np.ndarray] = []
    skipped: List[Tuple[Path, str]] = []
    bar = tqdm(total=len(files), desc="predict", unit="file", leave=False, disable=not progress)
    # A tiled model scores one full-resolution image at a time (images may differ in size), and
    # its maps wait on disk rather than in memory until the common colour scale is known.
    tiled = getattr(model, "tiling_", None) is not None
    step = 1 if tiled else PREDICT_CHUNK
    spool = Path(tempfile.mkdtemp(prefix=".maps-", dir=out)) if tiled else None
    vmin, vmax = float("inf"), float("-inf")
    try:
        for start in range(0, len(files), step):
            chunk = list(files[start : start + step])
            batch, ok, errors = model.load_inputs(chunk, on_error="skip")
            for path, reason in errors:
                skipped.append((Path(path), reason))
                if on_skip is not None:
                    on_skip(Path(path), reason)
            if len(ok):
                s, m = model.predict(batch)
                kept.extend(Path(p) for p in ok)
                scores.extend(float(x) for x in s)
                m = np.asarray(m, dtype=np.float32)
                vmin, vmax = min(vmin, float(m.min())), max(vmax, float(m.max()))
                if spool is None:
                    maps.extend(m)
                    rgbs.extend(display_images(batch))
                else:
                    np.save(spool / f"{len(kept) - 1}.npy", m[0])
            bar.update(len(chunk))
        bar.close()
        if not kept:
            raise ValueError(f"none of the {len(files)} input files could be read as an image")
        names = overlay_names(kept)
        with open(out / "scores.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "score", "is_anomalous", "overlay"])
            for i, (path, score, name) in enumerate(zip(kept, scores, names)):
                if spool is None:
                    rgb, amap = rgbs[i], maps[i]
                else:
                    rgb, amap = display_images(model.load_inputs([path])[0])[0], np.load(spool / f"{i}.npy")
                save_overlay(out / name, rgb, amap, vmin, vmax)
                flag = "" if threshold is None else int(score >= threshold)
                w.writerow([str(path), repr(score), flag, name])
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
    return Prediction(kept, scores, names, skipped, vmin, vmax)
