"""Data loading for defectkit: image/mask decoding with explicit conversion rules,
the resize/crop step, data-set layouts (MVTec AD, MVTec 3D-AD, generic folders),
batched loading, and a procedurally generated demo category.

Data sets only list files (``Sample``); pixels are decoded later with
``load_images``/``load_masks`` so listing is cheap and splits work on records.

``load_images`` and ``load_masks`` (torch tensors) are imported on first use, so reading
and preprocessing images (``images``, ``preprocess``) works where torch is not installed,
as the service with an exported model needs.
"""

from .demo import DEFECT_TYPES as DEMO_DEFECT_TYPES
from .demo import make_demo_dataset
from .folder import FolderDataset, MVTec3DCategory, is_mvtec3d_category, load_dataset, mvtec3d_category, training_images
from .images import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    is_image_file,
    list_images,
    read_image,
    read_mask,
    resize_mask,
)
from .mask_size import MaskSizeError, MaskSizeWarning, check_mask_sizes
from .mvtec import MVTecCategory, is_mvtec_category
from .preprocess import Preprocess
from .samples import DatasetLayoutError, Sample



def __getattr__(name):
    if name in ("load_images", "load_masks"):
        from . import batches

        return getattr(batches, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEMO_DEFECT_TYPES",
    "DatasetLayoutError",
    "FolderDataset",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "MVTec3DCategory",
    "MaskSizeError",
    "MaskSizeWarning",
    "MVTecCategory",
    "Preprocess",
    "Sample",
    "check_mask_sizes",
    "is_image_file",
    "is_mvtec3d_category",
    "is_mvtec_category",
    "list_images",
    "load_dataset",
    "load_images",
    "load_masks",
    "make_demo_dataset",
    "mvtec3d_category",
    "read_image",
    "read_mask",
    "resize_mask",
    "training_images",
]
