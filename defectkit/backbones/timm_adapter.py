"""Optional bridge to timm (``timm:<name>``); timm imports torchvision, so it is never a default."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from .base import Backbone


class TimmBackbone(Backbone):
    def __init__(self, model: torch.nn.Module, name: str):
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        super().__init__(mean=cfg.get("mean", (0.485, 0.456, 0.406)), std=cfg.get("std", (0.229, 0.224, 0.225)))
        self.model = model
        self.name = f"timm:{name}"
        info = model.feature_info
        self._index = {r: i for i, r in enumerate(info.reduction())}
        self.stage_channels = {r: c for r, c in zip(info.reduction(), info.channels()) if r in (4, 8, 16)}

    def extract(self, x: torch.Tensor, strides: Tuple[int, ...]) -> Dict[int, torch.Tensor]:
        feats = self.model(x)
        return {s: feats[self._index[s]] for s in strides}


def timm_backbone(name: str, weights: Optional[str] = None) -> TimmBackbone:
    try:
        import timm
    except Exception as exc:  # ImportError, or torchvision failing to import inside timm
        raise ImportError(
            f"backbone 'timm:{name}' needs timm (pip install -c constraints.txt 'defectkit[timm]'), "
            f"which failed to import: {exc}"
        ) from exc
    model = timm.create_model(
        name,
        pretrained=weights is not None,
        features_only=True,
        pretrained_cfg_overlay={"file": weights} if weights else None,
    )
    backbone = TimmBackbone(model, name)
    backbone.weights_id = weights or "random"
    return backbone
