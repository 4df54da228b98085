"""Frozen-backbone features: extraction (with an on-disk cache), stage fusion, and maps.

``extractor`` runs the backbone (or reads cached features), ``fusion`` turns per-stage
features into patch features, ``maps`` turns patch-grid scores into image-sized maps.
"""

from .extractor import FeatureExtractor, default_cache_dir, file_digest
from .fusion import (
    AGGREGATIONS,
    adaptive_pool_matrix,
    aggregate_neighbourhood,
    check_aggregation,
    embed_neighbourhood,
    fuse_stages,
    stage_balance_weights,
)
from .maps import SeparableUpsampler, gaussian_blur, gaussian_kernel1d, upsample_maps

__all__ = [
    "AGGREGATIONS",
    "FeatureExtractor",
    "SeparableUpsampler",
    "adaptive_pool_matrix",
    "aggregate_neighbourhood",
    "check_aggregation",
    "default_cache_dir",
    "embed_neighbourhood",
    "file_digest",
    "fuse_stages",
    "gaussian_blur",
    "gaussian_kernel1d",
    "stage_balance_weights",
    "upsample_maps",
]
