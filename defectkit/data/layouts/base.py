"""What every data-set reader shares: the layout record, the category it opens, and helpers.

A reader turns one category folder of a public benchmark into the same object as the
MVTec AD reader does (``train``, ``validation``, ``test`` Samples, ``defect_types``), so
everything downstream -- training, evaluation, ``data check``, benchmarks -- works on any
of them. Readers are strict by default: a defective image without its mask raises,
naming the file, because pixel metrics would otherwise count it as all-normal. With
``strict=False`` they keep going and list what they tolerated in ``problems``, which is
what ``defectkit data check`` reports.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..images import IMAGE_EXTENSIONS, is_image_file
from ..samples import DatasetLayoutError, Sample

PathLike = Union[str, "os.PathLike[str]"]
GOOD = "good"


@dataclass(frozen=True)
class Layout:
    """One registered data-set layout.

    ``detect(path)``: is ``path`` one category in this layout (cheap: folder structure
    only). ``open(path, strict)``: the dataset. ``structure``: the expected layout in one
    line, shown in errors and by ``defectkit data layouts``. ``priority``: detection
    order, lower first (a layout that is a special case of another comes first: MVTec
    LOCO AD and MPDD before MVTec AD).
    """

    name: str
    title: str
    structure: str
    detect: Callable[[Path], bool]
    open: Callable[..., Any]
    priority: int = 50
    #: structure only, for a layout the user names (``--layout``); default ``detect``.
    #: MPDD is detected by name (it is MVTec AD's structure) but any such folder matches.
    matches: Optional[Callable[[Path], bool]] = None

    def fits(self, path: Path) -> bool:
        """Does ``path`` have this layout's structure (what ``--layout`` requires)?"""
        return (self.matches or self.detect)(path)


@dataclass
class Category:
    """One category of any layout, with the MVTec reader's interface.

    ``train``: normal training Samples. ``validation``: the data set's own normal
    validation images, if it has them (no method uses them: docs/protocol.md).
    ``test``: good (label 0) and defective (label 1, with ``mask_path``) Samples.
    ``defect_types``: defect type names in test order. ``defect_groups``: named groups of
    defect types whose metrics are reported apart (MVTec LOCO AD: logical, structural).
    ``excluded``: images of the data set not used, with why (e.g. KolektorSDD2's
    defective training images, which an unsupervised method does not train on).
    ``problems``: what a non-strict open tolerated.
    """

    root: Path
    layout: str
    name: str = ""
    train: List[Sample] = field(default_factory=list)
    validation: List[Sample] = field(default_factory=list)
    test: List[Sample] = field(default_factory=list)
    defect_types: Tuple[str, ...] = ()
    defect_groups: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    excluded: Dict[str, List[Path]] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if not self.name:
            self.name = Path(os.path.abspath(self.root)).name

    def finish(self) -> "Category":
        """Sort test Samples (defect type, then name), derive ``defect_types`` and check
        that there is something to train and test on."""
        self.test.sort(key=lambda s: (s.defect_type != GOOD, s.defect_type, str(s.path)))
        self.defect_types = tuple(dict.fromkeys(s.defect_type for s in self.test if s.label == 1))
        if not self.train:
            raise DatasetLayoutError(f"'{self.root}' ({self.layout}): no normal training images found")
        if not self.test:
            raise DatasetLayoutError(f"'{self.root}' ({self.layout}): no test images found")
        return self

    def __repr__(self) -> str:
        n_bad = sum(s.label for s in self.test)
        return (
            f"Category('{self.root}', layout={self.layout}, train={len(self.train)}, "
            f"test={len(self.test)} ({len(self.test) - n_bad} good, {n_bad} defective), "
            f"defect_types={list(self.defect_types)})"
        )


class Problems:
    """Raise (strict) or record (not strict) a layout problem."""

    def __init__(self, strict: bool, sink: List[str]):
        self.strict = strict
        self.sink = sink

    def __call__(self, message: str) -> None:
        if self.strict:
            raise DatasetLayoutError(message)
        self.sink.append(message)


def images_in(folder: Path) -> List[Path]:
    """Image files directly in ``folder`` (sorted by name); [] when it is not a folder."""
    try:
        return sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name)
    except OSError:
        return []


def has_images(folder: Path) -> bool:
    try:
        return any(is_image_file(p) for p in folder.iterdir())
    except OSError:
        return False


def subfolders(folder: Path) -> List[Path]:
    try:
        return sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    except OSError:
        return []


def find_by_stem(folder: Path, stem: str) -> Optional[Path]:
    """``<folder>/<stem>.<any image extension, any case>``, PNG first."""
    for ext in IMAGE_EXTENSIONS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def defect_name(text: str) -> str:
    """A free-text defect description as a folder-like name ("chunk of wax missing" ->
    "chunk_of_wax_missing"; several, comma-separated -> joined with "+")."""
    parts = [re.sub(r"[^0-9a-z]+", "_", p.strip().lower()).strip("_") for p in str(text).split(",")]
    parts = [p for p in parts if p]
    return "+".join(parts) or "defect"


def good_samples(paths: Sequence[Path]) -> List[Sample]:
    return [Sample(p, 0, GOOD, None) for p in paths]
