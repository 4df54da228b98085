"""SimpleNet's optional discriminator with spatial context (``head="conv"``).

The paper's discriminator scores each location on its own (an MLP on one adapted feature
vector). This variant replaces its first layer by a 3x3 convolution over the adapted
feature map, so a location's score also sees its 8 neighbours (about 24 px more context at
stride 8): Conv3x3(C, H) -> BatchNorm2d -> LeakyReLU -> Conv1x1(H, 1), no output bias.
Training runs on whole per-image maps (``images_per_batch`` maps, every location noised),
not on shuffled vectors, so the convolution sees real neighbourhoods. Not in the paper.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .networks import Adaptor, fold_standardisation


class ConvDiscriminator(nn.Module):
    """N x C x h x w adapted features -> N x h x w discriminator outputs (normal > 0)."""

    def __init__(self, dim: int, hidden: int, slope: float = 0.2, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, kernel, padding=kernel // 2)
        self.bn = nn.BatchNorm2d(hidden)
        self.slope = slope
        self.conv2 = nn.Conv2d(hidden, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.leaky_relu(self.bn(self.conv1(x)), self.slope))[:, 0]


def adapt_maps(adaptor: Adaptor, maps: torch.Tensor) -> torch.Tensor:
    """The per-location adaptor applied to N x h x w x C maps -> N x C x h x w."""
    return adaptor(maps).permute(0, 3, 1, 2)


class ConvHead:
    """Standardisation and adaptor folded into one 1x1 map, then the eval-mode conv discriminator.

    The standardisation is folded in before the convolution's zero padding, as in training
    (the adapted map is what gets padded)."""

    def __init__(
        self,
        adaptor: Adaptor,
        disc: ConvDiscriminator,
        feature_mean: Optional[torch.Tensor] = None,
        feature_scale: Optional[torch.Tensor] = None,
    ):
        with torch.no_grad():
            weight = adaptor.fc.weight.double()
            zeros = torch.zeros(weight.shape[0], dtype=torch.float64)
            weight, bias = fold_standardisation(weight, zeros, feature_mean, feature_scale)
            self.weight, self.bias = weight.float(), bias.float()
        self.disc = disc.eval()

    def to(self, device: torch.device) -> "ConvHead":
        self.weight, self.bias = self.weight.to(device), self.bias.to(device)
        self.disc = self.disc.to(device)
        return self

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """N x C x h x w features -> N x 1 x h x w anomaly scores (-D)."""
        n, c, h, w = feats.shape
        q = torch.baddbmm(self.bias[None, :, None], self.weight.expand(n, -1, -1), feats.reshape(n, c, h * w))
        return -self.disc(q.reshape(n, -1, h, w))[:, None]
