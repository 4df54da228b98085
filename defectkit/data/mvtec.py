"""MVTec AD category folders -> lists of Samples.

Layout (one category, e.g. ``mvtec_ad/bottle``)::

    <cat>/train/good/*.png
    <cat>/test/good/*.png
    <cat>/test/<defect>/*.png
    <cat>/ground_truth/<defect>/<stem>_mask.png

Why strict: a defective test image without its mask would silently count as
"all pixels normal" in pixel metrics, so a missing mask raises, naming the file.
Order is sorted (by defect type, then file name) so seeded draws are reproducible.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

from .images import IMAGE_EXTENSIONS, PathLike, is_image_file, list_images
from .samples import DatasetLayoutError, Sample

GOOD = "good"


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image_file(p) for p in folder.iterdir())


def is_mvtec_category(path: PathLike) -> bool:
    """True when ``path`` looks like one MVTec AD category: images directly in
    ``train/good`` and a ``test`` folder.  (MVTec 3D-AD keeps them in
    ``train/good/rgb`` instead, so the two layouts never both match.)"""
    p = Path(path)
    try:
        return _has_images(p / "train" / GOOD) and (p / "test").is_dir()
    except OSError:
        return False


def _find_mask(gt_dir: Path, stem: str) -> Optional[Path]:
    """``<gt_dir>/<stem>_mask.png``, or the same name with another image extension."""
    exact = gt_dir / f"{stem}_mask.png"
    if exact.is_file():
        return exact
    for ext in IMAGE_EXTENSIONS:
        for cand in (gt_dir / f"{stem}_mask{ext}", gt_dir / f"{stem}_mask{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


class MVTecCategory:
    """One MVTec AD category.

    Attributes: ``root`` (Path), ``name`` (folder name, e.g. "bottle"),
    ``train`` (normal Samples from train/good), ``test`` (all test Samples, good
    ones with label 0 and mask_path None, defective ones with label 1 and their
    mask; with ``strict=False`` a defective image without a mask is kept with
    mask_path None and named in ``problems`` instead of raising), ``validation`` (always empty: MVTec AD has no validation split; make one
    from ``train`` as docs/protocol.md says), ``defect_types`` (sorted tuple of the
    test defect folder names, "good" excluded).
    """

    layout = "mvtec_ad"

    def __init__(self, root: PathLike, strict: bool = True):
        self.root = Path(root)
        self.name = Path(os.path.abspath(self.root)).name
        self.strict = strict
        self.train: List[Sample] = []
        self.validation: List[Sample] = []
        self.test: List[Sample] = []
        self.defect_types: Tuple[str, ...] = ()
        #: what a non-strict scan tolerated (e.g. a defective image without its mask)
        self.problems: List[str] = []
        self._scan()

    def _layout_error(self, problem: str) -> DatasetLayoutError:
        hint = ""
        if (self.root / "train" / GOOD / "rgb").is_dir():
            hint = " (this looks like MVTec 3D-AD: use mvtec3d_category() or load_dataset())"
        return DatasetLayoutError(
            f"'{self.root}' is not an MVTec AD category folder: {problem}. Expected "
            f"<cat>/train/good/*.png, <cat>/test/<defect>/*.png and "
            f"<cat>/ground_truth/<defect>/<name>_mask.png{hint}"
        )

    def _scan(self) -> None:
        root = self.root
        if not root.is_dir():
            raise self._layout_error("folder not found" if not root.exists() else "not a folder")
        train_dir = root / "train" / GOOD
        if not train_dir.is_dir():
            raise self._layout_error(f"missing folder '{train_dir}'")
        train_files = list_images(train_dir)
        if not train_files:
            raise self._layout_error(f"no images in '{train_dir}'")
        self.train = [Sample(p, 0, GOOD, None) for p in train_files]

        test_dir = root / "test"
        if not test_dir.is_dir():
            raise self._layout_error(f"missing folder '{test_dir}'")
        kinds = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
        test: List[Sample] = []
        defect_types = []
        for kind in kinds:
            files = list_images(test_dir / kind)
            if not files:
                continue
            if kind == GOOD:
                test.extend(Sample(p, 0, GOOD, None) for p in files)
                continue
            defect_types.append(kind)
            gt_dir = root / "ground_truth" / kind
            for p in files:
                mask = _find_mask(gt_dir, p.stem)
                if mask is None:
                    message = (
                        f"defective test image '{p}' has no ground-truth mask: expected "
                        f"'{gt_dir / (p.stem + '_mask.png')}'"
                    )
                    if self.strict:
                        raise DatasetLayoutError(message)
                    self.problems.append(message)
                test.append(Sample(p, 1, kind, mask))
        if not test:
            raise self._layout_error(f"no test images in '{test_dir}'/<defect>/")
        self.test = test
        self.defect_types = tuple(defect_types)

    def __repr__(self) -> str:
        n_bad = sum(s.label for s in self.test)
        return (
            f"MVTecCategory('{self.root}', train={len(self.train)}, "
            f"test={len(self.test)} ({len(self.test) - n_bad} good, {n_bad} defective), "
            f"defect_types={list(self.defect_types)})"
        )
