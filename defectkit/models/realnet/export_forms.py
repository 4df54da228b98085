"""RealNet's export forms (``defectkit.export.rewrites``): the same network, cheaper in ONNX Runtime.

The convolutional discriminator reads the RRS-selected residuals, whose width is whatever
``rrs_fraction`` gives (29 channels with the defaults on Lite0). ONNX Runtime runs a
convolution in its blocked channel layout (NCHWc, blocks of 8 or 16 floats) only when the
input width is a multiple of 16 (or below 8); any other width falls back to im2col + GEMM,
and the decoder's first three convolutions, at the stride-4 grid, then take about an eighth
of the whole graph. The export form pads the residuals with zero channels up to a multiple
of :data:`BLOCK` and pads every weight that reads or writes those channels with zeros:

- a padded channel is 0 at the input; a residual block adds to it a convolution whose
  output weights for it are 0 (the convolutions have no bias), and ReLU(0) = 0, so it stays
  exactly 0 through the residual blocks;
- the first decoding convolution's weights on it are 0, so it adds exactly 0 to every real
  channel.

So the padded network computes the same function; float rounding may differ (the blocked
kernels sum in another order), which the parity check at export bounds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv_decoder import ConvDiscriminator, ResidualBlock

#: channel multiple ONNX Runtime's blocked convolutions need (16 covers AVX2's 8 and AVX-512's 16)
BLOCK = 16


def blocked_width(channels: int) -> int:
    """The smallest multiple of :data:`BLOCK` >= ``channels``."""
    return -(-channels // BLOCK) * BLOCK


def zero_padded(weight: torch.Tensor, extra_in: int, extra_out: int) -> torch.Tensor:
    """A conv weight (out x in x kh x kw) with ``extra_in`` zero input and ``extra_out`` zero output channels."""
    return F.pad(weight, (0, 0, 0, 0, 0, extra_in, 0, extra_out))


def _conv(conv: nn.Conv2d, x: torch.Tensor, extra_in: int, extra_out: int) -> torch.Tensor:
    weight = zero_padded(conv.weight, extra_in, extra_out)
    bias = conv.bias if conv.bias is None or extra_out == 0 else F.pad(conv.bias, (0, extra_out))
    return F.conv2d(x, weight, bias, stride=conv.stride, padding=conv.padding, dilation=conv.dilation)


def _padded_block(block: ResidualBlock, x: torch.Tensor, extra: int) -> torch.Tensor:
    """``block(x)`` on a zero-padded ``x``: each convolution's weights padded on both sides."""
    h = x
    for layer in block.block:
        h = _conv(layer, h, extra, extra) if isinstance(layer, nn.Conv2d) else layer(h)
    return x + h


class BlockedConvDiscriminator(ConvDiscriminator):
    """``ConvDiscriminator`` on residuals zero-padded to a multiple of 16 channels (module docstring)."""

    def _decoded(self, x: torch.Tensor) -> torch.Tensor:
        extra = blocked_width(x.shape[1]) - x.shape[1]
        x = F.pad(x, (0, 0, 0, 0, 0, extra))
        for layer in self.residual:
            x = _padded_block(layer, x, extra) if isinstance(layer, ResidualBlock) else layer(x)
        return self.decode[1:](_conv(self.decode[0], x, extra, 0))


def rewrites():
    return {ConvDiscriminator: BlockedConvDiscriminator}
