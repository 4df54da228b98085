"""Reconstruction residual selection (RRS) and RealNet's discriminator.

Per stage, E_k = (phi_k(A) - G_k(phi_k(A)))^2; the residuals are upsampled to the finest
grid and concatenated (m' channels), normalised by a BatchNorm without affine parameters
(supp. B: the stages' residuals have different scales), and for every image the r/2
channels with the highest global max and the r/2 with the highest global mean are kept, in
that order (official code: per sample, ``topk(sorted=True)``; a channel may appear in both
halves). The kept channels are taken from the normalised residuals (the paper's reading) or,
as the official code does, from the raw ones (the BatchNorm then only ranks the channels).
A per-location MLP (1x1 convolutions) maps them to 2 logits, upsampled to the image; the
official code's 3x3-conv decoder is in ``conv_decoder``.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.resize import resize_bilinear


def stage_residuals(features: Mapping[int, torch.Tensor], recon: Mapping[int, torch.Tensor]) -> torch.Tensor:
    """{stride: B x m_k x h_k x w_k} twice -> B x m' x h' x w' squared residuals on the finest grid."""
    strides = sorted(features)
    size = features[strides[0]].shape[-2:]
    parts = []
    for s in strides:
        e = (features[s] - recon[s]) ** 2
        if e.shape[-2:] != size:
            e = resize_bilinear(e, size)
        parts.append(e)
    return torch.cat(parts, dim=1)


def rrs_indices(residuals: torch.Tensor, n_max: int, n_mean: int) -> torch.Tensor:
    """B x C x h x w -> B x (n_max + n_mean) channel indices: top ``n_max`` by global max,
    then top ``n_mean`` by global mean, each in decreasing order."""
    flat = residuals.detach().flatten(2)
    parts = []
    if n_max > 0:
        parts.append(torch.topk(flat.amax(dim=2), n_max, dim=1, largest=True, sorted=True).indices)
    if n_mean > 0:
        parts.append(torch.topk(flat.mean(dim=2), n_mean, dim=1, largest=True, sorted=True).indices)
    return torch.cat(parts, dim=1)


def gather_channels(residuals: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Per-image channel gather: B x C x h x w, B x r -> B x r x h x w."""
    b, _, h, w = residuals.shape
    return torch.gather(residuals, 1, indices[:, :, None, None].expand(b, indices.shape[1], h, w))


def rrs_counts(total: int, fraction: float) -> Dict[str, int]:
    """r = round(fraction * m') (at least 2), split into r/2 by max and the rest by mean."""
    r = max(2, int(round(fraction * total)))
    r = min(r, 2 * total)
    return {"max": r // 2, "mean": r - r // 2}


class ResidualSelector(nn.Module):
    """Residual normalisation + selection: BN without affine, then RRS (or all channels).

    ``raw`` False: the selected channels of the normalised residuals are returned; True: the
    same channels of the raw residuals (official code; BN statistics only rank channels)."""

    def __init__(self, total_channels: int, n_max: int, n_mean: int, select: bool = True, raw: bool = False):
        super().__init__()
        self.bn = nn.BatchNorm2d(total_channels, affine=False)
        self.n_max, self.n_mean, self.select, self.raw = n_max, n_mean, select, raw

    @property
    def out_channels(self) -> int:
        return self.n_max + self.n_mean if self.select else self.bn.num_features

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        if self.raw and not self.select:
            return residuals
        x = self.bn(residuals)
        if not self.select:
            return x
        return gather_channels(residuals if self.raw else x, rrs_indices(x, self.n_max, self.n_mean))


def logit_difference(last: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``last(x)[:, 1:2] - last(x)[:, 0:1]`` for a 2-logit convolution, as one 1-channel convolution.

    Why: the map is softmax(logits)[anomalous] = sigmoid(l_1 - l_0), and a convolution is linear
    in its weights, so the difference is the convolution by the weight difference. Bilinear
    upsampling is linear per channel too, so the difference can be taken before it: scoring
    upsamples and squashes one channel instead of two and needs no softmax (over a 2-wide
    channel axis, slow in ONNX Runtime: about 12 ms per batch of 8 at 256 px)."""
    weight = last.weight[1:2] - last.weight[0:1]
    bias = None if last.bias is None else last.bias[1:2] - last.bias[0:1]
    return F.conv2d(x, weight, bias, stride=last.stride, padding=last.padding)


class Discriminator(nn.Module):
    """MLP per location (1x1 convs: r -> h1 -> BN -> ReLU -> h2 -> ReLU -> 2) + bilinear upsampling."""

    def __init__(self, channels: int, hidden: Sequence[int] = (128, 32)):
        super().__init__()
        layers = []
        cin = channels
        for i, h in enumerate(hidden):
            layers.append(nn.Conv2d(cin, h, 1))
            if i == 0:
                layers.append(nn.BatchNorm2d(h))
            layers.append(nn.ReLU())
            cin = h
        layers.append(nn.Conv2d(cin, 2, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """B x r x h x w -> B x 2 x size x size logits."""
        logits = self.mlp(x)
        return resize_bilinear(logits, (size, size))

    def anomaly_logit(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """B x 1 x size x size: logit(anomalous) - logit(normal), whose sigmoid is the softmax's P(anomalous)."""
        diff = logit_difference(self.mlp[-1], self.mlp[:-1](x))
        return resize_bilinear(diff, (size, size))
