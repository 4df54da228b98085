"""PRN's loss (paper eq. 5): SmoothL1(M_o, M) + lambda * Focal(M_o, M), and its image score.

M_o is the predicted map in [0, 1] (sigmoid of the logits); the focal loss (Lin et al.)
down-weights easy pixels by (1 - p_t)^gamma so the few anomalous pixels are not drowned
by the many normal ones. Paper values: alpha 0.5, gamma 4, lambda 5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 4.0) -> torch.Tensor:
    """Mean binary focal loss; computed from logits for numerical stability."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t).pow(gamma) * ce).mean()


def prn_loss(
    logits: torch.Tensor, target: torch.Tensor, focal_weight: float = 5.0, alpha: float = 0.5, gamma: float = 4.0
) -> torch.Tensor:
    """SmoothL1(sigmoid(logits), target) + focal_weight * focal(logits, target)."""
    smooth = F.smooth_l1_loss(torch.sigmoid(logits), target)
    return smooth + focal_weight * focal_loss(logits, target, alpha, gamma)


def top_k_mean(maps: torch.Tensor, k: int = 100) -> torch.Tensor:
    """Image score: the mean of the ``k`` largest map values per image (N x ... -> N)."""
    flat = maps.flatten(1)
    return flat.topk(min(k, flat.shape[1]), dim=1).values.mean(1)
