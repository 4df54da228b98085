"""Miniatures of the public benchmarks' layouts, built from their documented structure.

A handful of small generated images and masks per data set, in the folders, file names,
extensions and label files the real data sets use (see docs/data.md). Every image has
its own content (seeded noise), so no two files are duplicates unless a test makes them.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

SIZE = (24, 16)  # (width, height): not square, as most of these data sets are not


def image(path: Path, size: Tuple[int, int] = SIZE, gray: bool = False) -> Path:
    """A noise image whose content depends on its path (so files never repeat)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(path).encode()))
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def mask(path: Path, size: Tuple[int, int] = SIZE, box=(2, 2, 6, 5), value: int = 255) -> Path:
    """A binary mask with one rectangle ``box`` = (x0, y0, x1, y1) of ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    m[box[1] : box[3], box[0] : box[2]] = value
    Image.fromarray(m).save(path)
    return path


def build_visa(root: Path, category: str = "candle") -> Path:
    """VisA: split_csv/1cls.csv at the root, <cat>/Data/Images/{Normal,Anomaly}, Data/Masks/Anomaly,
    image_anno.csv with defect descriptions. Returns the category folder."""
    cat = root / category
    rows = ["object,split,label,image,mask"]
    anno = ["image,label,mask"]
    for i in range(4):
        rel = f"{category}/Data/Images/Normal/{i:04d}.JPG"
        image(root / rel)
        rows.append(f"{category},{'train' if i < 3 else 'test'},normal,{rel},")
        anno.append(f"{rel},normal,")
    for i, label in enumerate(["chunk of wax missing", "damaged corner of packaging,different colour spot"]):
        rel = f"{category}/Data/Images/Anomaly/{i:03d}.JPG"
        mrel = f"{category}/Data/Masks/Anomaly/{i:03d}.png"
        image(root / rel)
        mask(root / mrel, value=1 + i)  # VisA masks hold small label values, not 255
        rows.append(f"{category},test,anomaly,{rel},{mrel}")
        anno.append(f'{rel},"{label}",{mrel}')
    # another object's rows in the same split file must be ignored
    rows.append("capsules,train,normal,capsules/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    (cat / "image_anno.csv").write_text("\n".join(anno) + "\n")
    return cat


def build_btad(root: Path, name: str = "01") -> Path:
    """BTAD: train/ok, test/ok, test/ko (BMP images) and ground_truth/ko (PNG masks, same stem)."""
    cat = root / name
    for i in range(3):
        image(cat / "train" / "ok" / f"{i:04d}.bmp")
    for i in range(2):
        image(cat / "test" / "ok" / f"{i:04d}.bmp")
    for i in range(2):
        image(cat / "test" / "ko" / f"{i:04d}.bmp")
        mask(cat / "ground_truth" / "ko" / f"{i:04d}.png")
    return cat


def build_mpdd(root: Path, name: str = "metal_plate") -> Path:
    """MPDD: MVTec AD's layout (train/good, test/good|<defect>, ground_truth/<defect>/<stem>_mask.png)."""
    cat = root / name
    for i in range(3):
        image(cat / "train" / "good" / f"{i:03d}.png")
    image(cat / "test" / "good" / "000.png")
    for d in ("scratches", "hole"):
        for i in range(2):
            image(cat / "test" / d / f"{i:03d}.png")
            mask(cat / "ground_truth" / d / f"{i:03d}_mask.png")
    return cat


def build_kolektor(root: Path) -> Path:
    """KolektorSDD2: train/ and test/ with <id>.png + <id>_GT.png; label from the mask (one defective
    training image)."""
    for split, ids, bad in (("train", range(10000, 10004), {10003}), ("test", range(20000, 20004), {20002, 20003})):
        for i in ids:
            image(root / split / f"{i}.png")
            if i in bad:
                mask(root / split / f"{i}_GT.png")
            else:
                mask(root / split / f"{i}_GT.png", box=(0, 0, 0, 0))
    return root


def build_dagm(root: Path, name: str = "Class1") -> Path:
    """DAGM 2007: Train/ and Test/ with *.PNG (grayscale), Label/Labels.txt and Label/<stem>_label.PNG.

    The labels come from Labels.txt: test image 0003.PNG is defective with a label file whose
    name does not follow the <stem>_label pattern, and test image 0004.PNG has a
    ``0004_label.PNG`` lying in Label/ but is listed as good (0) in Labels.txt."""
    cat = root / name
    for split, entries in (
        ("Train", [("0001", 0, None), ("0002", 0, None), ("0003", 0, None), ("0004", 1, "0004_label.PNG")]),
        ("Test", [("0001", 0, None), ("0002", 1, "0002_label.PNG"), ("0003", 1, "defect_0003.PNG"), ("0004", 0, None)]),
    ):
        d = cat / split
        lines = ["1"]
        for n, (stem, flag, label) in enumerate(entries, 1):
            image(d / f"{stem}.PNG", gray=True)
            if label:
                mask(d / "Label" / label)
            lines.append(f"{n}\t{flag}\t{stem}.PNG\t0\t{label or 0}")
        if split == "Test":
            mask(d / "Label" / "0004_label.PNG")  # present, but Labels.txt says 0004 is good
        (d / "Label").mkdir(parents=True, exist_ok=True)
        (d / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return cat


def build_loco(root: Path, name: str = "juice_bottle", size: Tuple[int, int] = SIZE) -> Path:
    """MVTec LOCO AD: train/good, validation/good, test/{good,logical_anomalies,structural_anomalies},
    ground_truth/<defect>/<stem>/000.png ... (test/logical_anomalies/000.png has two mask files)."""
    cat = root / name
    for i in range(3):
        image(cat / "train" / "good" / f"{i:03d}.png", size)
    image(cat / "validation" / "good" / "000.png", size)
    image(cat / "test" / "good" / "000.png", size)
    image(cat / "test" / "logical_anomalies" / "000.png", size)
    mask(cat / "ground_truth" / "logical_anomalies" / "000" / "000.png", size, box=(1, 1, 4, 4))
    mask(cat / "ground_truth" / "logical_anomalies" / "000" / "001.png", size, box=(10, 8, 14, 12))
    image(cat / "test" / "structural_anomalies" / "000.png", size)
    mask(cat / "ground_truth" / "structural_anomalies" / "000" / "000.png", size)
    return cat
