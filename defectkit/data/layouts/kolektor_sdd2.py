"""KolektorSDD2 (Bozic et al., Computers in Industry 2021): surface defects on electrical commutators.

Layout (the data set root is one category)::

    KolektorSDD2/train/<id>.png, <id>_GT.png
    KolektorSDD2/test/<id>.png,  <id>_GT.png

Every image has a ``_GT`` mask; an image is defective when its mask has a pixel > 0
(KolektorSDD2 has no label file), so opening reads every mask once. The training split
also holds defective images (246 of 2,335 in the published split): unsupervised methods
train on its normal images only, and the defective ones are listed in
``excluded["defective training images"]`` (``data check`` counts them). Defect type:
"defect" (the data set does not name kinds). Images are about 230 x 630 px, not square:
consider ``--resize keep``.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..batches import _map_ordered
from ..images import ImageReadError, read_mask
from ..samples import DatasetLayoutError, Sample
from .base import Category, Layout, Problems, good_samples, images_in

SUFFIX = "_GT"
DEFECT = "defect"


def _pairs(folder: Path):
    files = images_in(folder)
    masks = {f.stem[: -len(SUFFIX)]: f for f in files if f.stem.endswith(SUFFIX)}
    images = [f for f in files if not f.stem.endswith(SUFFIX)]
    return images, masks


def is_kolektor_sdd2(path: Path) -> bool:
    p = Path(path)
    if not ((p / "train").is_dir() and (p / "test").is_dir()):
        return False
    try:
        return any(f.stem.endswith(SUFFIX) for f in (p / "train").iterdir())
    except OSError:
        return False


def _defective(mask: Path) -> Optional[bool]:
    return bool(read_mask(mask).any())


def open_kolektor_sdd2(path: Path, strict: bool = True) -> Category:
    p = Path(path)
    cat = Category(p, "kolektor_sdd2")
    problem = Problems(strict, cat.problems)
    if not is_kolektor_sdd2(p):
        raise DatasetLayoutError(f"'{p}' is not KolektorSDD2: expected train/ and test/ with <id>.png and <id>_GT.png")
    for split in ("train", "test"):
        images, masks = _pairs(p / split)
        with_mask = [f for f in images if f.stem in masks]
        for f in images:
            if f.stem not in masks:
                problem(
                    f"'{f}' has no mask: expected '{f.parent / (f.stem + SUFFIX + '.png')}' (KolektorSDD2 "
                    "labels an image by its mask)"
                )
        flags: List[object] = _map_ordered(lambda f: _defective(masks[f.stem]), with_mask, 2)  # noqa: B023 - run before the loop moves on
        for f, flag in zip(with_mask, flags):
            if isinstance(flag, ImageReadError):
                problem(f"cannot read the mask of '{f}': {flag}")
                continue
            if split == "train":
                if flag:
                    cat.excluded.setdefault("defective training images", []).append(f)
                else:
                    cat.train.extend(good_samples([f]))
            else:
                cat.test.append(Sample(f, 1, DEFECT, masks[f.stem]) if flag else Sample(f, 0, "good", None))
    return cat.finish()


LAYOUT = Layout(
    name="kolektor_sdd2",
    title="KolektorSDD2",
    structure="<root>/train/<id>.png + <id>_GT.png, <root>/test/<id>.png + <id>_GT.png (label from the mask)",
    detect=is_kolektor_sdd2,
    open=open_kolektor_sdd2,
    priority=70,
)
