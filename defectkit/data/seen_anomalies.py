"""Seen anomalies for supervised methods (PRN): a seeded draw from the test set, or a user's folder.

PRN's protocol (docs/protocol.md#seen-anomalies, after DRA): ``n`` annotated defective test images are
moved to training -- spread over the defect types -- and removed from the test set, so
the reduced test set never contains an image the model has seen. The draw is a seeded
round-robin: the defect types are visited in a seeded order, each type's images in a
seeded order, one image per type per round, until ``n`` are taken. Same dataset and
seed -> same files, whatever the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from .images import IMAGE_EXTENSIONS, is_image_file
from .samples import DatasetLayoutError, Sample

PathLike = Union[str, Path]


def draw_seen_anomalies(dataset: Any, n: int, seed: int) -> Tuple[List[Sample], List[Sample]]:
    """-> (seen, reduced_test): ``n`` defective test Samples with masks, and the test set without them.

    ``dataset``: anything with ``.test`` (e.g. ``MVTecCategory``) or a list of Samples.
    Only defective images that have a mask can be drawn (PRN learns from pixel masks).
    Raises ValueError when fewer than ``n`` such images exist.
    """
    test = list(getattr(dataset, "test", dataset))
    if n < 0:
        raise ValueError(f"the number of seen anomalies must be >= 0, got {n}")
    if n == 0:
        return [], test
    by_type: Dict[str, List[Sample]] = {}
    for s in test:
        if s.label == 1 and s.mask_path is not None:
            by_type.setdefault(s.defect_type, []).append(s)
    available = sum(len(v) for v in by_type.values())
    if available < n:
        raise ValueError(
            f"asked for {n} seen anomalies but the test set has only {available} defective images with masks"
        )
    rng = np.random.default_rng(seed)
    types = sorted(by_type)
    types = [types[i] for i in rng.permutation(len(types))]
    queues = []
    for t in types:
        files = sorted(by_type[t], key=lambda s: str(s.path))
        queues.append([files[i] for i in rng.permutation(len(files))])
    seen: List[Sample] = []
    while len(seen) < n:
        for q in queues:
            if q and len(seen) < n:
                seen.append(q.pop(0))
    chosen = {s.path for s in seen}
    reduced = [s for s in test if s.path not in chosen]
    return seen, reduced


def _mask_for(image: Path, root: Path) -> Union[Path, None]:
    """``<stem>_mask.<ext>`` beside the image, in ``<folder>/masks/``, or MVTec's ``ground_truth/<type>/``."""
    stem = image.stem
    candidates = [image.parent, image.parent / "masks", root / "ground_truth" / image.parent.name]
    for folder in candidates:
        for name in (f"{stem}_mask", stem) if folder.name == "masks" else (f"{stem}_mask",):
            for ext in IMAGE_EXTENSIONS:
                for cand in (folder / f"{name}{ext}", folder / f"{name}{ext.upper()}"):
                    if cand.is_file() and cand != image:
                        return cand
    return None


def seen_from_folder(folder: PathLike) -> List[Sample]:
    """A user's own annotated defects -> Samples (label 1, with masks).

    Layout: image files anywhere below ``folder`` (sub-folder name = defect type), each with
    a mask ``<stem>_mask.<ext>`` beside it, in a ``masks/`` folder beside it (same stem or
    ``<stem>_mask``), or in MVTec's ``ground_truth/<type>/<stem>_mask.png``. Files named
    ``*_mask.*`` and anything under ``masks/`` or ``ground_truth/`` are masks, not images.
    A missing mask raises (PRN learns from pixel masks), naming the file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetLayoutError(f"seen-anomaly folder not found: '{root}'")
    samples = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if not p.is_file() or not is_image_file(p) or p.stem.endswith("_mask"):
            continue
        if "masks" in rel[:-1] or "ground_truth" in rel[:-1]:
            continue
        mask = _mask_for(p, root)
        if mask is None:
            raise DatasetLayoutError(
                f"no mask for seen anomaly '{p}': expected '{p.stem}_mask.png' beside it or in a 'masks' folder"
            )
        defect_type = p.parent.name if p.parent != root else "defect"
        samples.append(Sample(p, 1, defect_type, mask))
    if not samples:
        raise DatasetLayoutError(f"no images found in seen-anomaly folder '{root}'")
    return samples


def seen_file_names(seen: Sequence[Sample]) -> List[str]:
    """``<defect_type>/<file name>`` of each seen anomaly: what results files list."""
    return [f"{s.defect_type}/{s.path.name}" for s in seen]
