"""VisA, the Visual Anomaly data set (Zou et al., ECCV 2022), with its own one-class split.

Layout (the data set root holds the split file and twelve categories)::

    VisA/split_csv/1cls.csv
    VisA/<cat>/Data/Images/Normal/*.JPG
    VisA/<cat>/Data/Images/Anomaly/*.JPG
    VisA/<cat>/Data/Masks/Anomaly/*.png
    VisA/<cat>/image_anno.csv            (optional: the defect description of each image)

``split_csv/1cls.csv`` (columns ``object,split,label,image,mask``; paths relative to the
root; ``label`` is "normal" or "anomaly") fixes which images train and test; the reader
follows it, so results compare with the papers that use it. Open one category
(``VisA/candle``): the split file is looked for in the category's parent
(``VisA/split_csv/1cls.csv``) and then in the category itself. A defective image's
defect type comes from ``image_anno.csv`` (its ``label`` column, e.g. "chunk of wax
missing" -> ``chunk_of_wax_missing``; several defects are joined with "+"), else
"anomaly". Masks: any value > 0 is a defect. Images are about 1500 x 1000 px.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, Optional

from ..samples import DatasetLayoutError, Sample
from .base import Category, Layout, Problems, defect_name

SPLIT_FILE = Path("split_csv") / "1cls.csv"
COLUMNS = ("object", "split", "label", "image", "mask")


def is_visa_category(path: Path) -> bool:
    p = Path(path)
    return (p / "Data" / "Images" / "Normal").is_dir()


def split_file(category: Path) -> Optional[Path]:
    for root in (category.parent, category):
        f = root / SPLIT_FILE
        if f.is_file():
            return f
    return None


def _defect_types(category: Path) -> Dict[str, str]:
    """image path (as written in image_anno.csv) -> defect type name."""
    anno = category / "image_anno.csv"
    if not anno.is_file():
        return {}
    out = {}
    with open(anno, newline="") as f:
        for row in csv.DictReader(f):
            image, label = (row.get("image") or "").strip(), (row.get("label") or "").strip()
            if image and label and label.lower() != "normal":
                out[image] = defect_name(label)
    return out


def open_visa(path: Path, strict: bool = True) -> Category:
    p = Path(path)
    if not is_visa_category(p):
        raise DatasetLayoutError(f"'{p}' is not a VisA category: expected '{p / 'Data' / 'Images' / 'Normal'}'")
    cat = Category(p, "visa")
    problem = Problems(strict, cat.problems)
    csv_path = split_file(p)
    if csv_path is None:
        raise DatasetLayoutError(
            f"VisA split file not found for '{p}': expected '{p.parent / SPLIT_FILE}' "
            f"(VisA's one-class split, shipped with the data set)"
        )
    root = csv_path.parent.parent
    types = _defect_types(p)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetLayoutError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
            )
        rows = [r for r in reader if (r["object"] or "").strip() == cat.name]
    if not rows:
        raise DatasetLayoutError(f"{csv_path} has no rows for object '{cat.name}'")
    for r in rows:
        split, label = r["split"].strip().lower(), r["label"].strip().lower()
        image = root / r["image"].strip()
        if split not in ("train", "test") or label not in ("normal", "anomaly"):
            problem(
                f"{csv_path}: row for '{r['image']}' has split {r['split']!r} and label {r['label']!r}; "
                "expected train|test and normal|anomaly"
            )
            continue
        if not image.is_file():
            problem(f"{csv_path} lists '{image}', which does not exist")
            continue
        if label == "normal":
            (cat.train if split == "train" else cat.test).append(Sample(image, 0, "good", None))
            continue
        if split == "train":
            cat.excluded.setdefault("defective training images", []).append(image)
            continue
        mask_text = (r["mask"] or "").strip()
        mask = root / mask_text if mask_text else None
        if mask is None or not mask.is_file():
            problem(
                f"defective test image '{image}' has no mask: {csv_path} names "
                f"{repr(mask_text) if mask_text else 'none'}"
            )
            mask = None
        cat.test.append(Sample(image, 1, types.get(r["image"].strip(), "anomaly"), mask))
    return cat.finish()


LAYOUT = Layout(
    name="visa",
    title="VisA",
    structure="<root>/split_csv/1cls.csv, <root>/<cat>/Data/Images/{Normal,Anomaly}/*.JPG, "
    "<root>/<cat>/Data/Masks/Anomaly/*.png",
    detect=is_visa_category,
    open=open_visa,
    priority=50,
)
