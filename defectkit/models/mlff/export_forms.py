"""MLFF's export forms (``defectkit.export.rewrites``): the same network, cheaper in ONNX Runtime.

Every step below is an exact identity (float rounding aside); the parity check at export
bounds the rounding.

- Cosine similarity to a mean feature, ``x.m / (max(|x|, eps) max(|m|, eps))`` (what
  ``F.cosine_similarity`` computes), as one matrix product and a sum of squares over the
  channels: traced as it is, the norm becomes a ReduceL2 over the channel axis, which
  ONNX Runtime runs 5x slower than a plain sum.
- PTFEM works on the grid instead of cutting the map into regions: region means by pooling,
  each pixel's similarity to its region's mean by broadcasting, and only the one-channel
  similarity map is cut into regions (the traced form permutes the 64-channel map for
  every pyramid level). The pixel norms are shared by all pyramid levels.
- A 1x1 convolution without bias of a channel concatenation is the sum of 1x1
  convolutions of the parts. PTFEM's output convolution of [x, up(g_1), ..., up(g_4)]
  becomes ``W_0 x + sum_i up(W_i g_i)``: a 1x1 convolution and bilinear upsampling commute
  (one mixes channels, the other pixels), so each region grid is projected before it is
  upsampled, and the upsamplings of all pyramid levels are summed by one product with
  their stacked interpolation matrices (read off ``F.interpolate`` on basis maps). TEM's
  output convolution of [x, nodes @ E] becomes ``W_x x + (W_p nodes) @ E``.
- The mean over level pairs of a 1x1 convolution is the convolution of the mean (the
  TextureUnit lift's second layer is linear), so it runs once per region, not per pair.
- The score head (1x1) after the fusion's last 1x1 convolution is one 1x1 convolution
  with the product of their weights (phi is still returned, from the original layer).
"""

from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from ..components.folding import folded
from .net import MLFFNet
from .qco import cooccurrence, soft_levels
from .texture import PTFEM, TEM, TextureUnit

#: ``F.cosine_similarity``'s default, which ``qco.quantise`` uses
EPS = 1e-6


def channel_norms(x: torch.Tensor) -> torch.Tensor:
    """B x C x ... -> B x ... Euclidean norm over the channels, clamped at ``EPS``."""
    return (x * x).sum(dim=1).sqrt().clamp_min(EPS)


def cosine_to_mean(flat: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``F.cosine_similarity(flat, mean[:, :, None], dim=1)`` for B x C x P and B x C, by a matrix product."""
    dot = torch.bmm(mean[:, None, :], flat)[:, 0]  # B x P
    return dot / (channel_norms(flat) * channel_norms(mean[:, :, None]))


class FastTEM(TEM):
    """``TEM`` with the similarity by a product and the output convolution split (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        flat = x.reshape(b, c, h * w)
        mean = flat.mean(dim=2)
        enc, levels = soft_levels(cosine_to_mean(flat, mean), self.n_levels, EPS)
        stats = torch.stack([levels, enc.sum(dim=2) / (h * w)], dim=1)
        nodes = self.lift(stats)
        glob = self.global_proj(mean)[:, :, None].expand_as(nodes)
        nodes = self.attention(self.merge(torch.cat([nodes, glob], dim=1)))  # B x D x N
        weight, bias = folded(self.out[0], self.out[1])
        weight = weight[:, :, 0, 0]  # C x (C + D)
        per_pixel = torch.bmm(weight[None, :, c:] @ nodes, enc).reshape(b, -1, h, w)
        return self.out[2](F.conv2d(x, weight[:, :c, None, None], bias) + per_pixel)


def unit_vectors(unit: TextureUnit, x: torch.Tensor, norms: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """``unit(split_regions(x, p))`` on the grid: x B x C x H x W, ``norms`` B x H x W (clamped
    pixel norms), ``means`` B x C x p x p (region means) -> B x p x p x D, row-major regions."""
    b, c, h, w = x.shape
    p = means.shape[-1]
    rh, rw = h // p, w // p
    if p == 1:
        dot = torch.bmm(means.reshape(b, 1, c), x.reshape(b, c, h * w)).reshape(b, 1, rh, 1, rw)
    else:
        dot = (x.reshape(b, c, p, rh, p, rw) * means[:, :, :, None, :, None]).sum(dim=1)  # B x p x rh x p x rw
    sim = dot / (norms.reshape(b, p, rh, p, rw) * channel_norms(means)[:, :, None, :, None])
    regions = sim.permute(0, 1, 3, 2, 4).reshape(b * p * p, rh * rw)
    n = unit.n_levels
    enc, levels = soft_levels(regions, n, EPS)
    counts = cooccurrence(enc.reshape(b * p * p, n, rh, rw))
    li = levels[:, :, None].expand(-1, n, n)
    lj = levels[:, None, :].expand(-1, n, n)
    pairs = torch.stack([li, lj, counts / max(1, rh * (rw - 1))], dim=1).flatten(2)  # R x 3 x N^2
    first, act, second = unit.lift
    lifted = second(act(first(pairs)).mean(dim=2, keepdim=True))[:, :, 0]  # mean before the linear layer
    mean_feature = means.permute(0, 2, 3, 1).reshape(b * p * p, c)
    return F.relu(lifted + unit.global_proj(mean_feature)).reshape(b, p, p, -1)


class FastPTFEM(PTFEM):
    """``PTFEM`` on the grid, with its output convolution before the upsampling (module docstring)."""

    def _upsamplers(self, h: int, w: int, sizes: List[Tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
        """(sum p^2) x (h w): row r is the bilinear upsampling to h x w of basis map r of its level."""
        cache: Dict[Tuple, torch.Tensor] = self.__dict__.setdefault("_upsampler_cache", {})
        key = (h, w, tuple(sizes), like.dtype, str(like.device))
        if key not in cache:
            with torch.no_grad():
                blocks = []
                for p in self.scales:
                    basis = torch.eye(p * p, dtype=torch.float64).reshape(p * p, 1, p, p)
                    up = F.interpolate(basis, size=(h, w), mode="bilinear", align_corners=False)
                    blocks.append(up.reshape(p * p, h * w))
                cache[key] = torch.cat(blocks).to(like.device, like.dtype)
        return cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weight, bias = folded(self.out[0], self.out[1])
        weight = weight[:, :, 0, 0]  # C x (C + D * levels)
        dim = self.units[0].global_proj.out_features
        projected, sizes = [], []
        shared_norms = None
        for i, (parts, unit) in enumerate(zip(self.scales, self.units)):
            size = (max(parts * 2, math.ceil(h / parts) * parts), max(parts * 2, math.ceil(w / parts) * parts))
            if size == (h, w):
                xs = x
                if shared_norms is None:
                    shared_norms = channel_norms(x)
                norms = shared_norms
            else:
                xs = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
                norms = channel_norms(xs)
            means = F.avg_pool2d(xs, (size[0] // parts, size[1] // parts))
            vec = unit_vectors(unit, xs, norms, means)  # B x p x p x D
            w_i = weight[:, c + i * dim : c + (i + 1) * dim]  # C x D
            projected.append(vec.reshape(b, parts * parts, dim) @ w_i.t())  # B x p^2 x C
            sizes.append(size)
        up = self._upsamplers(h, w, sizes, x)
        texture = (torch.cat(projected, dim=1).transpose(1, 2) @ up).reshape(b, c, h, w)
        return self.out[2](F.conv2d(x, weight[:, :c, None, None], bias) + texture)


def shifted_upsamplers(coarse: int, fine: int, like: torch.Tensor) -> torch.Tensor:
    """fine x (3 coarse): block d maps a coarse axis to the fine axis bilinearly (as ``F.interpolate``,
    ``align_corners=False``) and then shifts it by d - 1 with zero fill, as a 3-tap convolution
    with padding 1 reads it."""
    with torch.no_grad():
        basis = torch.eye(coarse, dtype=torch.float64).reshape(coarse, 1, coarse, 1)
        up = F.interpolate(basis, size=(fine, 1), mode="bilinear", align_corners=False)[:, 0, :, 0].t()  # fine x coarse
        padded = F.pad(up, (0, 0, 1, 1))
        blocks = [padded[d : d + fine] for d in range(3)]
    return torch.cat(blocks, dim=1).to(like.device, like.dtype)


def conv3x3_of_upsampled(coarse: torch.Tensor, weight: torch.Tensor, size: Tuple[int, int], ops) -> torch.Tensor:
    """``F.conv2d(F.interpolate(coarse, size, bilinear), weight, padding=1)`` without the fine-grid
    input: B x Ci x h x w, weight Co x Ci x 3 x 3 -> B x Co x H x W. ``ops`` = (rows H x 3h,
    columns 3w x W) from ``shifted_upsamplers``."""
    b, ci, h, w = coarse.shape
    co = weight.shape[0]
    rows, cols = ops
    taps = F.conv2d(coarse, weight.permute(0, 2, 3, 1).reshape(co * 9, ci, 1, 1))  # B x (Co, dy, dx) x h x w
    taps = taps.reshape(b, co, 3, 3, h, w).permute(0, 1, 2, 4, 3, 5).reshape(b, co, 3, h, 3 * w)
    wide = (taps @ cols).reshape(b, co, 3 * h, size[1])  # columns upsampled and shifted, summed over dx
    return rows @ wide  # rows upsampled and shifted, summed over dy


class FastMLFFNet(MLFFNet):
    """``MLFFNet`` with the fusion's 3x3 convolution of the upsampled stage-3 features done on their
    coarse grid, and the score head folded into the last 1x1 convolution (module docstring)."""

    def _shift_ops(self, coarse: Tuple[int, int], fine: Tuple[int, int], like: torch.Tensor):
        cache: Dict[Tuple, Tuple[torch.Tensor, torch.Tensor]] = self.__dict__.setdefault("_shift_cache", {})
        key = (coarse, fine, like.dtype, str(like.device))
        if key not in cache:
            cache[key] = (
                shifted_upsamplers(coarse[0], fine[0], like),
                shifted_upsamplers(coarse[1], fine[1], like).t().contiguous(),
            )
        return cache[key]

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        tex = self.texture_features(low)
        size = tex.shape[-2:]
        conv, norm, act = self.fuse[0]
        weight, bias = folded(conv, norm)
        coarse = self.high_proj(high)
        if self.scconv is not None:
            coarse = self.scconv(coarse)
        n = tex.shape[1]
        ops = self._shift_ops(tuple(coarse.shape[-2:]), tuple(size), coarse)
        hidden = act(
            F.conv2d(tex, weight[:, :n], bias, padding=1)
            + conv3x3_of_upsampled(coarse, weight[:, n:], tuple(size), ops)
        )
        last, head = self.fuse[1], self.score_head
        w_head = head.weight[:, :, 0, 0]  # 1 x D
        weight = (w_head @ last.weight[:, :, 0, 0])[:, :, None, None]
        bias = w_head @ last.bias + head.bias
        return last(hidden), F.conv2d(hidden, weight, bias)[:, 0]


def rewrites():
    return {TEM: FastTEM, PTFEM: FastPTFEM, MLFFNet: FastMLFFNet}
