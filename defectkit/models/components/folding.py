"""An eval-mode BatchNorm folded into the bias-free convolution before it, for export forms.

In eval mode a BatchNorm is the per-channel affine map a x + b (a = gamma / sqrt(var + eps),
b = beta - mean a); after a convolution without bias it is the same convolution with weight
a W and bias b, one node instead of two. Export forms (``models/<method>/export_forms.py``)
fold it where ONNX Runtime would otherwise run it on its own, e.g. after an upsampling the
rewrite has moved between the two.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def folded(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the bias-free ``conv`` followed by eval-mode ``norm``, as one convolution."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    return conv.weight * scale[:, None, None, None], norm.bias - norm.running_mean * scale
