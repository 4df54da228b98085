"""PRN's export forms (``defectkit.export.rewrites``): the same network, cheaper in ONNX Runtime.

``UpFuse`` upsamples a coarse map at its full width (e.g. 224 channels from 16 x 16 to
64 x 64) and only then shrinks it with a 1x1 convolution. The 1x1 convolution has no bias
and mixes channels at each pixel; bilinear interpolation mixes pixels within each channel;
both are linear maps acting on different axes, so they commute exactly: convolving first
and upsampling the few output channels is the same function, with the resize and the
convolution done on up to 16x less data.

The BatchNorm after it is, in eval mode, a per-channel affine map a x + b; bilinear weights
sum to 1, so it commutes with the upsampling too and folds into the convolution (weight
a W, bias b), leaving no standalone normalisation on the upsampled map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...utils.resize import resize_bilinear
from ..components.folding import folded
from .fusion import UpFuse


class ConvFirstUpFuse(UpFuse):
    """``UpFuse`` as upsample(folded conv(x)): equal to norm(conv(upsample(x))), see the module docstring."""

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        weight, bias = folded(self.conv, self.norm)
        y = F.conv2d(x, weight, bias)
        return resize_bilinear(y, size)


def rewrites():
    return {UpFuse: ConvFirstUpFuse}
