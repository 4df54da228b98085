"""MVTec LOCO AD (Bergmann et al., IJCV 2022): logical and structural anomalies, several masks per image.

Layout (one category, e.g. ``mvtec_loco_anomaly_detection/breakfast_box``)::

    <cat>/train/good/*.png
    <cat>/validation/good/*.png
    <cat>/test/good/*.png
    <cat>/test/logical_anomalies/*.png
    <cat>/test/structural_anomalies/*.png
    <cat>/ground_truth/<defect>/<stem>/000.png, 001.png, ...

Each defective image has a folder of masks, one per defect region (LOCO draws several
for one image, e.g. a missing and an extra item); a Sample's ``mask_path`` is that folder
and ``read_mask`` returns the union (any value > 0 is a defect). The data set's
``defects_config.json`` (saturation thresholds for its sPRO metric) is not used:
defectkit reports its own metrics, for the two kinds apart (``defect_groups``) and
together. ``validation/good`` is loaded as ``validation``; as everywhere, no method
uses it (docs/protocol.md).
"""

from __future__ import annotations

from pathlib import Path

from ..samples import DatasetLayoutError, Sample
from .base import GOOD, Category, Layout, Problems, good_samples, has_images, images_in, subfolders

GROUPS = {"logical": ("logical_anomalies",), "structural": ("structural_anomalies",)}


def is_loco_category(path: Path) -> bool:
    p = Path(path)
    if not has_images(p / "train" / GOOD) or not (p / "test").is_dir():
        return False
    if any((p / "test" / t).is_dir() for kinds in GROUPS.values() for t in kinds):
        return True
    gt = p / "ground_truth"
    return any(d.is_dir() for t in subfolders(gt) for d in subfolders(t))


def open_loco(path: Path, strict: bool = True) -> Category:
    p = Path(path)
    cat = Category(p, "mvtec_loco")
    problem = Problems(strict, cat.problems)
    if not has_images(p / "train" / GOOD):
        raise DatasetLayoutError(f"'{p}' is not an MVTec LOCO AD category: no images in '{p / 'train' / GOOD}'")
    cat.train = good_samples(images_in(p / "train" / GOOD))
    cat.validation = good_samples(images_in(p / "validation" / GOOD))
    for kind_dir in subfolders(p / "test"):
        kind = kind_dir.name
        files = images_in(kind_dir)
        if kind == GOOD:
            cat.test.extend(good_samples(files))
            continue
        for f in files:
            mask_dir = p / "ground_truth" / kind / f.stem
            if not images_in(mask_dir):
                problem(f"defective test image '{f}' has no ground-truth masks: expected PNG files in '{mask_dir}/'")
                cat.test.append(Sample(f, 1, kind, None))
                continue
            cat.test.append(Sample(f, 1, kind, mask_dir))
    present = {s.defect_type for s in cat.test if s.label == 1}
    cat.defect_groups = {g: kinds for g, kinds in GROUPS.items() if any(k in present for k in kinds)}
    return cat.finish()


LAYOUT = Layout(
    name="mvtec_loco",
    title="MVTec LOCO AD",
    structure="<cat>/train/good/*.png, <cat>/test/{logical,structural}_anomalies/*.png, "
    "<cat>/ground_truth/<defect>/<name>/000.png (several masks per image, merged)",
    detect=is_loco_category,
    open=open_loco,
    priority=10,
)
