"""The contract every backbone fulfils: images in [0, 1] -> feature maps keyed by stride."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A frozen feature extractor returning ``{stride: N x C x H/stride x W/stride}``.

    Normalisation lives inside the module (not in data loading) so every caller, the ONNX
    export included, feeds plain ``[0, 1]`` RGB tensors and cannot get it wrong.
    Subclasses implement :meth:`extract` for raw (normalised) input and declare
    ``stage_channels``: the channel count of each stride they can return.
    """

    name: str = "backbone"
    stage_channels: Dict[int, int] = {}
    # Bumped whenever the same weights would give different features (e.g. a padding fix),
    # so cached features and saved models from the old definition are never mixed in.
    revision: int = 1

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.weights_id = "random"

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def extract(self, x: torch.Tensor, strides: Tuple[int, ...]) -> Dict[int, torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor, strides: Sequence[int] = (8, 16)) -> Dict[int, torch.Tensor]:
        strides = tuple(sorted(set(int(s) for s in strides)))
        unknown = [s for s in strides if s not in self.stage_channels]
        if unknown:
            raise ValueError(
                f"backbone {self.name!r} has no stage of stride {unknown}; available: {sorted(self.stage_channels)}"
            )
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape N x 3 x H x W, got {tuple(images.shape)}")
        return self.extract(self.normalise(images), strides)

    def frozen(self) -> "Backbone":
        """Eval mode, no gradients: the backbones are used as fixed ImageNet feature extractors."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
