"""DAGM 2007 (Wieler and Hahn, DAGM/GNNS competition 2007): ten synthetic textures with weak labels.

Layout (one class, e.g. ``DAGM_KaggleUpload/Class1``)::

    ClassN/Train/0001.PNG ...
    ClassN/Train/Label/Labels.txt
    ClassN/Train/Label/0576_label.PNG ...
    ClassN/Test/...                     (the same)

``Labels.txt`` decides the labels: a first line (a count or version number), then one
line per image, whitespace-separated::

    <sample number> <defective 0|1> <image file> <0> <label file, or 0>

A defective image's mask is the label file it names in ``Label/`` (an ellipse around the
defect: DAGM's labels are coarse). Without ``Labels.txt``, an image is defective when
``Label/<stem>_label.PNG`` exists (stated in ``problems`` when not strict). Defective
training images are not trained on by unsupervised methods
(``excluded["defective training images"]``). Defect type: "defect". Images: 512 x 512
8-bit grayscale PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

from ..samples import DatasetLayoutError, Sample
from .base import Category, Layout, Problems, find_by_stem, good_samples, images_in

DEFECT = "defect"
SPLITS = (("Train", "train"), ("Test", "test"))


def is_dagm_class(path: Path) -> bool:
    p = Path(path)
    return (
        (p / "Train").is_dir()
        and (p / "Test").is_dir()
        and ((p / "Train" / "Label").is_dir() or (p / "Test" / "Label").is_dir())
    )


def read_labels_txt(path: Path) -> Dict[str, Tuple[int, Optional[str]]]:
    """``Labels.txt`` -> {image file name: (defective 0/1, label file name or None)}."""
    out: Dict[str, Tuple[int, Optional[str]]] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if len(parts) < 3:
            continue  # the first line (a single number) and blank lines
        try:
            flag = int(parts[1])
        except ValueError:
            raise DatasetLayoutError(
                f"{path}, line {n}: expected '<number> <0|1> <image> 0 <label file|0>', got {line.strip()!r}"
            ) from None
        if flag not in (0, 1):
            raise DatasetLayoutError(f"{path}, line {n}: the defect flag must be 0 or 1, got {parts[1]!r}")
        label = parts[4] if len(parts) >= 5 and parts[4] != "0" else None
        out[parts[2]] = (flag, label)
    return out


def open_dagm(path: Path, strict: bool = True) -> Category:
    p = Path(path)
    if not is_dagm_class(p):
        raise DatasetLayoutError(f"'{p}' is not a DAGM 2007 class: expected Train/ and Test/ with Label/ folders")
    cat = Category(p, "dagm")
    problem = Problems(strict, cat.problems)
    for folder, split in SPLITS:
        d = p / folder
        label_dir = d / "Label"
        labels_txt = label_dir / "Labels.txt"
        labels = read_labels_txt(labels_txt) if labels_txt.is_file() else None
        if labels is None:
            problem(f"'{labels_txt}' not found: labels taken from the presence of Label/<name>_label.PNG")
        for f in images_in(d):
            if labels is not None:
                if f.name not in labels:
                    problem(f"'{f}' is not listed in '{labels_txt}'")
                    continue
                flag, label_name = labels[f.name]
                mask = (label_dir / label_name) if label_name else None
                if flag and split == "test" and (mask is None or not mask.is_file()):
                    problem(
                        f"defective image '{f}' has no label mask: '{labels_txt}' names "
                        f"{label_name or 'none'} in '{label_dir}'"
                    )
                    mask = None
            else:
                mask = find_by_stem(label_dir, f"{f.stem}_label")
                flag = int(mask is not None)
            if split == "train":
                if flag:
                    cat.excluded.setdefault("defective training images", []).append(f)
                else:
                    cat.train.extend(good_samples([f]))
            else:
                cat.test.append(Sample(f, 1, DEFECT, mask) if flag else Sample(f, 0, "good", None))
        if labels is not None:
            listed_missing = sorted(n for n in labels if not (d / n).is_file())
            for n in listed_missing:
                problem(f"'{labels_txt}' lists '{n}', which is not in '{d}'")
    return cat.finish()


LAYOUT = Layout(
    name="dagm",
    title="DAGM 2007",
    structure="ClassN/{Train,Test}/*.PNG with ClassN/{Train,Test}/Label/Labels.txt and <name>_label.PNG masks",
    detect=is_dagm_class,
    open=open_dagm,
    priority=80,
)
