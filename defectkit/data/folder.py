"""Generic "folder of normal images + folders of defective images" data sets, the
MVTec 3D-AD layout built on it, and ``load_dataset`` that picks the right reader.

Why: users' own data rarely follows MVTec AD exactly.  ``FolderDataset`` needs only
a normal folder, optional defect folders and a rule that names each image's mask;
MVTec 3D-AD (``<cat>/test/<defect>/rgb/000.png`` with its mask at
``<cat>/test/<defect>/gt/000.png``) is one such rule (``mask_name="{name}"``, mask
folder = the sibling ``gt``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .images import IMAGE_EXTENSIONS, PathLike, is_image_file, list_images
from .mvtec import GOOD, MVTecCategory, is_mvtec_category  # noqa: F401 (re-exported)
from .samples import DatasetLayoutError, Sample

MaskDirSpec = Union[None, PathLike, Mapping[str, PathLike], Callable[[Path], Optional[PathLike]]]


def _as_path_list(x) -> List[Path]:
    if isinstance(x, (str, os.PathLike)):
        return [Path(x)]
    return [Path(p) for p in x]


class _MaskIndex:
    """Finds a mask file in one folder by name rule; lists the folder once."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.by_stem: Dict[str, Path] = {}
        if folder.is_dir():
            order = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
            files = sorted(
                (p for p in folder.iterdir() if is_image_file(p)),
                key=lambda p: (p.stem, order.get(p.suffix.lower(), 99), p.name),
            )
            for p in files:
                self.by_stem.setdefault(p.stem, p)

    def find(self, wanted_name: str) -> Optional[Path]:
        exact = self.folder / wanted_name
        if exact.is_file():
            return exact
        # Same stem with any image extension (masks saved as .bmp/.tif/.PNG ...).
        return self.by_stem.get(Path(wanted_name).stem)


class FolderDataset:
    """Normal images from ``normal_dir`` and defective ones from ``abnormal_dirs``.

    * ``normal_dir``: a folder (or a list of folders) of normal images.
    * ``abnormal_dirs``: folders of defective images, either a sequence (the defect
      type of each is its folder name) or a mapping ``{defect_type: folder}``.
    * ``mask_dir`` -- where masks of defective images live:
      None (no masks); a folder (if ``<mask_dir>/<defect_type>/`` exists it is used,
      else ``mask_dir`` itself, so MVTec-style ``ground_truth/`` works); a mapping
      ``{defect_type: folder}``; or a callable ``image_folder -> mask folder``
      (e.g. ``lambda d: d.parent / "gt"``).
    * ``mask_name``: format string naming the mask of an image, with fields
      ``{stem}`` ("000"), ``{name}`` ("000.png") and ``{suffix}`` (".png").  When that
      exact file is missing, a file with the same stem and any image extension is
      used.  Defective images without a mask get ``mask_path=None`` (listed in
      ``abnormal_without_mask``): pixel metrics then need to skip or reject them.

    Attributes: ``normal``, ``abnormal`` (lists of Sample, each sorted by defect type
    then file name), ``defect_types`` (tuple, in the given order),
    ``abnormal_without_mask`` (list of image Paths).
    """

    def __init__(
        self,
        normal_dir: Union[PathLike, Sequence[PathLike]],
        abnormal_dirs: Union[Sequence[PathLike], Mapping[str, PathLike]] = (),
        mask_dir: MaskDirSpec = None,
        mask_name: str = "{stem}_mask.png",
    ):
        self.normal_dirs = _as_path_list(normal_dir)
        if isinstance(abnormal_dirs, Mapping):
            typed = [(str(k), Path(v)) for k, v in abnormal_dirs.items()]
        else:
            typed = [(p.name, p) for p in _as_path_list(abnormal_dirs)]
        names = [t for t, _ in typed]
        dupes = sorted({t for t in names if names.count(t) > 1})
        if dupes:
            raise ValueError(
                f"several abnormal folders share the defect type name(s) {dupes}; pass "
                "abnormal_dirs as a mapping {defect_type: folder}"
            )
        if GOOD in names:
            raise ValueError(f"'{GOOD}' is reserved for normal images; rename that defect type")
        self.abnormal_dirs: Dict[str, Path] = dict(typed)
        self.mask_dir = mask_dir
        self.mask_name = mask_name
        self.defect_types: Tuple[str, ...] = tuple(names)

        self.normal: List[Sample] = []
        for d in self.normal_dirs:
            self.normal.extend(Sample(p, 0, GOOD, None) for p in list_images(d))
        self.abnormal: List[Sample] = []
        self.abnormal_without_mask: List[Path] = []
        for defect_type, d in typed:
            index = self._mask_index(defect_type, d)
            for p in list_images(d):
                mask = None
                if index is not None:
                    wanted = mask_name.format(stem=p.stem, name=p.name, suffix=p.suffix)
                    mask = index.find(wanted)
                if mask is None:
                    self.abnormal_without_mask.append(p)
                self.abnormal.append(Sample(p, 1, defect_type, mask))

    def _mask_index(self, defect_type: str, image_dir: Path) -> Optional[_MaskIndex]:
        spec = self.mask_dir
        if spec is None:
            return None
        if callable(spec) and not isinstance(spec, (str, os.PathLike)):
            folder = spec(image_dir)
            return None if folder is None else _MaskIndex(Path(folder))
        if isinstance(spec, Mapping):
            folder = spec.get(defect_type)
            return None if folder is None else _MaskIndex(Path(folder))
        base = Path(spec)
        per_type = base / defect_type
        return _MaskIndex(per_type if per_type.is_dir() else base)

    @property
    def samples(self) -> List[Sample]:
        """normal + abnormal."""
        return self.normal + self.abnormal

    def __repr__(self) -> str:
        return (
            f"FolderDataset(normal={len(self.normal)}, abnormal={len(self.abnormal)}, "
            f"defect_types={list(self.defect_types)}, "
            f"without_mask={len(self.abnormal_without_mask)})"
        )


def is_mvtec3d_category(path: PathLike) -> bool:
    """True when ``path`` looks like one MVTec 3D-AD category: images in
    ``train/good/rgb`` and a ``test`` folder."""
    p = Path(path)
    try:
        return any(is_image_file(f) for f in (p / "train" / GOOD / "rgb").iterdir()) and (p / "test").is_dir()
    except OSError:
        return False


class MVTec3DCategory:
    """One MVTec 3D-AD category (RGB images only; the xyz point maps are ignored).

    Same interface as MVTecCategory: ``root``, ``name``, ``train``, ``validation``
    (from ``validation/good/rgb``, empty if absent), ``test``, ``defect_types``.
    Built with FolderDataset: masks are ``test/<defect>/gt/<same file name>``.  A
    defective test image without its mask raises, as for MVTec AD.
    """

    layout = "mvtec3d_ad"

    def __init__(self, root: PathLike, strict: bool = True):
        self.root = Path(root)
        self.name = Path(os.path.abspath(self.root)).name
        self.strict = strict
        self.problems: List[str] = []
        if not is_mvtec3d_category(self.root):
            raise DatasetLayoutError(
                f"'{self.root}' is not an MVTec 3D-AD category folder: expected "
                "<cat>/train/good/rgb/*.png and <cat>/test/<defect>/rgb/*.png with masks "
                "in <cat>/test/<defect>/gt/"
            )
        self.train: List[Sample] = FolderDataset(self.root / "train" / GOOD / "rgb").normal
        val_dir = self.root / "validation" / GOOD / "rgb"
        self.validation: List[Sample] = FolderDataset(val_dir).normal if val_dir.is_dir() else []

        test_dir = self.root / "test"
        kinds = sorted(d.name for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
        for kind in kinds:
            if not (test_dir / kind / "rgb").is_dir():
                raise DatasetLayoutError(
                    f"'{test_dir / kind}' has no 'rgb' folder (MVTec 3D-AD keeps test images "
                    f"in <cat>/test/<defect>/rgb/)"
                )
        normal_dirs = [test_dir / GOOD / "rgb"] if GOOD in kinds else []
        ds = FolderDataset(
            normal_dirs,
            {k: test_dir / k / "rgb" for k in kinds if k != GOOD},
            mask_dir=lambda image_dir: image_dir.parent / "gt",
            mask_name="{name}",
        )
        if not strict:
            self.problems.extend(
                f"defective test image '{p}' has no ground-truth mask: expected '{p.parent.parent / 'gt' / p.name}'"
                for p in ds.abnormal_without_mask
            )
        elif ds.abnormal_without_mask:
            p = ds.abnormal_without_mask[0]
            raise DatasetLayoutError(
                f"defective test image '{p}' has no ground-truth mask: expected "
                f"'{p.parent.parent / 'gt' / p.name}' ({len(ds.abnormal_without_mask)} "
                "defective images without a mask in all)"
            )
        self.test: List[Sample] = sorted(ds.samples, key=lambda s: (s.defect_type, s.path.name))
        if not self.test:
            raise DatasetLayoutError(f"no test images in '{test_dir}'/<defect>/rgb/")
        self.defect_types: Tuple[str, ...] = tuple(
            k for k in ds.defect_types if any(s.defect_type == k for s in ds.abnormal)
        )

    def __repr__(self) -> str:
        n_bad = sum(s.label for s in self.test)
        return (
            f"MVTec3DCategory('{self.root}', train={len(self.train)}, "
            f"validation={len(self.validation)}, test={len(self.test)} "
            f"({len(self.test) - n_bad} good, {n_bad} defective), "
            f"defect_types={list(self.defect_types)})"
        )


def mvtec3d_category(root: PathLike) -> MVTec3DCategory:
    """Open one MVTec 3D-AD category folder (see MVTec3DCategory)."""
    return MVTec3DCategory(root)


def load_dataset(path: PathLike, layout: Optional[str] = None, strict: bool = True):
    """Open one category folder in any registered layout (``data.layouts``): MVTec AD,
    MVTec 3D-AD, MVTec LOCO AD, MPDD, VisA, BTAD, KolektorSDD2 or DAGM 2007.

    The layout is detected from the folder's structure unless ``layout`` names one.
    ``strict=False`` tolerates what ``defectkit data check`` reports instead of raising
    (e.g. a defective image without a mask); the dataset lists it in ``problems``.
    Raises DatasetLayoutError naming the path otherwise (with a hint when the path
    is a data-set root holding several categories rather than one category).
    """
    from .layouts import open_dataset

    return open_dataset(path, layout=layout, strict=strict)


def training_images(path: PathLike) -> Tuple[List[Sample], str]:
    """(normal training Samples, name) of a category or a plain folder, reading only the training side.

    Training needs only normal images, so nothing under ``test/`` or ``ground_truth/`` is
    looked at: a category without a test split, or with a test image whose mask is
    missing, still trains (``defectkit test`` reports test-side problems). Looked for, in
    order: ``<cat>/train/good/*`` (MVTec AD), ``<cat>/train/good/rgb/*`` (MVTec 3D-AD),
    images directly inside ``path``. DatasetLayoutError naming the path otherwise.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data folder not found: '{p}'")
    if not p.is_dir():
        raise NotADirectoryError(f"not a folder: '{p}'")
    name = Path(os.path.abspath(p)).name
    for folder in (p / "train" / GOOD, p / "train" / GOOD / "rgb"):
        if folder.is_dir():
            files = list_images(folder)
            if files:
                return [Sample(f, 0, GOOD, None) for f in files], name
    files = list_images(p)
    if files:
        return [Sample(f, 0, GOOD, None) for f in files], name
    found = [str(f) for f in (p / "train" / GOOD, p / "train" / GOOD / "rgb") if f.is_dir()]
    where = f" ('{found[0]}' holds none)" if found else ""
    raise DatasetLayoutError(
        f"no training images in '{p}'{where}: expected an MVTec AD category (<cat>/train/good/*.png), an "
        f"MVTec 3D-AD category (<cat>/train/good/rgb/*.png) or a folder with images directly inside"
    )


def resolve_categories(data_paths: Iterable[PathLike], layout: Optional[str] = None) -> List[Path]:
    """Category folders from paths that are categories or data-set roots holding them
    (``mvtec_ad`` -> every category inside, sorted; the same for every registered
    layout). Layout errors name the path."""
    from .layouts import find_categories

    out: List[Path] = []
    for p in data_paths:
        out.extend(find_categories(p, layout=layout))
    return out
