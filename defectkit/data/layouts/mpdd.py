"""MPDD, Metal Parts Defect Detection (Jezek et al., ICUMT 2021): MVTec AD's layout.

Layout (as MVTec AD)::

    <cat>/train/good/*.png
    <cat>/test/good/*.png, <cat>/test/<defect>/*.png
    <cat>/ground_truth/<defect>/<stem>_mask.png

MPDD's six categories are bracket_black, bracket_brown, bracket_white, connector,
metal_plate and tubes. Its folders are indistinguishable from MVTec AD's, so a folder is
detected as MPDD when it has that structure and either one of those names or a parent
folder (the data set root) whose name contains "mpdd" (any case); ``--layout mpdd`` opens any such folder.
The reader is MVTec AD's: the two differ only in the name results carry.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..mvtec import MVTecCategory, is_mvtec_category
from .base import Layout

CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")


class MPDDCategory(MVTecCategory):
    """One MPDD category (MVTec AD's reader, layout "mpdd")."""

    layout = "mpdd"


def is_mpdd_category(path: Path) -> bool:
    p = Path(os.path.abspath(path))
    if not is_mvtec_category(p):
        return False
    return p.name in CATEGORIES or "mpdd" in p.parent.name.lower()


def open_mpdd(path: Path, strict: bool = True) -> MPDDCategory:
    return MPDDCategory(path, strict=strict)


LAYOUT = Layout(
    name="mpdd",
    title="MPDD",
    structure="MVTec AD's layout; detected by category name (" + ", ".join(CATEGORIES) + ") or an 'mpdd' parent folder",
    detect=is_mpdd_category,
    open=open_mpdd,
    priority=20,
    matches=is_mvtec_category,
)
