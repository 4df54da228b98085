"""Anomaly-aware feature selection (AFS, RealNet eq. 4): which backbone channels to reconstruct.

For a stage k and channel i, L_AFS = mean over synthetic triplets (A, I, M) of
``|| F((phi_ki(A) - phi_ki(I))^2) - M ||^2``; F normalises the squared difference and brings
it to the mask's resolution. The m_k channels with the smallest loss are kept. As in the
official code, the mask is brought to the feature grid (here by area averaging, so a small
defect still counts at stride 16) and F is a per-channel min-max normalisation over the
whole batch; per-batch losses are summed. These are pure functions so they can be tested.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

KeepSpec = Union[str, float, int, Sequence[int], Mapping[int, int]]

#: The paper's m_k for WideResNet-50 ({256, 512, 512, 256} of {256, 512, 1024, 2048}) as the
#: fraction kept per stride: stages 1-2 whole, half of stage 3, an eighth of stage 4.
#: ``afs_keep="paper"`` applies these fractions to any backbone's widths.
PAPER_KEEP_FRACTIONS = {4: 1.0, 8: 1.0, 16: 0.5, 32: 0.125}


def afs_channel_losses(anomalous: torch.Tensor, normal: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """One batch of triplets -> per-channel AFS loss (C).

    ``anomalous`` / ``normal``: B x C x h x w features of A and I; ``masks``: B x H x W (or
    B x 1 x H x W) in [0, 1], resized to h x w by area averaging.
    """
    b, c, h, w = anomalous.shape
    if masks.ndim == 3:
        masks = masks[:, None]
    label = F.interpolate(masks.float(), size=(h, w), mode="area")  # B x 1 x h x w
    diff = (anomalous.float() - normal.float()) ** 2
    diff = diff.permute(1, 0, 2, 3).reshape(c, b * h * w)
    lo = diff.amin(dim=1, keepdim=True)
    hi = diff.amax(dim=1, keepdim=True)
    diff = (diff - lo) / (hi - lo + 1e-4)
    label = label.permute(1, 0, 2, 3).reshape(1, b * h * w)
    return ((diff - label) ** 2).mean(dim=1)


def select_channels(losses: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (sorted ascending) of the ``keep`` channels with the smallest AFS loss.

    A NaN loss (a channel that never varies) counts as the worst observed loss.
    """
    losses = losses.clone().float()
    bad = torch.isnan(losses)
    if bad.any():
        losses[bad] = losses[~bad].max() if (~bad).any() else 0.0
    keep = min(int(keep), losses.numel())
    # ties broken by channel index (stable sort), so the choice is deterministic
    order = torch.sort(losses, stable=True).indices
    return torch.sort(order[:keep]).values


def random_channels(channels: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """The ablation "RDR": ``keep`` channels drawn uniformly at random (seeded), sorted."""
    return torch.sort(torch.randperm(channels, generator=generator)[: min(keep, channels)]).values


def _counts_from_fractions(stage_channels: Mapping[int, int], fractions: Mapping[int, float]) -> Dict[int, int]:
    """{stride: fraction of the stage's width} -> {stride: channel count}, at least one."""
    return {s: max(1, int(round(f * stage_channels[s]))) for s, f in fractions.items()}


def keep_counts(stage_channels: Mapping[int, int], strides: Sequence[int], keep: KeepSpec) -> Dict[int, int]:
    """m_k per stride: ``"paper"`` (the WRN-50 fractions of ``PAPER_KEEP_FRACTIONS`` applied
    to this backbone's widths), one fraction of every stage's width (0 < f <= 1), or explicit
    counts (a list in stride order, or {stride: m})."""
    strides = list(strides)
    if isinstance(keep, str):
        if keep != "paper":
            raise ValueError(f"afs_keep must be 'paper', a fraction or counts, got {keep!r}")
        missing = [s for s in strides if s not in PAPER_KEEP_FRACTIONS]
        if missing:
            raise ValueError(f"afs_keep='paper' has no fraction for strides {missing}; give counts instead")
        counts = _counts_from_fractions(stage_channels, {s: PAPER_KEEP_FRACTIONS[s] for s in strides})
    elif isinstance(keep, Mapping):
        counts = {int(s): int(keep[s]) for s in strides}
    elif isinstance(keep, (list, tuple)):
        if len(keep) != len(strides):
            raise ValueError(f"afs_keep lists {len(keep)} counts for {len(strides)} strides {strides}")
        counts = {s: int(k) for s, k in zip(strides, keep)}
    else:
        f = float(keep)
        if not 0.0 < f <= 1.0:
            raise ValueError(f"afs_keep as a fraction must be in (0, 1], got {keep}")
        counts = _counts_from_fractions(stage_channels, {s: f for s in strides})
    for s, k in counts.items():
        if not 1 <= k <= stage_channels[s]:
            raise ValueError(f"cannot keep {k} channels of stride {s} (it has {stage_channels[s]})")
    return counts


class AFSAccumulator:
    """Sums per-batch AFS losses per stride, then picks channels (or draws them, or keeps all)."""

    def __init__(self, strides: Sequence[int]):
        self.totals: Dict[int, Optional[torch.Tensor]] = {s: None for s in strides}
        self.batches = 0

    def add(self, anomalous: Mapping[int, torch.Tensor], normal: Mapping[int, torch.Tensor], masks: torch.Tensor):
        for s in self.totals:
            loss = afs_channel_losses(anomalous[s], normal[s], masks).cpu()
            self.totals[s] = loss if self.totals[s] is None else self.totals[s] + loss
        self.batches += 1

    def losses(self) -> Dict[int, torch.Tensor]:
        return {s: t / max(1, self.batches) for s, t in self.totals.items() if t is not None}
