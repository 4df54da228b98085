"""Where a trained method's validation anomalies come from: the shared suite, or the method's own maker.

Every trained method chooses its epoch on held-out normal training images plus synthetic
anomalies made from them (docs/protocol.md#validation-split). ``val_split`` names the maker:

* ``"suite"`` (the default of every trained method): ``synth.validation_suite`` -- DTD blends,
  CutPaste, and stains, scratches and blur that no method trains on, in equal parts, each
  anomaly with its family, so the kept epoch can also be read family by family;
* ``"own"``: the maker the method used before the suite existed (SimpleNet: ``val_kinds``;
  PRN: ``synth.validation.builtin_anomalies``; MLFF: ``val_kinds`` through
  ``synth.validation.masked_anomalies``; RealNet: its training synthesis, CutPaste and
  CutPaste-scar, a split RealNet also calls ``"mixed"``).

One function builds either, so every method reads the same suite from the same seed rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ...synth.validation_suite import suite_anomalies

#: the validation splits every trained method accepts (RealNet also takes "mixed" for "own")
VAL_SPLITS = ("own", "suite")
#: what ``fit_info_["val_synthesis"]`` says for the suite
SUITE_SOURCE = "defectkit.synth.validation_suite"

#: a method's own maker: () -> (images, masks, source)
OwnMaker = Callable[[], Tuple[torch.Tensor, torch.Tensor, str]]


@dataclass
class ValidationAnomalies:
    """``images`` K x 3 x S x S float in [0, 1], ``masks`` K x S x S bool; for the suite also
    ``families`` (K,) and ``suite`` (``SuiteAnomalies.info()``); ``source`` what made them."""

    images: torch.Tensor
    masks: torch.Tensor
    source: str
    families: Optional[np.ndarray] = None
    suite: Optional[Dict[str, object]] = None

    def row_families(self, n_normal: int) -> Optional[np.ndarray]:
        """The family of every validation row, the ``n_normal`` normals first (""): what
        ``family_scores`` reads; None without families (the method's own split)."""
        if self.families is None:
            return None
        return np.r_[np.full(n_normal, ""), self.families]

    def record(self, info: Dict[str, object]) -> None:
        """Write what a fit records about its validation anomalies into ``info`` (``fit_info_``)."""
        info["val_synthesis"] = self.source
        if self.suite is not None:
            info["val_suite"] = self.suite


def check_val_split(value: object, aliases: Sequence[str] = ()) -> None:
    """A clear error for a ``val_split`` outside :data:`VAL_SPLITS` (plus a method's ``aliases``)."""
    allowed = VAL_SPLITS + tuple(aliases)
    if value not in allowed:
        raise ValueError(f"val_split must be one of {allowed}, got {value!r}")


def validation_anomalies(
    images: torch.Tensor,
    split: str,
    own: OwnMaker,
    per_image: int,
    seed: int,
    textures: Optional[object] = None,
) -> ValidationAnomalies:
    """The validation anomalies of ``split`` made from held-out normal ``images`` (N x 3 x S x S in [0, 1]).

    ``"suite"``: ``suite_anomalies(images, per_image, seed, textures)`` (``per_image`` per
    family, at least ``MIN_PER_FAMILY`` each; ``textures`` None: the default DTD folder, or no
    texture family with a warning). Any other (already checked) name: ``own()``, the
    method's maker, returning (images, masks, source); float masks are read as ``> 0.5``.
    """
    if split == "suite":
        suite = suite_anomalies(images, per_image, seed=seed, textures=textures)
        return ValidationAnomalies(suite.images, suite.masks, SUITE_SOURCE, suite.families, suite.info())
    anomalies, masks, source = own()
    return ValidationAnomalies(anomalies, masks if masks.dtype == torch.bool else masks > 0.5, source)
