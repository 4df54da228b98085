"""MLFF's three losses (docs/methods/mlff.md reconstruction of the paper's lost eq. 3-8), pixel-wise.

Every loss takes per-pixel tensors on the feature grid and a label map with 0 = normal,
1 = anomalous and -1 = ignored (grid cells only partly covered by a pseudo-anomaly).

- feature constraint: FCDD's hypersphere classifier on the pseudo-Huber distance
  ``h = sqrt(||phi||^2 + 1) - 1``, each class averaged on its own (class balance);
- score constraint: a linear score ``s``; normals below ``m1``, anomalies at least ``m2``
  above the mean normal score;
- consistency: on normal patches, the softmax over ``j`` of ``-||phi_i - phi_j||`` should
  match that of ``-|s_i - s_j|`` (KL divergence), so scores keep the features' topology.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

NORMAL, ANOMALOUS, IGNORED = 0, 1, -1


def pseudo_huber(features: torch.Tensor) -> torch.Tensor:
    """B x D x H x W -> B x H x W distance to the centre (origin): sqrt(||phi||^2 + 1) - 1."""
    return torch.sqrt(features.pow(2).sum(dim=1) + 1.0) - 1.0


def _class_mean(values: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``select``; 0 (with a graph) when nothing is selected."""
    n = select.sum()
    return (values * select).sum() / n.clamp_min(1)


def feature_constraint_loss(distance: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_f = mean_normal h + mean_anomalous -log(1 - exp(-h))  (class-balanced HSC)."""
    normal, anomalous = labels == NORMAL, labels == ANOMALOUS
    away = -torch.log((-torch.expm1(-distance)).clamp_min(eps))  # -log(1 - exp(-h)), stable
    return _class_mean(distance, normal) + _class_mean(away, anomalous)


def score_constraint_loss(
    scores: torch.Tensor, labels: torch.Tensor, margin_normal: float, margin_anomalous: float
) -> torch.Tensor:
    """L_s = mean_normal max(0, s - m1) + mean_anomalous max(0, m2 - (s - mean_normal s))."""
    normal, anomalous = labels == NORMAL, labels == ANOMALOUS
    normal_mean = _class_mean(scores, normal)
    below = _class_mean(F.relu(scores - margin_normal), normal)
    above = _class_mean(F.relu(margin_anomalous - (scores - normal_mean)), anomalous)
    return below + above


def patch_view(
    features: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, patch: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Average features and scores over ``patch`` x ``patch`` cells -> (B x P x D, B x P, B x P normal).

    A patch counts as normal only if every cell in it is normal.
    """
    feats = F.avg_pool2d(features, patch, patch).flatten(2).transpose(1, 2)
    s = F.avg_pool2d(scores[:, None], patch, patch).flatten(1)
    not_normal = F.max_pool2d((labels != NORMAL).float()[:, None], patch, patch).flatten(1)
    return feats, s, not_normal == 0


def consistency_loss(features: torch.Tensor, scores: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Mean over images and normal patches i of KL(P_i || Q_i), P_i = softmax_j(-||f_i - f_j||),
    Q_i = softmax_j(-|s_i - s_j|), j over the same image's normal patches.

    ``features`` B x P x D, ``scores`` B x P, ``normal`` B x P bool. Images with fewer than
    two normal patches are skipped (a one-point distribution has nothing to agree on).
    """
    total, used = features.new_zeros(()), 0
    for f, s, keep in zip(features, scores, normal):
        if int(keep.sum()) < 2:
            continue
        f, s = f[keep], s[keep]
        log_p = torch.log_softmax(-torch.cdist(f[None], f[None])[0], dim=1)
        log_q = torch.log_softmax(-(s[:, None] - s[None, :]).abs(), dim=1)
        total = total + (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
        used += 1
    return total / max(used, 1)


def cell_labels(masks: torch.Tensor, grid: Tuple[int, int], threshold: float = 0.25) -> torch.Tensor:
    """B x S x S pixel masks -> B x h x w labels: covered fraction 0 -> normal, > ``threshold``
    -> anomalous, in between -> ignored (a cell mostly normal but not clean)."""
    frac = F.adaptive_avg_pool2d(masks.float()[:, None], grid)[:, 0]
    labels = torch.full_like(frac, IGNORED, dtype=torch.long)
    labels[frac <= 0] = NORMAL
    labels[frac > threshold] = ANOMALOUS
    return labels
