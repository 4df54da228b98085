"""Anomaly synthesis: what the supervised-by-synthesis methods learn from.

Every generator maps a normal uint8 HxWx3 image and a ``numpy.random.Generator``
to a :class:`SynthResult` (uint8 image, float32 HxW mask), deterministically for a
given seed. Build them by name with :func:`make_generator`. SDAS (RealNet's
diffusion synthesis) lives in :mod:`defectkit.synth.sdas` (imported lazily: torch).
"""

from .blend import alpha_blend, blend, poisson_clone
from .feature_noise import add_feature_noise
from .generators import BlendGenerator, Choice, Confetti, CutPaste, ExtendedAnomaly, SynthResult
from .masks import (PerlinMask, ShapeMask, TargetArea, estimate_foreground, foreground_mask, make_mask,
                    shape_mask)
from .perlin import perlin_noise, random_perlin
from .preview import preview_grid, save_preview
from .registry import KINDS, make_generator
from .sources import HOASource, SDASSource, TextureSource, seen_defects_from_dir, shuffle_tiles

__all__ = [
    "SynthResult", "make_generator", "KINDS",
    "BlendGenerator", "ExtendedAnomaly", "CutPaste", "Confetti", "Choice",
    "TextureSource", "HOASource", "SDASSource", "shuffle_tiles", "seen_defects_from_dir",
    "PerlinMask", "ShapeMask", "TargetArea", "make_mask", "shape_mask", "foreground_mask", "estimate_foreground",
    "perlin_noise", "random_perlin",
    "alpha_blend", "blend", "poisson_clone",
    "add_feature_noise", "preview_grid", "save_preview",
]
