"""MVTec AD (Bergmann et al., CVPR 2019): the reader in ``data/mvtec.py``, registered.

Layout::

    <cat>/train/good/*.png
    <cat>/test/good/*.png
    <cat>/test/<defect>/*.png
    <cat>/ground_truth/<defect>/<stem>_mask.png
"""

from __future__ import annotations

from pathlib import Path

from ..mvtec import MVTecCategory, is_mvtec_category
from .base import Layout


def open_mvtec_ad(path: Path, strict: bool = True) -> MVTecCategory:
    return MVTecCategory(path, strict=strict)


LAYOUT = Layout(
    name="mvtec_ad",
    title="MVTec AD",
    structure="<cat>/train/good/*.png, <cat>/test/<defect>/*.png, <cat>/ground_truth/<defect>/<name>_mask.png",
    detect=is_mvtec_category,
    open=open_mvtec_ad,
    priority=30,
)
