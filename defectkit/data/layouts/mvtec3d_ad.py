"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only: the reader in ``data/folder.py``, registered.

Layout::

    <cat>/train/good/rgb/*.png          (and xyz/, ignored)
    <cat>/validation/good/rgb/*.png
    <cat>/test/<defect>/rgb/*.png
    <cat>/test/<defect>/gt/*.png        (mask with the image's file name)
"""

from __future__ import annotations

from pathlib import Path

from ..folder import MVTec3DCategory, is_mvtec3d_category
from .base import Layout


def open_mvtec3d_ad(path: Path, strict: bool = True) -> MVTec3DCategory:
    return MVTec3DCategory(path, strict=strict)


LAYOUT = Layout(
    name="mvtec3d_ad",
    title="MVTec 3D-AD",
    structure="<cat>/train/good/rgb/*.png, <cat>/test/<defect>/rgb/*.png, masks in <cat>/test/<defect>/gt/",
    detect=is_mvtec3d_category,
    open=open_mvtec3d_ad,
    priority=40,
)
