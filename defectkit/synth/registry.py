"""``make_generator(kind, **kwargs)``: every generator by name, with per-kind default opacity.

Default opacities follow the papers: PRN's generators use DRAEM's range (source
weight 0.2-1), RealNet's SDAS blends with delta ~ U[0.5, 1], CutPaste and confetti
paste opaquely.
"""

from __future__ import annotations

from .generators import BlendGenerator, Choice, Confetti, CutPaste, ExtendedAnomaly
from .masks import TargetArea
from .sources import HOASource, SDASSource, TextureSource

KINDS = ("dtd", "hoa", "ea", "cutpaste", "cutpaste_scar", "confetti", "sdas")
ALIASES = {"hea": "dtd", "texture": "dtd", "scar": "cutpaste_scar", "patch": "cutpaste"}
DEFAULT_OPACITY = {
    "dtd": (0.2, 1.0),
    "hoa": (0.2, 1.0),
    "ea": (0.2, 1.0),
    "sdas": (0.5, 1.0),
    "cutpaste": 1.0,
    "cutpaste_scar": 1.0,
    "confetti": 1.0,
}
MASKED_KINDS = ("dtd", "hoa", "sdas")  # kinds whose mask is chosen by ``mask=``


def make_generator(
    kind: str,
    *,
    mask="perlin",
    blend: str = "alpha",
    opacity=None,
    foreground=None,
    target_shapes=None,
    textures=None,
    defects=None,
    pool=None,
    mask_kwargs=None,
    **kwargs,
):
    """Build a generator.

    kind: "dtd" (alias "hea"; needs ``textures`` = folder), "hoa", "ea" (needs ``defects`` =
      [(image, mask), ...]), "cutpaste", "cutpaste_scar", "confetti", "sdas" (needs ``pool`` =
      :class:`~defectkit.synth.sdas.SamplePool`), or a list of kinds for a per-call random choice.
    mask: "perlin" | "circle" | "rectangle" | "polygon" (dtd / hoa / sdas only).
    blend: "alpha" | "poisson". opacity: float or (lo, hi); default per kind.
    foreground: None (whole image, textures), "auto" (per-image foreground) or a fixed mask.
    target_shapes: e.g. ("circle", "rectangle", "polygon") for PRN's target areas.
    Remaining keyword arguments go to the generator (or source) class.
    """
    if isinstance(kind, (list, tuple)):
        shared = dict(
            mask=mask,
            blend=blend,
            opacity=opacity,
            foreground=foreground,
            target_shapes=target_shapes,
            textures=textures,
            defects=defects,
            pool=pool,
            mask_kwargs=mask_kwargs,
        )
        return Choice([make_generator(k, **shared, **kwargs) for k in kind])
    kind = ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"unknown generator {kind!r}; choose from {KINDS}")
    if mask != "perlin" and kind not in MASKED_KINDS:
        raise ValueError(f"{kind!r} makes its own mask; mask={mask!r} applies to {MASKED_KINDS}")
    target = TargetArea(foreground, tuple(target_shapes) if target_shapes else None)
    common = dict(target=target, blend=blend, opacity=DEFAULT_OPACITY[kind] if opacity is None else opacity)
    if kind == "dtd":
        if textures is None:
            raise ValueError("'dtd' needs textures=<folder of texture images>")
        source = TextureSource(textures, **kwargs)
    elif kind == "hoa":
        source = HOASource(**kwargs)
    elif kind == "sdas":
        if pool is None:
            raise ValueError("'sdas' needs pool=SamplePool(...)")
        source = SDASSource(pool)
    elif kind == "ea":
        if defects is None:
            raise ValueError("'ea' needs defects=[(image, mask), ...]")
        return ExtendedAnomaly(defects, **common, **kwargs)
    elif kind in ("cutpaste", "cutpaste_scar"):
        return CutPaste("scar" if kind == "cutpaste_scar" else "patch", **common, **kwargs)
    else:
        return Confetti(**common, **kwargs)
    return BlendGenerator(source, mask=mask, mask_kwargs=mask_kwargs, **common)
