"""Data-set layouts by name: detection, opening one category, finding categories under a root.

Every public benchmark keeps its images, labels and masks its own way. Each layout is one
module here with a ``LAYOUT`` record (``base.Layout``); this registry detects which
one a folder is (in priority order, so a special case such as MVTec LOCO AD is tried
before plain MVTec AD), opens it, or opens it as the layout the user names
(``--layout NAME``). ``data.load_dataset`` is ``open_dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from ..samples import DatasetLayoutError
from .base import Category, Layout, PathLike, subfolders

_LAYOUTS: Dict[str, Layout] = {}


def register_layout(layout: Layout) -> Layout:
    """Add a layout (its name must be new)."""
    if layout.name in _LAYOUTS:
        raise ValueError(f"layout {layout.name!r} is already registered")
    _LAYOUTS[layout.name] = layout
    return layout


def layouts() -> List[Layout]:
    """Registered layouts in detection order."""
    return sorted(_LAYOUTS.values(), key=lambda layout: (layout.priority, layout.name))


def layout_names() -> List[str]:
    return [layout.name for layout in layouts()]


def get_layout(name: str) -> Layout:
    """The layout called ``name``; KeyError naming the registered ones."""
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise KeyError(f"unknown data layout {name!r}; known layouts: {', '.join(layout_names())}") from None


def detect_layout(path: PathLike) -> Optional[Layout]:
    """The first layout (in priority order) whose structure ``path`` has, or None."""
    p = Path(path)
    if not p.is_dir():
        return None
    for layout in layouts():
        try:
            if layout.detect(p):
                return layout
        except OSError:
            continue
    return None


def _expected() -> str:
    return "; ".join(f"{layout.title} ({layout.structure})" for layout in layouts())


def open_dataset(path: PathLike, layout: Optional[str] = None, strict: bool = True) -> Any:
    """Open one category folder: in the layout named ``layout``, else the detected one."""
    p = Path(path)
    if not p.exists():
        raise DatasetLayoutError(f"data set folder not found: '{p}'")
    if not p.is_dir():
        raise DatasetLayoutError(f"not a folder: '{p}'")
    if layout is not None:
        chosen = get_layout(layout)
        if not chosen.fits(p):
            raise DatasetLayoutError(f"'{p}' does not have the {chosen.title} layout: expected {chosen.structure}")
        return chosen.open(p, strict=strict)
    found = detect_layout(p)
    if found is not None:
        return found.open(p, strict=strict)
    cats = [d.name for d in subfolders(p) if detect_layout(d) is not None]
    if cats:
        shown = ", ".join(cats[:8]) + (", ..." if len(cats) > 8 else "")
        raise DatasetLayoutError(
            f"'{p}' holds several categories ({shown}), it is not one: pass one of them, "
            f"e.g. '{p / cats[0]}' (benchmark --data takes the whole folder)"
        )
    raise DatasetLayoutError(
        f"'{p}' is neither a category folder of a known layout nor a folder holding such "
        f"categories. Known layouts: {_expected()}"
    )


def find_categories(path: PathLike, layout: Optional[str] = None) -> List[Path]:
    """``[path]`` when it is a category (of ``layout``, or of any layout), else its
    sub-folders that are (sorted); ``[path]`` when neither, so opening it reports why."""
    p = Path(path)

    def is_category(d: Path) -> bool:
        if layout is not None:
            try:
                return get_layout(layout).fits(d)
            except OSError:
                return False
        return detect_layout(d) is not None

    if not p.is_dir() or is_category(p):
        return [p]
    cats = [d for d in subfolders(p) if is_category(d)]
    return cats or [p]


from . import btad, dagm, kolektor_sdd2, mpdd, mvtec3d_ad, mvtec_ad, mvtec_loco, visa  # noqa: E402

for _module in (mvtec_loco, mpdd, mvtec_ad, mvtec3d_ad, visa, btad, kolektor_sdd2, dagm):
    register_layout(_module.LAYOUT)

__all__ = [
    "Category",
    "Layout",
    "detect_layout",
    "find_categories",
    "get_layout",
    "layout_names",
    "layouts",
    "open_dataset",
    "register_layout",
]
