"""Building blocks of SimpleNet: adaptor, discriminator, loss, and the validation anomalies.

Kept apart from ``simplenet.py`` (the estimator) so each piece can be tested and read on
its own. Everything random takes an explicit, seeded generator: the same seed gives the
same weights, noise, batches and validation images.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..features import upsample_maps

# --------------------------------------------------------------------------- networks


class Adaptor(nn.Module):
    """G: one bias-free fully connected layer C -> C (paper, sec. 3.2 and 4.3)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Discriminator(nn.Module):
    """D: Linear(C, H) -> BatchNorm1d(H) -> LeakyReLU(slope) -> Linear(H, 1).

    As in the official code the output layer has no bias (the first layer's bias is
    followed by batch normalisation, whose shift plays that role).
    """

    def __init__(self, dim: int, hidden: int, slope: float = 0.2):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.slope = slope
        self.fc2 = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.leaky_relu(self.bn(self.fc1(x)), self.slope))[:, 0]


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """The official code's ``init_weight``: Xavier-normal linear weights, BN weight ~ N(1, 0.02).

    Linear biases keep PyTorch's default uniform init, drawn from ``generator`` too.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)


class FusedHead:
    """Standardisation, adaptor, discriminator (eval-mode BN) and the sign flip folded together.

    ``-D(G(o)) = -(w2 . leaky(s * (W1 A o + b1 - mu) + beta))`` with ``s = gamma / sqrt(var + eps)``,
    so inference costs one C x H matmul, a LeakyReLU and an H-vector product per location.
    """

    def __init__(
        self,
        adaptor: Adaptor,
        disc: Discriminator,
        feature_mean: Optional[torch.Tensor] = None,
        feature_scale: Optional[torch.Tensor] = None,
    ):
        with torch.no_grad():
            bn = disc.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = disc.fc1.weight.double() @ adaptor.fc.weight.double()  # H x C
            bias = disc.fc1.bias.double()
            if feature_scale is not None:  # o' = (o - mean) * feature_scale, folded in
                weight = weight * feature_scale.double()[None, :]
                bias = bias - weight @ feature_mean.double()
            self.weight = (scale.double()[:, None] * weight).float()
            self.bias = (scale.double() * (bias - bn.running_mean.double()) + bn.bias.double()).float()
            self.out = (-disc.fc2.weight[0]).detach().clone()  # minus: anomaly score = -D
            self.slope = disc.slope

    def to(self, device: torch.device) -> "FusedHead":
        self.weight, self.bias, self.out = self.weight.to(device), self.bias.to(device), self.out.to(device)
        return self

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """N x C x h x w features -> N x 1 x h x w anomaly scores (-D)."""
        n, c, h, w = feats.shape
        # channels-first products: no transpose of the N x C x h x w features is needed
        x = torch.baddbmm(self.bias[None, :, None], self.weight.expand(n, -1, -1), feats.reshape(n, c, h * w))
        x = F.leaky_relu(x, self.slope)
        return torch.matmul(self.out, x).reshape(n, 1, h, w)


# --------------------------------------------------------------------------- maps


class SeparableUpsampler:
    """``features.upsample_maps`` (bilinear upsampling, then Gaussian blur) as two matrix products.

    Both steps are linear and separable, so for an h x w grid and output size S the whole
    operation is ``maps = U_h @ p @ U_w^T`` with S x h and S x w matrices. The matrices are
    read off ``upsample_maps`` itself, applied once to basis maps, so the result is the same
    operator (up to float rounding); a product costs far less than blurring at full size
    with a 33-tap convolution, which would otherwise rival the backbone on a CPU.
    """

    def __init__(self) -> None:
        self._ops: Dict[Tuple[int, int, int, float, str], Tuple[torch.Tensor, torch.Tensor]] = {}

    def operators(self, h: int, w: int, size: int, sigma: float, device: torch.device):
        key = (h, w, size, float(sigma), str(device))
        if key not in self._ops:
            with torch.no_grad():
                rows = torch.zeros(h, 1, h, w)
                rows[torch.arange(h), 0, torch.arange(h), :] = 1.0  # basis map i: row i is ones
                cols = torch.zeros(w, 1, h, w)
                cols[torch.arange(w), 0, :, torch.arange(w)] = 1.0
                op_h = upsample_maps(rows.double(), size, sigma)[:, 0, :, 0].t().float()  # S x h
                op_w = upsample_maps(cols.double(), size, sigma)[:, 0, 0, :].t().float()  # S x w
            self._ops[key] = (op_h.contiguous().to(device), op_w.t().contiguous().to(device))
        return self._ops[key]

    def __call__(self, maps: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
        """N x 1 x h x w -> N x 1 x S x S, equal to ``upsample_maps(maps, size, sigma)``."""
        n, _, h, w = maps.shape
        op_h, op_w_t = self.operators(h, w, size, sigma, maps.device)
        return torch.matmul(torch.matmul(op_h, maps[:, 0]), op_w_t)[:, None]


# --------------------------------------------------------------------------- loss


def truncated_l1_loss(
    normal_scores: torch.Tensor, anomalous_scores: torch.Tensor, th_pos: float = 0.5, th_neg: float = -0.5
) -> torch.Tensor:
    """Paper eq. 7-8: mean over locations of ``max(0, th+ - D(q)) + max(0, -th- + D(q-))``.

    Normal features are pushed above ``th+`` = 0.5 and anomalous ones below ``th-`` = -0.5;
    beyond the margins the loss is zero (truncation). The two means are taken separately
    as in the official code (``true_loss.mean() + fake_loss.mean()``), which equals the mean
    of the per-location sum when there are as many anomalous as normal features.
    """
    return torch.clamp(th_pos - normal_scores, min=0).mean() + torch.clamp(anomalous_scores - th_neg, min=0).mean()


def add_gaussian_noise(features: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Anomalous feature generator: ``q- = q + eps``, eps_i ~ N(0, std^2) i.i.d. (paper eq. 6)."""
    noise = torch.randn(features.shape, generator=generator, device=generator.device, dtype=features.dtype)
    return features + std * noise.to(features.device)


# --------------------------------------------------------------------------- validation anomalies


def _rect(rng: np.random.Generator, size: int, area: Tuple[float, float]) -> Tuple[int, int]:
    a = rng.uniform(*area) * size * size
    aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
    h = int(round(min(size - 2, max(2, math.sqrt(a * aspect)))))
    w = int(round(min(size - 2, max(2, math.sqrt(a / aspect)))))
    return h, w


def _colour_jitter(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and per-channel shifts, as CutPaste's ColorJitter(0.1) roughly does."""
    mean = patch.mean(axis=(1, 2), keepdims=True)
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-0.15, 0.15)
    shift = rng.uniform(-0.1, 0.1, size=(3, 1, 1))
    return np.clip((patch - mean) * contrast + mean + brightness + shift, 0.0, 1.0)


def _segment_mask(size: int, p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d = p1 - p0
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0.0, 1.0)
    dist = np.hypot(yy - (p0[0] + t * d[0]), xx - (p0[1] + t * d[1]))
    return dist <= width / 2.0


def smooth_noise_mask(size: int, rng: np.random.Generator, area: Tuple[float, float] = (0.005, 0.06)) -> np.ndarray:
    """A Perlin-like blob mask: octaves of bilinearly upsampled grid noise, thresholded.

    The threshold is the quantile that leaves a random fraction ``area`` of the image, so the
    mask is one or a few irregular blobs whose size does not depend on the noise draw.
    """
    noise = np.zeros((size, size), dtype=np.float32)
    res = int(rng.choice([2, 4, 8]))
    for octave in range(3):
        cells = res * 2**octave
        grid = torch.from_numpy(rng.standard_normal((1, 1, cells + 1, cells + 1)).astype(np.float32))
        up = F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=True)[0, 0].numpy()
        noise += up / 2**octave
    threshold = np.quantile(noise, 1.0 - rng.uniform(*area))
    return noise > threshold


def _grid_shuffle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut a 3 x S x S image into g x g tiles (g in 2, 4, 8) and shuffle them."""
    size = image.shape[-1]
    g = int(rng.choice([2, 4, 8]))
    t = size // g
    if t == 0:
        return image
    tiles = [image[:, i * t : (i + 1) * t, j * t : (j + 1) * t] for i in range(g) for j in range(g)]
    order = rng.permutation(len(tiles))
    out = image.copy()
    for k, src in enumerate(order):
        i, j = divmod(k, g)
        out[:, i * t : (i + 1) * t, j * t : (j + 1) * t] = tiles[src]
    return out


def _one_anomaly(kind: str, img: np.ndarray, other: np.ndarray, rng: np.random.Generator):
    size = img.shape[-1]
    img = img.copy()
    mask = np.zeros((size, size), dtype=bool)
    if kind == "blend":
        mask = smooth_noise_mask(size, rng)
        source = _colour_jitter(_grid_shuffle(other, rng), rng)
        opacity = rng.uniform(0.2, 1.0)
        img = np.where(mask[None], (1 - opacity) * img + opacity * source, img)
    elif kind == "patch":
        h, w = _rect(rng, size, (0.005, 0.04))
        sy, sx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        ty, tx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        img[:, ty : ty + h, tx : tx + w] = _colour_jitter(other[:, sy : sy + h, sx : sx + w], rng)
        mask[ty : ty + h, tx : tx + w] = True
    else:
        p0 = rng.uniform(0.1, 0.9, size=2) * size
        angle, length = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.3) * size
        p1 = np.clip(p0 + length * np.array([math.sin(angle), math.cos(angle)]), 0, size - 1)
        mask = _segment_mask(size, p0, p1, max(1.5, rng.uniform(0.02, 0.05) * size))
        shift = rng.integers(-size // 4, size // 4 + 1, size=2)
        filler = _colour_jitter(np.roll(other, tuple(int(s) for s in shift), axis=(1, 2)), rng)
        img = np.where(mask[None], filler, img)
    return img, mask


def synthetic_validation_anomalies(
    images: torch.Tensor, per_image: int = 2, seed: int = 0, change_threshold: float = 0.05
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Synthetic anomalies for the validation split, made from held-out normal images only.

    A minimal, self-contained version of the project's image-space synthesis (METHODS.md,
    shared blocks), used only to choose the epoch and the weights kept -- never to train.
    Outputs cycle through three kinds:

    * ``blend``: a Perlin-like smooth-noise mask (0.5-6 % of the image) where the image is
      blended, ``out = (1 - b M) I + b M S`` with opacity b ~ U(0.2, 1), with a source S that
      is a grid-shuffled, colour-jittered copy of another held-out image;
    * ``patch`` (CutPaste): a rectangle (0.5-4 % of the image) cut from another held-out
      image at another place, colour-jittered, pasted at a random place;
    * ``scar`` (CutPaste-scar): a thin segment (2-5 % of the side wide) filled with a
      colour-jittered, shifted copy of another image.

    The mask keeps only pixels that visibly changed (some channel by more than
    ``change_threshold``), so e.g. background pasted onto background is not called an
    anomaly; draws that change fewer than 0.1 % of the pixels are redrawn.

    ``images``: N x 3 x S x S in [0, 1]. Returns ``(anomalies, masks)`` of shapes
    ``N*per_image x 3 x S x S`` and ``N*per_image x S x S`` (bool). Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    src = images.detach().cpu().numpy().astype(np.float32)
    n, _, size, _ = src.shape
    out, masks = [], []
    kinds = ("blend", "patch", "blend", "scar")
    min_pixels = max(4, int(0.001 * size * size))
    for k in range(n * per_image):
        i = k % n
        kind = kinds[k % len(kinds)]
        for _attempt in range(20):
            img, mask = _one_anomaly(kind, src[i], src[int(rng.integers(n))] if n > 1 else src[i], rng)
            # the anomaly is where the image visibly changed (e.g. background pasted on background is not)
            mask &= np.abs(img - src[i]).max(axis=0) > change_threshold
            if mask.sum() >= min_pixels:
                break
        else:  # could not draw a visible anomaly (e.g. a flat image): invert a small square
            img, mask = src[i].copy(), np.zeros((size, size), dtype=bool)
            r = max(1, size // 16)
            mask[size // 2 - r : size // 2 + r, size // 2 - r : size // 2 + r] = True
            img = np.where(mask[None], 1.0 - img, img)
        out.append(img.astype(np.float32))
        masks.append(mask)
    return torch.from_numpy(np.stack(out)), torch.from_numpy(np.stack(masks))


def split_validation(
    n: int, fraction: float, seed: int, min_val: int = 2, min_train: int = 2
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Seeded split of ``n`` normal training images -> (train indices, validation indices or None).

    No validation split when ``fraction`` is 0 or there are too few images for both parts.
    Indices are returned sorted so the training order does not depend on the draw.
    """
    n_val = int(round(fraction * n))
    if fraction <= 0 or n - max(n_val, min_val) < min_train:
        return np.arange(n), None
    n_val = max(n_val, min_val)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
