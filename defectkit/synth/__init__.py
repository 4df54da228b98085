"""Anomaly synthesis: what the supervised-by-synthesis methods learn from.

Every generator maps a normal uint8 HxWx3 image and a ``numpy.random.Generator``
to a :class:`SynthResult` (uint8 image, float32 HxW mask), deterministically for a
given seed. Build them by name with :func:`make_generator`. SDAS (RealNet's
diffusion synthesis) lives in :mod:`defectkit.synth.sdas` (imported lazily: torch).

Names are imported on first use (PEP 562): the generators need scipy and some need
torch, which the torch-free runtime (and ``defectkit --help`` there) does not have.
"""

from importlib import import_module
from typing import Any

# Imported now: the function ``blend`` shares its name with its module, which would
# otherwise replace it as an attribute of this package once the module is imported.
from .blend import alpha_blend, blend, poisson_clone  # noqa: F401  (numpy + scipy, no torch)

#: public name -> the submodule that defines it
_EXPORTS = {
    "add_feature_noise": "feature_noise",
    "BlendGenerator": "generators",
    "Choice": "generators",
    "Confetti": "generators",
    "CutPaste": "generators",
    "ExtendedAnomaly": "generators",
    "SynthResult": "generators",
    "PerlinMask": "masks",
    "ShapeMask": "masks",
    "TargetArea": "masks",
    "estimate_foreground": "masks",
    "foreground_mask": "masks",
    "make_mask": "masks",
    "shape_mask": "masks",
    "perlin_noise": "perlin",
    "random_perlin": "perlin",
    "preview_grid": "preview",
    "save_preview": "preview",
    "KINDS": "registry",
    "make_generator": "registry",
    "HOASource": "sources",
    "SDASSource": "sources",
    "TextureSource": "sources",
    "seen_defects_from_dir": "sources",
    "shuffle_tiles": "sources",
}

__all__ = [
    "SynthResult",
    "make_generator",
    "KINDS",
    "BlendGenerator",
    "ExtendedAnomaly",
    "CutPaste",
    "Confetti",
    "Choice",
    "TextureSource",
    "HOASource",
    "SDASSource",
    "shuffle_tiles",
    "seen_defects_from_dir",
    "PerlinMask",
    "ShapeMask",
    "TargetArea",
    "make_mask",
    "shape_mask",
    "foreground_mask",
    "estimate_foreground",
    "perlin_noise",
    "random_perlin",
    "alpha_blend",
    "blend",
    "poisson_clone",
    "add_feature_noise",
    "preview_grid",
    "save_preview",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
