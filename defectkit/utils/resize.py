"""Bilinear resizing that exports to ONNX as a fixed-factor upsampling when it is one.

``F.interpolate(x, size=...)`` exports as a ``Resize`` given output sizes; ONNX Runtime runs
that in the plain NCHW layout, so every such resize between convolutions costs two layout
reorders (to NCHW and back to the blocked NCHWc layout the convolutions use) on top of a
generic resize kernel. Given a constant integer ``scale_factor`` instead, the same resize
becomes ORT's blocked ``Upsample``, which stays in the convolutions' layout.

For an integer ratio k = out / in, torch computes the source coordinate of an output pixel
as (i + 0.5) / k - 0.5 in both forms (from the scale, or from in / out), so the two calls
give identical results; other sizes keep ``size``.

Maps with fewer than ``MIN_BLOCKED_CHANNELS`` channels (score maps, logits) keep ``size`` too:
the blocked layout holds channels in blocks of 8 or 16 (AVX2 / AVX-512) and pads a short
channel axis to a whole block, so a 1-channel map would be resized 16 times over.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

Size = Union[int, Sequence[int], torch.Size]
#: fewer channels than this: keep the size-given resize (see the module docstring)
MIN_BLOCKED_CHANNELS = 16


def _pair(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_bilinear(x: torch.Tensor, size: Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``; as a scale factor when
    ``size`` is an integer multiple of ``x``'s grid on both axes and ``x`` has enough channels
    (see the module docstring)."""
    out_h, out_w = _pair(size)
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    if (out_h, out_w) == (in_h, in_w):
        return x
    integer = out_h % in_h == 0 and out_w % in_w == 0 and out_h >= in_h and out_w >= in_w
    if integer and x.dim() == 4 and int(x.shape[1]) >= MIN_BLOCKED_CHANNELS:
        scale = (float(out_h // in_h), float(out_w // in_w))
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
