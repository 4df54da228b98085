"""Data loading for defectkit: image/mask decoding with explicit conversion rules,
the resize/crop step, data-set layouts (MVTec AD, MVTec 3D-AD, generic folders),
batched loading, and a procedurally generated demo category.

Data sets only list files (``Sample``); pixels are decoded later with
``load_images``/``load_masks`` so listing is cheap and splits work on records.

Names are imported on first use (PEP 562), so the torch-free runtime can read images
(``data.images``, ``data.preprocess``) without importing the torch-backed batch loader.
"""

from importlib import import_module
from typing import Any

#: public name -> the submodule that defines it
_EXPORTS = {
    "load_images": "batches",
    "load_masks": "batches",
    "DEMO_DEFECT_TYPES": ("demo", "DEFECT_TYPES"),
    "make_demo_dataset": "demo",
    "FolderDataset": "folder",
    "MVTec3DCategory": "folder",
    "is_mvtec3d_category": "folder",
    "load_dataset": "folder",
    "mvtec3d_category": "folder",
    "training_images": "folder",
    "IMAGE_EXTENSIONS": "images",
    "ImageReadError": "images",
    "is_image_file": "images",
    "list_images": "images",
    "read_image": "images",
    "read_mask": "images",
    "resize_mask": "images",
    "MaskSizeError": "mask_size",
    "MaskSizeWarning": "mask_size",
    "check_mask_sizes": "mask_size",
    "MVTecCategory": "mvtec",
    "is_mvtec_category": "mvtec",
    "Preprocess": "preprocess",
    "DatasetLayoutError": "samples",
    "Sample": "samples",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
