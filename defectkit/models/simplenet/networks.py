"""Building blocks of SimpleNet: adaptor, discriminator, loss, and the validation anomalies.

Kept apart from ``simplenet.py`` (the estimator) so each piece can be tested and read on
its own. Everything random takes an explicit, seeded generator: the same seed gives the
same weights, noise, batches and validation images.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- networks


class Adaptor(nn.Module):
    """G: one bias-free fully connected layer C -> C (paper, sec. 3.2 and 4.3)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Discriminator(nn.Module):
    """D: Linear(C, H) -> BatchNorm1d(H) -> LeakyReLU(slope) [-> ``layers - 1`` more such
    H -> H blocks] -> Linear(H, 1).

    ``layers`` is the number of hidden blocks (the official code's ``dsc_layers`` minus one:
    its default 2 is one hidden block, as here). As in the official code the output layer
    has no bias (the first layer's bias is followed by batch normalisation, whose shift
    plays that role). With one block the state keys are ``fc1``, ``bn``, ``fc2`` as in
    model files saved before ``layers`` existed.
    """

    def __init__(self, dim: int, hidden: int, slope: float = 0.2, layers: int = 1):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.slope = slope
        self.extra = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden)) for _ in range(layers - 1)
        )
        self.fc2 = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bn(self.fc1(x)), self.slope)
        for block in self.extra:
            x = F.leaky_relu(block(x), self.slope)
        return self.fc2(x)[:, 0]


def hidden_layers(disc_state: dict) -> int:
    """Number of hidden blocks of a saved discriminator state dict."""
    return 1 + len({k.split(".")[1] for k in disc_state if k.startswith("extra.")})


def _fold_bn(linear: nn.Linear, bn: nn.BatchNorm1d) -> "tuple[torch.Tensor, torch.Tensor]":
    """Eval-mode ``bn(linear(x))`` as one (weight, bias), in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    weight = scale[:, None] * linear.weight.double()
    bias = scale * (linear.bias.double() - bn.running_mean.double()) + bn.bias.double()
    return weight, bias


def fold_standardisation(
    weight: torch.Tensor,
    bias: torch.Tensor,
    feature_mean: Optional[torch.Tensor],
    feature_scale: Optional[torch.Tensor],
) -> "tuple[torch.Tensor, torch.Tensor]":
    """A linear map (float64 ``weight`` K x C, ``bias`` K) of standardised features
    ``o' = (o - mean) * scale``, as a map of the raw features ``o``; unchanged without a scale."""
    if feature_scale is None:
        return weight, bias
    weight = weight * feature_scale.double()[None, :]
    return weight, bias - weight @ feature_mean.double()


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """The official code's ``init_weight``: Xavier-normal linear and conv weights, BN weight ~ N(1, 0.02).

    Linear and conv biases keep PyTorch's default uniform init, drawn from ``generator`` too.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight, generator=generator)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.in_channels * m.kernel_size[0] * m.kernel_size[1])
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
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
            weight, bias = fold_standardisation(weight, disc.fc1.bias.double(), feature_mean, feature_scale)
            self.weight = (scale.double()[:, None] * weight).float()
            self.bias = (scale.double() * (bias - bn.running_mean.double()) + bn.bias.double()).float()
            self.extra = [tuple(t.float() for t in _fold_bn(b[0], b[1])) for b in disc.extra]
            self.out = (-disc.fc2.weight[0]).detach().clone()  # minus: anomaly score = -D
            self.slope = disc.slope

    def to(self, device: torch.device) -> "FusedHead":
        self.weight, self.bias, self.out = self.weight.to(device), self.bias.to(device), self.out.to(device)
        self.extra = [(w.to(device), b.to(device)) for w, b in self.extra]
        return self

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """N x C x h x w features -> N x 1 x h x w anomaly scores (-D)."""
        n, c, h, w = feats.shape
        # channels-first products: no transpose of the N x C x h x w features is needed
        x = torch.baddbmm(self.bias[None, :, None], self.weight.expand(n, -1, -1), feats.reshape(n, c, h * w))
        x = F.leaky_relu(x, self.slope)
        for weight, bias in self.extra:
            x = F.leaky_relu(torch.baddbmm(bias[None, :, None], weight.expand(n, -1, -1), x), self.slope)
        return torch.matmul(self.out, x).reshape(n, 1, h, w)


# --------------------------------------------------------------------------- loss


#: ratio between successive noise levels of ``add_gaussian_noise`` (the official ``mix_noise``)
NOISE_LEVEL_STEP = 1.1


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


def add_gaussian_noise(
    features: torch.Tensor, std: float, generator: torch.Generator, levels: int = 1, step: float = NOISE_LEVEL_STEP
) -> torch.Tensor:
    """Anomalous feature generator: ``q- = q + eps``, eps_i ~ N(0, std^2) i.i.d. (paper eq. 6).

    With ``levels`` K > 1, every feature vector (each row of N x C, each location of B x C x H x W)
    draws its own std from std * step^k, k uniform in 0..K-1 (the official code's ``mix_noise``,
    step 1.1): anomalies at several distances from the normal features, not one shell. K = 1
    draws no level and gives exactly the single-std noise."""
    noise = torch.randn(features.shape, generator=generator, device=generator.device, dtype=features.dtype)
    if levels > 1:
        shape = (features.shape[0], 1, *features.shape[2:])
        k = torch.randint(0, levels, shape, generator=generator, device=generator.device)
        noise = noise * torch.pow(step, k.to(noise.dtype))
    return features + std * noise.to(features.device)
