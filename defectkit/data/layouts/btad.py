"""BTAD, the beanTech Anomaly Detection data set (Mishra et al., ISIE 2021).

Layout (one product, e.g. ``BTech_Dataset_transformed/01``)::

    <cat>/train/ok/*.bmp|png
    <cat>/test/ok/*.bmp|png
    <cat>/test/ko/*.bmp|png
    <cat>/ground_truth/ko/<stem>.png|bmp

Products 01 and 03 store BMP images, 02 PNG; a mask has its image's stem and may be PNG
or BMP (matched by stem, any image extension). ``ok`` images are normal, ``ko``
defective (defect type "ko": BTAD does not name defect kinds).
"""

from __future__ import annotations

from pathlib import Path

from ..samples import DatasetLayoutError, Sample
from .base import Category, Layout, Problems, find_by_stem, good_samples, has_images, images_in


def is_btad_category(path: Path) -> bool:
    p = Path(path)
    return has_images(p / "train" / "ok") and (p / "test").is_dir()


def open_btad(path: Path, strict: bool = True) -> Category:
    p = Path(path)
    cat = Category(p, "btad")
    problem = Problems(strict, cat.problems)
    if not has_images(p / "train" / "ok"):
        raise DatasetLayoutError(f"'{p}' is not a BTAD category: no images in '{p / 'train' / 'ok'}'")
    cat.train = good_samples(images_in(p / "train" / "ok"))
    cat.test.extend(good_samples(images_in(p / "test" / "ok")))
    gt = p / "ground_truth" / "ko"
    for f in images_in(p / "test" / "ko"):
        mask = find_by_stem(gt, f.stem)
        if mask is None:
            problem(f"defective test image '{f}' has no ground-truth mask: expected '{gt / (f.stem + '.png')}'")
        cat.test.append(Sample(f, 1, "ko", mask))
    return cat.finish()


LAYOUT = Layout(
    name="btad",
    title="BTAD",
    structure="<cat>/train/ok/*, <cat>/test/{ok,ko}/*, <cat>/ground_truth/ko/<name>.png",
    detect=is_btad_category,
    open=open_btad,
    priority=60,
)
