"""RealNet's optional convolutional discriminator (``head="conv"``), as in the official code.

The paper describes the discriminator as an "MLP with upsampling", which scores every
location of the selected residuals on its own (``rrs.Discriminator``). The official code
decodes them with 3x3 convolutions instead, so a location's score sees its neighbourhood:
an isolated noisy residual next to clean ones is smoothed away, and the weak residuals in
the interior of a large defect are filled in from its strong edges.

Layers (official widths): two residual blocks at the input width r (ReLU -> Conv3x3 ->
ReLU -> Conv1x1, no bias, added to the input; then ReLU), Conv3x3 r -> 128 -> BatchNorm ->
ReLU, Conv3x3 128 -> 32 -> ReLU, Conv3x3 32 -> 8 -> ReLU, bilinear x2 upsampling, Conv3x3
8 -> 4 -> ReLU, Conv3x3 4 -> 2 logits, bilinear upsampling to the image. An output pixel
sees 11 x 11 cells of the stride-4 grid (44 px) before the x2 upsampling and 14 x 14 cells
(56 px) with the last two convolutions and the bilinear steps; the MLP sees 2 x 2 cells.

Normalisation: one BatchNorm after the first 128-wide convolution, as the official code
has it. The input is the raw (unnormalised) residuals, whose scale varies with the image;
this BatchNorm brings the first features to a common scale. Its batch statistics are
stable because every step sees whole maps (16 images x the stride-4 grid); at inference it
is a fixed per-channel affine map, so scores do not depend on the batch and the head
exports as plain convolutions. GroupNorm would be batch-independent in training too, but
would differ from the official network and add per-image statistics at inference.
Upsampling uses ``align_corners=False`` like the rest of defectkit (official: True).
"""

from __future__ import annotations

import torch
from torch import nn

from ...utils.resize import resize_bilinear
from .rrs import logit_difference


class ResidualBlock(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x)))), no biases (the official ``Residual``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ConvDiscriminator(nn.Module):
    """B x r x h x w selected residuals -> B x 2 x size x size logits (3x3-conv decoder)."""

    def __init__(self, channels: int, residual_blocks: int = 2):
        super().__init__()
        self.residual = nn.Sequential(*[ResidualBlock(channels) for _ in range(residual_blocks)], nn.ReLU())
        self.decode = nn.Sequential(
            nn.Conv2d(channels, 128, 3, padding=1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.classify = nn.Sequential(
            nn.Conv2d(8, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 2, 3, padding=1),
        )

    def _decoded(self, x: torch.Tensor) -> torch.Tensor:
        """The residual blocks and the decoding convolutions, at the input grid."""
        return self.decode(self.residual(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last (2-logit) convolution."""
        x = self._decoded(x)
        x = resize_bilinear(x, (2 * x.shape[-2], 2 * x.shape[-1]))
        return self.classify[:-1](x)

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """The same interface as ``rrs.Discriminator``: logits upsampled to ``size`` x ``size``."""
        logits = self.classify[-1](self._features(x))
        return resize_bilinear(logits, (size, size))

    def anomaly_logit(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """B x 1 x size x size: logit(anomalous) - logit(normal) (``rrs.logit_difference``)."""
        diff = logit_difference(self.classify[-1], self._features(x))
        return resize_bilinear(diff, (size, size))
